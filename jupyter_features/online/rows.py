"""An entity's stored rows and the value a read at time T gives, in plain Python.

A stored row is a sequence in the order of ``OnlineTable.row_columns``: event time (µs),
the created timestamp (µs) when the view has one, then every feature in its stored form;
a pushed row may carry its journal sequence number and position after those. A read at T
takes the entity's best row with event time <= T — the greatest event time, then the
greatest created timestamp, then the greatest feature values, nulls losing: the training
frame's tie-break — and gives nulls when that row is older than T - ttl.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..times import micros_to_datetime

if TYPE_CHECKING:
    import pyarrow as pa

    from .layout import OnlineTable

__all__ = [
    "best_row",
    "tie_key",
    "python_values",
    "row_json",
    "JSON_DECODERS",
    "push_rows_of",
    "push_columns_of",
    "PushColumns",
    "dumps",
    "loads",
]


def tie_key(row: Sequence[Any], width: int) -> tuple[Any, ...]:
    """Order of rows at one event time: created, then features, each greater winning, nulls losing."""
    return tuple((v is not None, v) for v in row[1:width])


def best_row(
    rows: Sequence[Sequence[Any]], at_us: int, ttl_us: int | None, width: int
) -> Sequence[Any] | None:
    """The row a read at ``at_us`` gives among ``rows`` (None: no row, or past its TTL);
    ``width`` is how many leading values take part in the tie-break (time, created, features)."""
    if len(rows) == 1:
        best: Sequence[Any] | None = rows[0]
        if best[0] > at_us:  # type: ignore[index]
            return None
    else:
        best = None
        for row in rows:
            ts = row[0]
            if ts > at_us:
                continue
            if best is None or ts > best[0]:
                best = row
            elif ts == best[0] and tie_key(row, width) > tie_key(best, width):
                best = row
        if best is None:
            return None
    if ttl_us is not None and best[0] < at_us - ttl_us:  # type: ignore[index]
        return None
    return best


def _from_epoch(value: Any) -> Any:
    return None if value is None else micros_to_datetime(value)


#: Stored JSON value (Redis, journals) → the Python value a read returns, per feature type.
JSON_DECODERS: dict[str, Callable[[Any], Any] | None] = {
    "int64": None,
    "float64": None,
    "string": None,
    "categorical": None,
    "bool": None,
    "timestamp": _from_epoch,
    "list<float>": None,
}


def python_values(batch: pa.RecordBatch | pa.Table) -> list[list[Any]]:
    """Columns of a canonical batch as Python lists (µs integers, floats, text, lists)."""
    return [col.to_pylist() for col in batch.columns]


def row_json(row: Sequence[Any]) -> str:
    """A stored row as the compact JSON array stores keep (NaN has been made null before)."""
    return json.dumps(list(row), separators=(",", ":"), allow_nan=False)


def _infinite(value: Any) -> bool:
    if type(value) is float:
        return value in (float("inf"), float("-inf"))
    if type(value) is list:
        return any(_infinite(v) for v in value)
    return False


def dumps(value: Any) -> bytes:
    """Compact JSON of stored rows (orjson: exact int64, fast), with ±Infinity written as Infinity
    the way DuckDB writes it (orjson would write null)."""
    import orjson

    out = orjson.dumps(value)
    # orjson writes ±Infinity as null, so only a text with a null can hide one: look then
    if b"null" in out and any(
        _infinite(v) for row in value for v in (row if type(row) in (list, tuple) else [row])
    ):
        import json

        return json.dumps(value, separators=(",", ":")).encode()
    return out


def loads(text: bytes | str) -> Any:
    """JSON of stored rows; Infinity (which orjson refuses) through the standard parser."""
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        import json

        return json.loads(text)


def _micros(column: Any) -> Any:
    """A date or timestamp column as µs since the epoch (an Arrow int64 array, naive UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_date(column.type):
        column = pc.cast(column, pa.timestamp("us"))
    elif pa.types.is_timestamp(column.type) and column.type.tz is not None:
        column = pc.cast(column, pa.timestamp(column.type.unit))  # the same instants, naive UTC
    return pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64())


def _stored(column: Any, kind: str) -> list[Any]:
    """A typed Arrow column as the stored (JSON) values of a feature of type ``kind``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind == "timestamp":
        return list(_micros(column).to_pylist())
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if kind == "float64" and len(column) > 64 and pa.types.is_floating(column.type):
        if not pc.any(pc.is_nan(column)).as_py():  # the usual case: nothing to replace
            return list(column.to_pylist())
    values = column.to_pylist()
    if kind == "float64":
        return [None if v is None or v != v else v for v in values]
    if kind == "list<float>":
        return [None if v is None else [None if x is None or x != x else x for x in v] for v in values]
    return list(values)


def _key_values(column: Any, kind: str) -> list[Any]:
    """An entity key column as Python ints (``int64`` keys) or text."""
    import pyarrow as pa

    values = column.to_pylist()
    if kind == "int64":
        return values if pa.types.is_integer(column.type) else [int(v) for v in values]
    return values if pa.types.is_string(column.type) else [v if type(v) is str else str(v) for v in values]


class PushColumns:
    """Pushed rows as Python columns: the entity keys, then the stored row's (EVENT_TS,
    [CREATED_TS,] features in their stored form)."""

    __slots__ = ("columns", "nkeys")

    def __init__(self, columns: list[list[Any]], nkeys: int) -> None:
        self.columns = columns
        self.nkeys = nkeys

    def __len__(self) -> int:
        return len(self.columns[0])

    @property
    def times(self) -> list[int]:
        return self.columns[self.nkeys]

    def keys(self) -> list[tuple[Any, ...]]:
        return list(zip(*self.columns[: self.nkeys], strict=True))

    def records(self) -> list[tuple[Any, ...]]:
        """Each row as one tuple: keys, then the stored row."""
        return list(zip(*self.columns, strict=True))

    def pairs(self) -> list[tuple[tuple[Any, ...], list[Any]]]:
        """(entity key, stored row) of each row."""
        values = zip(*self.columns[self.nkeys :], strict=True)
        return [(k, list(v)) for k, v in zip(self.keys(), values, strict=True)]


def push_columns_of(rows: pa.Table, table: OnlineTable) -> PushColumns:
    """The rows of ``rows`` — keys, EVENT_TS, [CREATED_TS,] features (a windowed view: its event
    columns), typed as the view types them — as Python columns in the stored form, without a
    database (pushes are often one row). A windowed view's events in no window of a read at
    or after the version's end are left out."""
    import pyarrow.compute as pc

    from ..sqltext import CREATED_TS, EVENT_TS

    times = _micros(rows.column(EVENT_TS))
    after = table.events_after_us
    if after is not None:  # events no read at or after the version's end can need
        keep = pc.greater(times, after)
        rows, times = rows.filter(keep), times.filter(keep)
    columns = [
        _key_values(rows.column(k), kind) for k, kind in zip(table.entity, table.key_types, strict=True)
    ]
    columns.append(list(times.to_pylist()))
    if table.created:
        columns.append(list(_micros(rows.column(CREATED_TS)).to_pylist()))
    for f in table.stored:
        columns.append(_stored(rows.column(f.name), f.type))
    return PushColumns(columns, len(table.entity))


def push_rows_of(rows: pa.Table, table: OnlineTable) -> list[tuple[tuple[Any, ...], list[Any]]]:
    """(entity key, stored row) of each row of ``rows`` (see ``push_columns_of``), in order."""
    return push_columns_of(rows, table).pairs()
