"""A folder of YAML files, one per feature view: the git-friendly source of truth.

``NAME.yaml`` holds every version with its provenance, so exporting a registry and
importing the folder into an empty one gives back the same records, and exporting
again gives the same bytes. A hand-written file holding a bare spec (``name``,
``sql``, ``entity``, ... at the top level) is applied like ``ws.export`` would.

The files come from anywhere (a pull request, a shared folder): a file is refused
before anything is built from it when it is over ``MAX_YAML_BYTES``, holds anchors or
aliases (a few hundred bytes of nested aliases expand to gigabytes), more than
``MAX_YAML_NODES`` values, or nesting deeper than ``MAX_YAML_DEPTH``.
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

__all__ = ["export_yaml", "import_yaml", "dump_view", "load_view", "MAX_YAML_BYTES", "MAX_YAML_NODES",
           "MAX_YAML_DEPTH"]  # fmt: skip

#: Limits of one YAML file; an export stays far below them (a spec is at most 2 MB).
MAX_YAML_BYTES = 16_000_000
MAX_YAML_NODES = 2_000_000
MAX_YAML_DEPTH = 64

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_HEADER = "# Feature view {name}: every version, as exported from a jupyter-features registry.\n"


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (SQL reads as SQL), insertion order kept, and never
    an anchor or alias for a value that appears twice: importing refuses them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


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


def _line(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f", line {mark.line + 1}" if mark is not None else ""


def _check_events(text: str, source: str) -> None:
    """Refuse anchors, aliases, too many values and deep nesting from the event stream,
    which costs no more than the text: nothing is expanded or built yet."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise InvalidSpecError(
                f"{source}{_line(event)}: YAML anchors and aliases (&name, *name, "
                "<<: *name) are not accepted in feature view files; write the values out"
            )
        if isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise InvalidSpecError(f"{source}: more than {MAX_YAML_NODES:,} YAML values; split the file")
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise InvalidSpecError(
                    f"{source}{_line(event)}: YAML nested more than {MAX_YAML_DEPTH} levels deep"
                )
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def load_view(text: str, *, source: str = "<text>") -> list[VersionRecord] | dict[str, Any]:
    """Parse one file: its version records, or a bare spec dict to apply."""
    if len(text) > MAX_YAML_BYTES:
        raise InvalidSpecError(
            f"{source}: {len(text):,} characters; a feature view file is at most {MAX_YAML_BYTES:,}"
        )
    try:
        _check_events(text, source)
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise InvalidSpecError(f"{source}: not valid YAML: {exc}") from exc
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. an integer of 5,000 digits
        raise InvalidSpecError(f"{source}: cannot read a value: {exc}") from exc
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
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
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
    parsed = [(path, load_view(_read(path), source=str(path))) for path in files]
    results: list[VersionRecord] = []
    history = [r for _, loaded in parsed if isinstance(loaded, list) for r in loaded]
    if history:
        results.extend(registry.import_versions(history))
    for _path, loaded in parsed:
        if isinstance(loaded, dict):
            results.append(registry.apply(loaded))
    return results


def _read(path: Path) -> str:
    """A file's text, refused unread when it is over MAX_YAML_BYTES."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise InvalidSpecError(
                f"{path}: {size:,} bytes; a feature view file is at most {MAX_YAML_BYTES:,} bytes"
            )
        data = path.read_bytes()
        if len(data) > MAX_YAML_BYTES:  # it grew since stat()
            raise InvalidSpecError(
                f"{path}: over {MAX_YAML_BYTES:,} bytes; a feature view file is at most that"
            )
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InvalidSpecError(f"{path}: cannot read it ({exc.strerror})") from exc
    return text


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
