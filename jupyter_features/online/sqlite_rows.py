"""How the SQLite online store lays values out: column types, encoders and decoders."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..sqltext import CREATED_TS, EVENT_TS, quote
from ..times import micros_to_datetime
from .layout import OnlineTable

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SQL_TYPES", "DECODERS", "as_int", "as_text", "create_sql", "python_rows", "group_by_entity"]

SQL_TYPES = {
    "int64": "INTEGER",
    "float64": "REAL",
    "string": "TEXT",
    "categorical": "TEXT",
    "bool": "INTEGER",
    "timestamp": "INTEGER",
    "list<float>": "BLOB",
}
_BIG_ENDIAN = sys.byteorder == "big"


def _floats(blob: bytes) -> list[float]:
    values = array("d", blob)
    if _BIG_ENDIAN:
        values.byteswap()
    return values.tolist()


DECODERS: dict[str, Callable[[Any], Any] | None] = {
    "int64": None,
    "float64": None,
    "string": None,
    "categorical": None,
    "bool": bool,
    "timestamp": micros_to_datetime,
    "list<float>": _floats,
}


def as_int(value: Any) -> Any:
    if type(value) is int or value is None:
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return value  # matches nothing


def as_text(value: Any) -> Any:
    return value if type(value) is str or value is None else str(value)


def create_sql(name: str, table: OnlineTable) -> list[str]:
    """The statements creating a version's table: one row per entity keyed by the entity (a
    windowed view: one row per event, indexed on keys, event time and the columns aggregated)."""
    keys = table.entity
    cols = []
    for k, t in zip(keys, table.key_types, strict=True):
        single_int = len(keys) == 1 and t == "int64" and table.window is None
        cols.append(f"{quote(k)} {'INTEGER PRIMARY KEY' if single_int else SQL_TYPES[t] + ' NOT NULL'}")
    cols.append(f"{EVENT_TS} INTEGER")
    if table.created:
        cols.append(f"{CREATED_TS} INTEGER")
    cols += [f"{quote(f.name)} {SQL_TYPES.get(f.type, 'TEXT')}" for f in table.stored]
    pk = ", ".join(quote(k) for k in keys)
    if table.window is not None:  # the index covers the columns a read aggregates (not float lists)
        covered = [quote(f.name) for f in table.stored if f.type != "list<float>"]
        return [
            f"CREATE TABLE {quote(name)} ({', '.join(cols)})",
            f"CREATE INDEX {quote(name + '__k')} ON {quote(name)} ({', '.join([pk, EVENT_TS, *covered])})",
        ]
    if len(keys) == 1 and table.key_types[0] == "int64":
        return [f"CREATE TABLE {quote(name)} ({', '.join(cols)})"]
    return [f"CREATE TABLE {quote(name)} ({', '.join(cols)}, PRIMARY KEY ({pk})) WITHOUT ROWID"]


def python_rows(batch: pa.RecordBatch, types: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Rows of a canonical batch as tuples of SQLite values, converted column by column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: list[list[Any]] = []
    for col, kind in zip(batch.columns, types, strict=True):
        if kind == "list<float>":
            offsets = col.offsets.to_numpy()
            values = pc.fill_null(col.flatten(), float("nan")).to_numpy(zero_copy_only=False).astype("<f8")
            raw = values.tobytes()
            valid = col.is_valid().to_numpy(zero_copy_only=False)
            columns.append(
                [
                    raw[o * 8 : e * 8] if ok else None
                    for o, e, ok in zip(offsets[:-1], offsets[1:], valid, strict=True)
                ]
            )
        elif (col.null_count == 0 and pa.types.is_integer(col.type)) or pa.types.is_floating(col.type):
            arr = col.to_numpy(zero_copy_only=False)
            if col.null_count:
                columns.append([None if np.isnan(v) else v for v in arr.tolist()])
            else:
                columns.append(arr.tolist())
        else:
            columns.append(col.to_pylist())
    return zip(*columns, strict=True)


def group_by_entity(found: Sequence[Sequence[Any]], nkeys: int, skip: int) -> dict[Any, list[Any]]:
    """Rows read for several entities (a position, the key columns, then the stored row from
    ``skip`` on) grouped by entity key: the one key, or the tuple of keys."""
    grouped: dict[Any, list[Any]] = {}
    if nkeys == 1:
        for r in found:
            grouped.setdefault(r[1], []).append(r[skip:])
    else:
        for r in found:
            grouped.setdefault(r[1:skip], []).append(r[skip:])
    return grouped
