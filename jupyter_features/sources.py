"""Sources: named tables the workspace reads — files, globs, DataFrames, DuckDB tables."""

from __future__ import annotations

import glob as globlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import FeaturesError, FeatureViewError, SourceError

__all__ = ["Source", "classify_source", "check_name", "check_identifier", "is_identifier", "format_of"]

#: An SQL identifier. Always used with ``fullmatch``: ``$`` would accept a trailing newline.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FORMATS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
}  # fmt: skip

SourceKind = Literal["file", "dataframe", "table"]


@dataclass(frozen=True)
class Source:
    """A registered source. ``location`` is the absolute path or glob for files."""

    name: str
    kind: SourceKind
    timestamp: str | None = None
    location: str | None = None
    format: str | None = None
    data: Any = None  # the DataFrame / Arrow table for kind == "dataframe"
    columns: tuple[tuple[str, str], ...] = ()  # (name, duckdb type), filled on registration

    @property
    def schema(self) -> dict[str, str]:
        return dict(self.columns)

    def describe(self) -> str:
        where = self.location if self.kind == "file" else self.kind
        return f"{self.name} ({where}, {len(self.columns)} columns)"


def is_identifier(value: object) -> bool:
    """True for an SQL identifier: ASCII letters, digits and _, not starting with a digit."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_identifier(
    value: object, what: str, *, error: type[FeaturesError] = FeatureViewError, example: str = "user_id"
) -> str:
    """``value`` if it is an identifier, else ``error`` naming ``what`` and the value (shortened).

    Names of views, sources, entity keys, timestamps and features reach SQL, generated
    notebook code and HTML; as identifiers they can carry nothing else there.
    """
    if is_identifier(value):
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        shown = repr(value[:60]) + ("…" if len(value) > 60 else "")
    else:
        shown = f"a {type(value).__name__}"
    raise error(
        f"{what} {shown} is not a valid identifier; use ASCII letters, digits and _ "
        f"(not starting with a digit), e.g. {example!r}"
    )


def check_name(name: str, *, what: str = "source") -> str:
    return check_identifier(name, f"{what} name", error=SourceError, example="transactions")


def format_of(path: str) -> str:
    lowered = path.lower()
    for suffix in (".gz", ".zst", ".bz2"):
        if lowered.endswith(suffix):
            lowered = lowered[: -len(suffix)]
    for ext, fmt in _FORMATS.items():
        if lowered.endswith(ext):
            return fmt
    raise SourceError(
        f"cannot tell the format of {path!r}; use a .parquet, .csv or .json/.jsonl path, "
        "or pass format='parquet' | 'csv' | 'json'"
    )


def classify_source(
    name: str, data: Any, *, root: Path, timestamp: str | None, fmt: str | None, tables: set[str]
) -> Source:
    """Decide what kind of source ``data`` is, without touching the engine."""
    check_name(name)
    if isinstance(data, (str, Path)):
        text = str(data)
        if isinstance(data, str) and is_identifier(text) and text in tables:
            return Source(name=name, kind="table", timestamp=timestamp, location=text)
        if "://" in text:
            raise SourceError(
                f"source '{name}': {text!r} is a URL; the DuckDB engine reads local files "
                "(download it first, or use engine='spark' for object stores)"
            )
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = root / path
        location = path.as_posix()
        if not globlib.glob(location, recursive=True):
            hint = " (it is not a DuckDB table either)" if is_identifier(text) else ""
            raise SourceError(f"source '{name}': no file matches {location!r}{hint}; check the path or glob")
        return Source(
            name=name, kind="file", timestamp=timestamp, location=location,
            format=fmt or format_of(location),
        )  # fmt: skip
    module = type(data).__module__
    if module.startswith(("pandas", "pyarrow", "polars")):
        return Source(name=name, kind="dataframe", timestamp=timestamp, data=data)
    raise SourceError(
        f"source '{name}': cannot register a {type(data).__name__}; pass a file path or glob, "
        "a pandas DataFrame, a pyarrow Table, or the name of a DuckDB table"
    )
