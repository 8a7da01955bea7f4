"""A folder of YAML files, one per feature view: the git-friendly source of truth.

``NAME.yaml`` holds every version with its provenance, so exporting a registry and
importing the folder into an empty one gives back the same records, and exporting
again gives the same bytes. A hand-written file holding a bare spec (``name``,
``sql``, ``entity``, ... at the top level) is applied like ``ws.export`` would.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from jupyter_features.errors import InvalidSpecError

from .record import VersionRecord, format_time

if TYPE_CHECKING:
    from .protocol import Registry

__all__ = ["export_yaml", "import_yaml", "dump_view", "load_view"]

_HEADER = "# Feature view {name}: every version, as exported from a jupyter-features registry.\n"


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (SQL reads as SQL), insertion order kept."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump_view(records: list[VersionRecord]) -> str:
    """The YAML text of one view's versions (oldest first)."""
    name = records[0].name
    data = {
        "name": name,
        "latest": records[-1].version,
        "versions": [
            {"version": r.version, "created_at": format_time(r.created_at), "created_by": r.created_by,
             "hash": r.hash, "spec": r.spec}
            for r in records
        ],
    }  # fmt: skip
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return _HEADER.format(name=name) + body


def load_view(text: str, *, source: str = "<text>") -> list[VersionRecord] | dict[str, Any]:
    """Parse one file: its version records, or a bare spec dict to apply."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise InvalidSpecError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidSpecError(f"{source}: expected a mapping with 'name' and 'versions' (or a bare spec)")
    if "versions" not in data:
        return data
    entries = data["versions"]
    if not isinstance(entries, list) or not entries:
        raise InvalidSpecError(f"{source}: 'versions' must be a non-empty list")
    records = []
    for i, entry in enumerate(entries):
        try:
            records.append(VersionRecord.from_dict({"name": data.get("name"), **entry}))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSpecError(
                f"{source}: versions[{i}] needs version, created_at, created_by, hash and spec ({exc!r})"
            ) from exc
    numbers = [r.version for r in records]
    if len(set(numbers)) != len(numbers):
        raise InvalidSpecError(f"{source}: a version number appears twice: {numbers}")
    return records


def export_yaml(registry: Registry, folder: str | os.PathLike[str]) -> list[str]:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for latest in registry.list():
        path = out / f"{latest.name}.yaml"
        _write_atomic(path, dump_view(registry.versions(latest.name)))
        written.append(str(path))
    return written


def import_yaml(registry: Registry, folder: str | os.PathLike[str]) -> list[VersionRecord]:
    root = Path(folder)
    if not root.is_dir():
        raise InvalidSpecError(f"{root}: not a folder; give the folder export_yaml wrote")
    files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    parsed = [(path, load_view(path.read_text(encoding="utf-8"), source=str(path))) for path in files]
    results: list[VersionRecord] = []
    history = [r for _, loaded in parsed if isinstance(loaded, list) for r in loaded]
    if history:
        results.extend(registry.import_versions(history))
    for _path, loaded in parsed:
        if isinstance(loaded, dict):
            results.append(registry.apply(loaded))
    return results


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
