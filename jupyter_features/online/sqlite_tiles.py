"""Time tiles of a windowed version in the SQLite online store: partial aggregates per entity.

``"<view>__v<N>__tiles"`` holds, per entity and tile — the events with time in (t, t + width],
``width`` an hour or a day (``__jf_g``), ``t`` a multiple of it — one column per band
aggregate of the view (``count(*)``, ``count(x)``, ``sum(x)``, ``min(x)``, ``max(x)``, each with
its FILTER flag) over the version's events; ``"<view>__v<N>__pushed_tiles"``, the same
over its pushed events, per hour only (a read takes a band's whole hours from them in one range). A read covers the inside of
each band with whole tiles and reads raw events only at its edges (``sqlite_window_sql``), so a
dense entity's read touches a few dozen rows instead of every event; the values are exact,
tiles only group the same events.

The run's switch adds the tiles of the version's events (``build_tiles``, before readers see
it); every insert of pushed events — a push, the switch's replay, the run's events after
``end`` — adds theirs to the pushed tiles in the same transaction (``add_tiles``), SQLite
grouping the rows just inserted in one statement. Pushed tiles have their own table so that a
push of many entities rewrites a few pages of a small table, not a page of the events' tiles
per entity (with the WAL and checkpoints, page writes are most of a push's cost); a read
adds their parts only once the version holds pushed events. An integer sum past 64 bits is
kept as +inf, a REAL: a read meeting one evaluates the events in Python.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..sqltext import EVENT_TS, quote
from .layout import OnlineTable
from .sqlite_rows import SQL_TYPES
from .window_values import WindowSpec

__all__ = [
    "HOUR",
    "DAY",
    "TileColumn",
    "tile_columns",
    "tile_widths",
    "tiles_name",
    "pushed_tiles_of",
    "create_tiles_sql",
    "build_tiles",
    "add_tiles",
    "served_tiles",
    "TILE_WIDTH",
    "TILE_START",
    "OVERFLOW",
]

HOUR = 3_600_000_000
DAY = 24 * HOUR
TILE_WIDTH, TILE_START = "__jf_g", "__jf_t"
OVERFLOW = float("inf")  # an integer sum past 64 bits: SQLite keeps it as a REAL
_NUMERIC = frozenset({"int64", "float64", "bool", "timestamp"})  # SQLite INTEGER or REAL values
_INTEGER = frozenset({"int64", "bool", "timestamp"})
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class TileColumn:
    """One partial aggregate a tile holds: ``function(input) FILTER (WHERE flag)``."""

    function: str  # count, sum, min or max
    input: str | None  # None: count(*)
    flag: str | None
    sql_type: str
    int_sum: bool  # an integer sum: may pass 64 bits

    @property
    def name(self) -> str:
        text = f"{self.function}({self.input or '*'})"
        return text + (f" if {self.flag}" if self.flag is not None else "")

    def key(self) -> tuple[str, str | None, str | None]:
        return (self.function, self.input, self.flag)


def tile_columns(spec: WindowSpec) -> list[TileColumn]:
    """The partial aggregates of the view's aggregates that tiles can hold (not DISTINCT, not the
    variances, numeric sums, numeric flags, no float lists), in a fixed order."""
    kinds = {c.name: c.type for c in spec.columns}
    out: dict[tuple[str, str | None, str | None], TileColumn] = {}

    def add(function: str, inp: str | None, flag: str | None) -> None:
        kind = kinds.get(inp or "", "int64")
        if function == "count":
            sql_type, int_sum = "INTEGER", False
        elif function == "sum":
            sql_type, int_sum = ("INTEGER" if kind in _INTEGER else "REAL"), kind in _INTEGER
        else:
            sql_type, int_sum = SQL_TYPES[kind], False
        column = TileColumn(function, inp, flag, sql_type, int_sum)
        out.setdefault(column.key(), column)

    for a in spec.aggregates:
        if a.flag is not None and kinds.get(a.flag) not in _NUMERIC:
            continue
        if a.input is not None and kinds.get(a.input) in (None, "list<float>"):
            continue
        if a.function == "count" and not a.distinct:
            add("count", a.input, a.flag)
        elif a.function in ("sum", "avg") and kinds.get(a.input or "") in _NUMERIC:
            add("sum", a.input, a.flag)
            if a.function == "avg":
                add("count", a.input, a.flag)
        elif a.function in ("min", "max"):
            add(a.function, a.input, a.flag)
    return list(out.values())


def tile_widths(spec: WindowSpec) -> list[int]:
    """The tile widths worth keeping for the view's windows: an hour when some band (the time
    between two consecutive windows) spans two hours, a day when one spans two days."""
    lengths = sorted({us for _, us in spec.windows})
    widest = max(b - a for a, b in zip([0, *lengths], lengths, strict=False))
    return [w for w in (HOUR, DAY) if widest >= 2 * w]


def tiles_name(view: str, version: int) -> str:
    return f"{view}__v{version}__tiles"


def pushed_tiles_of(name: str) -> str:
    """The table of the pushed events' tiles of the version whose events' tiles are ``name``."""
    return name.removesuffix("__tiles") + "__pushed_tiles"


def create_tiles_sql(name: str, table: OnlineTable) -> list[str]:
    """The statements creating a version's tiles tables, of its events' and of its pushed events'
    (none when its view keeps no tiles)."""
    spec = table.window
    if spec is None or not tile_widths(spec) or not tile_columns(spec):
        return []
    keys = [f"{quote(k)} {SQL_TYPES[t]} NOT NULL" for k, t in zip(table.entity, table.key_types, strict=True)]
    cols = [f"{quote(c.name)} {c.sql_type}" for c in tile_columns(spec)]
    pk = ", ".join([*(quote(k) for k in table.entity), TILE_WIDTH, TILE_START])
    columns = [*keys, f"{TILE_WIDTH} INTEGER NOT NULL", f"{TILE_START} INTEGER NOT NULL", *cols]
    return [
        f"CREATE TABLE {quote(tiles)} ({', '.join(columns)}, PRIMARY KEY ({pk})) WITHOUT ROWID"
        for tiles in (name, pushed_tiles_of(name))
    ]


def served_tiles(con: sqlite3.Connection, table: OnlineTable) -> str | None:
    """The name of ``table``'s tiles when the store holds them, and its pushed events' tiles, with
    every column its reads use (a version written without tiles, or with other ones, is read
    from its events)."""
    if table.window is None:
        return None
    name = tiles_name(table.view, table.version)
    wanted = {TILE_WIDTH, TILE_START, *table.entity, *(c.name for c in tile_columns(table.window))}
    for tiles in (name, pushed_tiles_of(name)):
        found = {r[1] for r in con.execute(f"PRAGMA table_info({quote(tiles)})")}
        if not found or not wanted <= found:
            return None
    return name


def _upsert(entity: Sequence[str], columns: Sequence[TileColumn]) -> str:
    """``ON CONFLICT`` merge of a new tile row into a stored one."""
    merges = []
    for c in columns:
        q = quote(c.name)
        if c.function == "count":
            merges.append(f"{q} = {q} + excluded.{q}")
        elif c.int_sum:  # SQLite turns an integer + past 64 bits into a REAL: keep +inf
            merges.append(
                f"{q} = CASE WHEN typeof({q} + excluded.{q}) = 'real' THEN 9e999 "
                f"ELSE coalesce({q} + excluded.{q}, {q}, excluded.{q}) END"
            )
        elif c.function == "sum":
            merges.append(f"{q} = coalesce({q} + excluded.{q}, {q}, excluded.{q})")
        else:
            merges.append(f"{q} = coalesce({c.function}({q}, excluded.{q}), {q}, excluded.{q})")
    conflict = ", ".join([*(quote(k) for k in entity), TILE_WIDTH, TILE_START])
    return f" ON CONFLICT ({conflict}) DO UPDATE SET " + ", ".join(merges)


def _target(entity: Sequence[str], name: str, columns: Sequence[TileColumn]) -> str:
    cols = [*(quote(k) for k in entity), TILE_WIDTH, TILE_START, *(quote(c.name) for c in columns)]
    return f"INSERT INTO {quote(name)} ({', '.join(cols)})"  # fmt: skip


def _insert_sql(name: str, table: OnlineTable, source: str, where: str = "true") -> str:
    """``INSERT`` of the tiles of the events in ``source`` (a table with the keys, the event time
    and the event columns; only its rows matching ``where``) into ``name``, added to the tiles
    already there."""
    assert table.window is not None
    return _tiles_sql(name, table.window, tuple(table.entity), source, where)


@lru_cache(maxsize=256)
def _keeps_tiles(spec: WindowSpec) -> bool:
    return bool(tile_widths(spec) and tile_columns(spec))


@lru_cache(maxsize=256)
def _pushed_sql(name: str, spec: WindowSpec, entity: tuple[str, ...], rows_table: str) -> str:
    """``INSERT`` of the tiles of the rows of ``rows_table`` past rowid ``?1`` into ``name``."""
    source = f"{quote(rows_table)} NOT INDEXED"  # a rowid range
    return _tiles_sql(name, spec, entity, source, "rowid > ?1", [HOUR])


def _tiles_sql(
    name: str,
    spec: WindowSpec,
    entity: tuple[str, ...],
    source: str,
    where: str,
    widths: list[int] | None = None,
) -> str:
    columns = tile_columns(spec)
    keys = [quote(k) for k in entity]
    aggs = []
    for c in columns:
        text = f"{c.function}({'*' if c.input is None else quote(c.input)})"
        aggs.append(text + (f" FILTER (WHERE {quote(c.flag)})" if c.flag is not None else ""))
    parts = []
    for width in widths or tile_widths(spec):
        # floor((ts - 1) / width) * width: SQLite's division truncates toward zero
        start = f"((({EVENT_TS} - 1) / {width}) - (({EVENT_TS} - 1) % {width} < 0)) * {width}"
        parts.append(
            f"SELECT {', '.join([*keys, str(width), start, *aggs])} FROM {source} "
            f"WHERE {where} GROUP BY {', '.join([*keys, start])}"
        )
    return _target(entity, name, columns) + " " + " UNION ALL ".join(parts) + _upsert(entity, columns)


def build_tiles(con: sqlite3.Connection, events: str, name: str, table: OnlineTable) -> None:
    """Add the tiles of the events in the version's table ``events`` to ``name`` (inside the
    caller's transaction). An integer sum past 64 bits: built in Python, kept as +inf."""
    spec = table.window
    if spec is None or not create_tiles_sql(name, table):
        return
    try:
        con.execute(_insert_sql(name, table, quote(events)))  # one statement: all or nothing
    except sqlite3.OperationalError as exc:
        if "integer overflow" not in str(exc):
            raise
        nkeys = len(table.entity)
        columns = [quote(k) for k in table.entity] + [EVENT_TS, *(quote(c.name) for c in spec.columns)]
        cursor = con.execute(f"SELECT {', '.join(columns)} FROM {quote(events)}")
        while batch := cursor.fetchmany(100_000):
            _add(con, name, table, [(r[:nkeys], r[nkeys:]) for r in batch], created=False)


def add_tiles(
    con: sqlite3.Connection,
    rows_table: str,
    table: OnlineTable,
    rows: Sequence[tuple[tuple[Any, ...], Sequence[Any]]]
    | Callable[[], Sequence[tuple[tuple[Any, ...], Sequence[Any]]]],
    count: int | None = None,
) -> None:
    """Add the tiles of pushed events ``rows`` ((key, stored row) pairs, just inserted into
    ``rows_table``, a version's pushed rows; or a function making them, with their ``count``,
    only called when SQLite cannot group them) to the version's pushed tiles, in the caller's
    transaction."""
    spec = table.window
    n = count if count is not None else len(rows) if not callable(rows) else len(rows())
    if spec is None or not n or not rows_table.endswith("__rows") or not _keeps_tiles(spec):
        return
    name = pushed_tiles_of(rows_table[: -len("__rows")] + "__tiles")
    try:
        # the rows just inserted hold the last len(rows) rowids (SQLite numbers a row past the
        # largest): SQLite groups them into tiles in one statement
        last = con.execute(f"SELECT max(rowid) FROM {quote(rows_table)}").fetchone()[0]
        if isinstance(last, int) and n <= last < _INT64[1]:
            try:
                con.execute(_pushed_sql(name, spec, tuple(table.entity), rows_table), (last - n,))
                return
            except sqlite3.OperationalError as exc:
                if "integer overflow" not in str(exc):
                    raise
                # a sum past 64 bits: the statement wrote nothing; Python's integers hold it
        _add(con, name, table, rows() if callable(rows) else rows, created=table.created)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        # a version written without tiles: its reads aggregate the events


def _add(
    con: sqlite3.Connection,
    name: str,
    table: OnlineTable,
    rows: Sequence[tuple[tuple[Any, ...], Sequence[Any]]],
    *,
    created: bool,
) -> None:
    """Group ``rows`` by tile in Python (exact integer sums) and add them to ``name``."""
    assert table.window is not None
    pushed = name.endswith("__pushed_tiles")  # hour tiles only
    widths, steps, sums, sql = _adding(name, table.window, tuple(table.entity), created, pushed)
    if not widths:
        return
    tiles: dict[tuple[Any, ...], list[Any]] = {}
    for key, row in rows:
        ts = row[0]
        for width in widths:
            tile = (*key, width, (ts - 1) // width * width)
            acc = tiles.get(tile)
            if acc is None:
                acc = tiles[tile] = [0 if f == "count" else None for f, _, _ in steps]
            for j, (function, inp, flag) in enumerate(steps):
                if flag >= 0 and not row[flag]:
                    continue
                if function == "count":
                    if inp < 0 or row[inp] is not None:
                        acc[j] += 1
                    continue
                x = row[inp]
                if x is None:
                    continue
                old = acc[j]
                if old is None:
                    acc[j] = x
                elif function == "sum":
                    acc[j] = old + x
                elif (x < old) if function == "min" else (x > old):
                    acc[j] = x
    for acc in tiles.values():
        for j in sums:
            if acc[j] is not None and not _INT64[0] <= acc[j] <= _INT64[1]:
                acc[j] = OVERFLOW
    con.executemany(sql, [(*tile, *acc) for tile, acc in tiles.items()])


@lru_cache(maxsize=256)
def _adding(
    name: str, spec: WindowSpec, entity: tuple[str, ...], created: bool, hours: bool = False
) -> tuple[list[int], list[tuple[str, int, int]], list[int], str]:
    """How ``_add`` groups rows of a version: tile widths, per tile column (function, input's and
    flag's positions in a stored row, -1 for none), the integer sums, the upsert."""
    widths, columns = tile_widths(spec), tile_columns(spec)
    if not widths or not columns:
        return [], [], [], ""
    widths = [HOUR] if hours else widths
    first = 1 + created  # a stored row: event time, [created,] the event columns
    position = {c.name: first + i for i, c in enumerate(spec.columns)}
    steps = [
        (c.function, position[c.input] if c.input else -1, position[c.flag] if c.flag else -1)
        for c in columns
    ]
    marks = ", ".join("?" * (len(entity) + 2 + len(columns)))
    sql = f"{_target(entity, name, columns)} VALUES ({marks})" + _upsert(entity, columns)
    return widths, steps, [j for j, c in enumerate(columns) if c.int_sum], sql
