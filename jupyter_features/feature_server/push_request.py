"""What the push endpoint takes, checked by hand against the version the store serves.

A body is ``{"view": "user_spend", "rows": [{"user_id": 42, "ts": "2024-01-10T12:00:00",
"spend_7d": 12.5, ...}, ...]}``: each row holds the view's entity keys, its timestamp
column (and created timestamp column, if it has one) as ISO 8601 text, and every
feature. Types are strict, like the read endpoint's keys: an int64 is a JSON integer, a
float64 a JSON number, a string a JSON string, a bool true/false, a timestamp ISO text,
a list<float> a list of numbers; features may be null. Anything else is a 400 naming
the row and column, and nothing is written. A windowed view's rows hold its keys, timestamp
and the columns its aggregates read, typed by the version's metadata and projected into its
events by the version's checked projection (``window_push.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, NotMaterializedError
from ..sqltext import CREATED_TS, EVENT_TS

if TYPE_CHECKING:
    import pyarrow as pa

    from ..online import OnlineStore, OnlineTable

__all__ = ["MAX_ROWS", "parse_push"]

MAX_ROWS = 10_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
FIELDS = ("view", "rows")
_EXAMPLE = '{"view": "user_spend", "rows": [{"user_id": 42, "ts": "2024-01-10T12:00:00", ...}]}'


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _what(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", type(None): "null",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip


def _int(v: Any) -> bool:
    return type(v) is int and _INT64_MIN <= v <= _INT64_MAX


def _number(v: Any) -> bool:
    return (type(v) is float and v == v) or _int(v)


_CHECKS = {
    "int64": (_int, "a JSON integer in the int64 range"),
    "float64": (_number, "a JSON number"),
    "string": (lambda v: type(v) is str, "a JSON string"),
    "categorical": (lambda v: type(v) is str, "a JSON string"),
    "bool": (lambda v: type(v) is bool, "true or false"),
    "timestamp": (lambda v: type(v) is str and len(v) <= 64, "ISO 8601 text"),
    "list<float>": (lambda v: type(v) is list and all(_number(x) for x in v), "a list of JSON numbers"),
}


def parse_push(data: Any, store: OnlineStore) -> tuple[str, pa.Table]:
    """(view, rows as an Arrow table of keys, EVENT_TS, [CREATED_TS,] features — a windowed
    view's: keys, EVENT_TS, its event columns) of the push in ``data`` (parsed JSON), or an
    InvalidRequestError saying what is wrong."""
    import pyarrow as pa

    if type(data) is not dict or set(data) != set(FIELDS):
        unknown = [k for k in data if k not in FIELDS] if type(data) is dict else []
        if unknown:
            raise InvalidRequestError(
                f"unknown field(s) {', '.join(repr(str(k)[:100]) for k in unknown[:5])} in the push; "
                f"it takes {', '.join(FIELDS)}"
            )
        raise InvalidRequestError(f"a push is a JSON object like {_EXAMPLE}")
    view, rows = data["view"], data["rows"]
    if type(view) is not str or not view:
        raise InvalidRequestError('"view" must name a feature view, e.g. "user_spend"')
    if type(rows) is not list or not rows or not all(type(r) is dict for r in rows):
        raise InvalidRequestError(f'"rows" must be a non-empty list of JSON objects, e.g. {_EXAMPLE}')
    if len(rows) > MAX_ROWS:
        raise InvalidRequestError(f"{len(rows):,} rows in one push; send at most {MAX_ROWS:,}")
    table = store.current(view)
    if table is None:
        raise NotMaterializedError(
            f"feature view '{view[:100]}' is not materialized in {store.url.split('?', 1)[0]}; "
            "materialize it before pushing to it"
        )
    if not table.timestamp:
        raise InvalidRequestError(
            f"feature view '{view}' was materialized before pushes were possible; materialize it again"
        )
    projection = None
    if table.window is not None:  # rows of the view's relation, projected into its events
        from .window_push import window_projection

        projection = window_projection(table)
        columns = [(name, kind, required) for name, kind, _, required in projection.columns]
    else:
        columns = _columns(table)
    wanted = [name for name, _, _ in columns]
    for i, row in enumerate(rows):
        if len(row) != len(wanted) or any(name not in row for name in wanted):
            missing = [n for n in wanted if n not in row]
            extra = [str(k)[:100] for k in row if k not in wanted]
            raise InvalidRequestError(
                f"row {i} of the push to '{view}' "
                + (
                    f"lacks {', '.join(missing)}"
                    if missing
                    else f"has unknown column(s) {', '.join(extra[:5])}"
                )
                + f"; a row holds exactly: {', '.join(wanted)}"
            )
    arrays = []
    for name, kind, required in columns:
        check, what = _CHECKS[kind]
        values = [row[name] for row in rows]
        for i, v in enumerate(values):
            if v is None and not required:
                continue
            if v is None or not check(v):
                raise InvalidRequestError(
                    f"row {i} of the push to '{view}': column '{name}' is {kind}, so it takes {what}: "
                    f"{_shown(v)} is not ({_what(v)})"
                )
        arrays.append(_array(values, kind, name, view=view))
    if projection is not None:
        return view, projection.project(_typed(arrays, projection.columns, view))
    names = [EVENT_TS if name == table.timestamp else CREATED_TS if name == table.created_timestamp else name
             for name in wanted]  # fmt: skip
    return view, pa.Table.from_arrays(arrays, names=names)


def _typed(arrays: list[pa.Array], columns: Any, view: str) -> pa.Table:
    """The pushed columns cast to the view's types (an int32 column refuses an integer past its range)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for array, (name, _, target, _) in zip(arrays, columns, strict=True):
        try:
            out.append(pc.cast(array, target, safe=True))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"the push to '{view}': column '{name}' does not fit the view's type {target} ({exc})"
            ) from None
    return pa.Table.from_arrays(out, names=[name for name, _, _, _ in columns])


def _columns(table: OnlineTable) -> list[tuple[str, str, bool]]:
    """(column, type, required) of a pushed row: keys, times, features."""
    out = [(k, t, True) for k, t in zip(table.entity, table.key_types, strict=True)]
    out.append((table.timestamp, "timestamp", True))
    if table.created_timestamp:
        out.append((table.created_timestamp, "timestamp", True))
    out += [(f.name, f.type, False) for f in table.features]
    return out


def _array(values: list[Any], kind: str, name: str, *, view: str) -> pa.Array:
    import pyarrow as pa

    from ..times import naive_utc

    if kind == "timestamp":
        try:
            times = [None if v is None else naive_utc(v) for v in values]
        except (TypeError, ValueError, OverflowError):
            bad = next(v for v in values if v is not None and not _parses(v))
            raise InvalidRequestError(
                f"the push to '{view}': column '{name}' takes ISO 8601 text; {_shown(bad)} is not a time"
            ) from None
        return pa.array(times, pa.timestamp("us"))
    types = {
        "int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "categorical": pa.string(),
        "bool": pa.bool_(), "list<float>": pa.list_(pa.float64()),
    }  # fmt: skip
    return pa.array(values, types[kind])


def _parses(value: Any) -> bool:
    from ..times import naive_utc

    try:
        naive_utc(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True
