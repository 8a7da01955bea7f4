"""Pushed rows in the SQLite online store: the per-version rows table and the push journal.

- ``"<view>__v<N>__rows"``: rows pushed into version N (keys, event time, [created,]
  features, the push's journal sequence number and the row's position in it), indexed
  on (keys, event time). Readers reach the served version's through the SQL view
  ``"<view>__pushed"``, switched together with ``"<view>"``.
- ``__jf_online_pushes``: the journal, one entry per push call (view, layout, event-time
  range, rows as JSON), numbered by an AUTOINCREMENT sequence that never repeats. A run's
  switch replays into the new version every entry its offline read did not cover, in
  the same transaction, and trims the covered ones.
- ``__jf_online_store``: the store's identity, which the workspace's push log records.
"""

from __future__ import annotations

import sqlite3
import sys
import uuid
from array import array
from collections.abc import Callable, Collection, Hashable, Sequence
from itertools import count, repeat
from typing import Any

from ..sqltext import EVENT_TS, PUSH_ORD, PUSH_SEQ, quote
from .layout import OnlineTable, is_covered
from .rows import PushColumns, dumps, loads
from .sqlite_rows import SQL_TYPES
from .sqlite_tiles import add_tiles

__all__ = [
    "JOURNAL",
    "rows_name",
    "pushed_name",
    "create_rows_sql",
    "ensure_push_schema",
    "store_identity",
    "insert_pushed",
    "insert_push",
    "journal",
    "journal_push",
    "replay_journal",
    "point_pushed_view",
    "read_snapshot",
    "journal_since",
    "served_sql",
    "has_pushed",
]

JOURNAL = "__jf_online_pushes"
_IDENTITY = "__jf_online_store"
_LITTLE = sys.byteorder == "little"


def rows_name(view: str, version: int) -> str:
    return f"{view}__v{version}__rows"


def pushed_name(view: str) -> str:
    return f"{view}__pushed"


def create_rows_sql(name: str, table: OnlineTable) -> list[str]:
    keys = [f"{quote(k)} {SQL_TYPES[t]} NOT NULL" for k, t in zip(table.entity, table.key_types, strict=True)]
    types = ["int64", *(["int64"] if table.created else []), *(f.type for f in table.stored)]
    cols = [f"{quote(c)} {SQL_TYPES.get(t, 'TEXT')}" for c, t in zip(table.row_columns, types, strict=True)]
    index = ", ".join([*(quote(k) for k in table.entity), EVENT_TS])
    return [
        f"CREATE TABLE {quote(name)} ({', '.join([*keys, *cols, f'{PUSH_SEQ} INTEGER', f'{PUSH_ORD} INTEGER'])})",
        f"CREATE INDEX {quote(name + '__k')} ON {quote(name)} ({index})",
    ]


def ensure_push_schema(con: sqlite3.Connection) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {JOURNAL} (seq INTEGER PRIMARY KEY AUTOINCREMENT, view TEXT NOT NULL, "
        "layout TEXT NOT NULL, min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL, rows TEXT NOT NULL)"
    )
    con.execute(f"CREATE INDEX IF NOT EXISTS {JOURNAL}__view ON {JOURNAL} (view, seq)")
    con.execute(f"CREATE TABLE IF NOT EXISTS {_IDENTITY} (id TEXT NOT NULL)")


def store_identity(con: sqlite3.Connection) -> str:
    """The store's identity (made on first use, inside the caller's transaction)."""
    row = con.execute(f"SELECT id FROM {_IDENTITY}").fetchone()
    if row is not None:
        return str(row[0])
    identity = uuid.uuid4().hex[:16]
    con.execute(f"INSERT INTO {_IDENTITY} (id) VALUES (?)", (identity,))
    return identity


def _blob(values: Any) -> Any:
    if values is None:
        return None
    data = array("d", [float("nan") if v is None else v for v in values])
    if not _LITTLE:
        data.byteswap()
    return data.tobytes()


def _converters(table: OnlineTable) -> list[Any]:
    """Per stored column after the keys: how a JSON value becomes a SQLite value."""
    out: list[Any] = [None] * (1 + table.created)
    for f in table.stored:
        out.append(_blob if f.type == "list<float>" else (int if f.type == "bool" else None))
    return out


def insert_pushed(
    con: sqlite3.Connection,
    target: str,
    table: OnlineTable,
    rows: Sequence[tuple[tuple[Any, ...], Sequence[Any]]],
    seq: int,
) -> None:
    """Insert (key, stored row) pairs into the rows table ``target`` as push ``seq`` (and, for a
    windowed version, add them to its tiles)."""
    convert = _converters(table)
    plain = all(c is None for c in convert)
    ncols = len(table.entity) + len(convert) + 2
    sql = f"INSERT INTO {quote(target)} VALUES ({', '.join('?' * ncols)})"
    if plain:
        data = [(*key, *row, seq, i) for i, (key, row) in enumerate(rows)]
    else:
        data = [
            (
                *key,
                *[v if c is None or v is None else c(v) for c, v in zip(convert, row, strict=True)],
                seq,
                i,
            )
            for i, (key, row) in enumerate(rows)
        ]
    con.executemany(sql, data)
    add_tiles(con, target, table, rows)  # a windowed version's tiles count the same events


def insert_push(
    con: sqlite3.Connection, target: str, table: OnlineTable, push: PushColumns, seq: int
) -> None:
    """Insert a push's rows (as columns) into the rows table ``target`` as push ``seq`` (and, for
    a windowed version, add them to its tiles): the parameters go to SQLite as one stream of
    tuples, built in C (``zip``)."""
    convert = _converters(table)
    nkeys = push.nkeys
    columns = push.columns[:nkeys] + [
        col if c is None else [None if v is None else c(v) for v in col]
        for c, col in zip(convert, push.columns[nkeys:], strict=True)
    ]
    ncols = len(columns) + 2
    sql = f"INSERT INTO {quote(target)} VALUES ({', '.join('?' * ncols)})"
    con.executemany(sql, zip(*columns, repeat(seq), count()))
    if table.window is not None:  # a windowed version's tiles count the same events
        add_tiles(con, target, table, push.pairs, len(push))  # the pairs only if SQLite cannot group


def journal_push(con: sqlite3.Connection, view: str, table: OnlineTable, push: PushColumns) -> int:
    """Append a push (as columns) to the journal; its sequence number. The same entry as
    ``journal`` writes for the same rows."""
    times = push.times
    payload = dumps(push.records()).decode()
    cur = con.execute(
        f"INSERT INTO {JOURNAL} (view, layout, min_ts, max_ts, rows) VALUES (?, ?, ?, ?, ?)",
        (view, table.layout, min(times), max(times), payload),
    )
    return int(cur.lastrowid or 0)


def journal(
    con: sqlite3.Connection,
    view: str,
    table: OnlineTable,
    rows: Sequence[tuple[tuple[Any, ...], Sequence[Any]]],
) -> int:
    """Append a push of ``rows`` to the journal; its sequence number."""
    times = [row[0] for _, row in rows]
    payload = dumps([[*key, *row] for key, row in rows]).decode()
    cur = con.execute(
        f"INSERT INTO {JOURNAL} (view, layout, min_ts, max_ts, rows) VALUES (?, ?, ?, ?, ?)",
        (view, table.layout, min(times), max(times), payload),
    )
    return int(cur.lastrowid or 0)


def replay_journal(
    con: sqlite3.Connection,
    table: OnlineTable,
    target: str,
    covered: Collection[int],
    since_us: int | None,
) -> None:
    """Inside the switch's transaction: replay into ``target`` (the new version's rows table) every
    journal entry of ``table.view`` that the run's offline read did not cover; trim the covered
    ones, those of another layout (their rows cannot go into this version) and a windowed view's
    entries whose events are all in no window of a read at or after the version's end."""
    entries = con.execute(
        f"SELECT seq, layout, min_ts, max_ts, rows FROM {JOURNAL} WHERE view = ? ORDER BY seq", (table.view,)
    ).fetchall()
    nkeys = len(table.entity)
    after = table.events_after_us
    drop = []
    for seq, layout, min_ts, max_ts, payload in entries:
        if layout != table.layout or is_covered(
            seq, min_ts, max_ts, covered, since_us, table.end_us, table.window is not None
        ):
            drop.append((seq,))
            continue
        if after is not None and max_ts <= after:
            drop.append((seq,))  # events in no window of a read at or after the version's end
            continue
        rows = [(tuple(r[:nkeys]), r[nkeys:]) for r in loads(payload)]
        if after is not None:
            rows = [(k, r) for k, r in rows if r[0] > after]
        insert_pushed(con, target, table, rows, seq)
    if drop:
        con.executemany(f"DELETE FROM {JOURNAL} WHERE seq = ?", drop)


def point_pushed_view(con: sqlite3.Connection, table: OnlineTable, target: str) -> None:
    """Point ``"<view>__pushed"`` at ``target`` (inside the switch's transaction)."""
    view = pushed_name(table.view)
    keys = ", ".join(quote(k) for k in table.entity)
    cols = ", ".join(quote(c) for c in table.row_columns)
    con.execute(f"DROP VIEW IF EXISTS {quote(view)}")
    con.execute(
        f"CREATE VIEW {quote(view)} AS SELECT {table.version} AS __jf_v, {keys}, {cols}, {PUSH_SEQ}, {PUSH_ORD} "
        f"FROM {quote(target)}"
    )


def has_pushed(con: sqlite3.Connection, table: OnlineTable) -> bool:
    """Whether the served version holds pushed rows (True when that cannot be read)."""
    try:
        return bool(
            con.execute(f"SELECT EXISTS (SELECT 1 FROM {quote(pushed_name(table.view))})").fetchone()[0]
        )
    except sqlite3.Error:
        return True


def served_sql(con: sqlite3.Connection, table: OnlineTable) -> str:
    """SQL of the row each entity is served as of the version's ``end``: its materialized row or,
    when rows were pushed into the version, the best of those and them at ``end`` (the read's
    tie-break; past the TTL at ``end``: left out)."""
    base = quote(f"{table.view}__v{table.version}")
    pushed = quote(rows_name(table.view, table.version))
    try:
        has_pushes = con.execute(f"SELECT EXISTS (SELECT 1 FROM {pushed})").fetchone()[0]
    except sqlite3.OperationalError:
        has_pushes = False
    if not has_pushes:
        return f"SELECT * FROM {base}"
    keys = ", ".join(quote(k) for k in table.entity)
    cols = ", ".join(quote(c) for c in table.row_columns)
    order = ", ".join([f"{EVENT_TS} DESC", *(f"{quote(c)} DESC NULLS LAST" for c in table.row_columns[1:])])
    ttl = f" AND {EVENT_TS} >= {table.end_us - table.ttl_us}" if table.ttl_us is not None else ""
    return (
        f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS __jf_rn FROM "
        f"(SELECT {keys}, {cols} FROM {base} UNION ALL SELECT {keys}, {cols} FROM {pushed}) "
        f"WHERE {EVENT_TS} <= {table.end_us}) WHERE __jf_rn = 1{ttl}"
    )


def _json_form(table: OnlineTable) -> list[Any]:
    """Per stored column after the keys: how a SQLite value becomes its JSON (journal) form."""
    from .sqlite_rows import DECODERS

    out: list[Any] = [None] * (1 + table.created)
    for f in table.stored:
        out.append(
            DECODERS["list<float>"] if f.type == "list<float>" else (bool if f.type == "bool" else None)
        )
    return out


def read_snapshot(con: sqlite3.Connection, table: OnlineTable) -> dict[tuple[Any, ...], list[list[Any]]]:
    """Every row of the served version (materialized and pushed), by entity key, in the journal's
    JSON form; run inside a read transaction, with ``table`` read in it."""
    nkeys = len(table.entity)
    keys = ", ".join(quote(k) for k in table.entity)
    cols = ", ".join(quote(c) for c in table.row_columns)
    convert = _json_form(table)
    plain = all(c is None for c in convert)
    out: dict[tuple[Any, ...], list[Any]] = {}
    queries = (
        f"SELECT {keys}, {cols} FROM {quote(table.view)}",
        f"SELECT {keys}, {cols}, {PUSH_SEQ}, {PUSH_ORD} FROM {quote(pushed_name(table.view))}",
    )
    for query in queries:
        cursor = con.execute(query)
        if plain:
            for r in cursor:
                out.setdefault(r[:nkeys], []).append(r[nkeys:])
            continue
        for r in cursor:
            row = [v if c is None or v is None else c(v) for c, v in zip(convert, r[nkeys:], strict=False)]
            row += r[nkeys + len(convert) :]
            out.setdefault(r[:nkeys], []).append(row)
    return out


def journal_since(
    con: sqlite3.Connection,
    table: OnlineTable,
    seq: int,
    key: Callable[[list[Any]], Hashable] | None = None,
) -> list[tuple[int, dict[Any, list[list[Any]]]]]:
    """Journal entries of ``table.view`` after ``seq`` in ``table``'s layout: (seq, rows by key),
    each row followed by its seq and position (as the rows table holds them). ``key``: the
    dict key of a journal row (keys, then the row; default: the tuple of its keys)."""
    nkeys = len(table.entity)
    key_of = key if key is not None else (lambda r: tuple(r[:nkeys]))
    out = []
    for entry, layout, payload in con.execute(
        f"SELECT seq, layout, rows FROM {JOURNAL} WHERE view = ? AND seq > ? ORDER BY seq", (table.view, seq)
    ):
        if layout != table.layout:
            continue
        rows: dict[Any, list[list[Any]]] = {}
        for i, r in enumerate(loads(payload)):
            k = key_of(r)
            del r[:nkeys]  # the parsed list becomes the stored row, in place
            r.append(entry)
            r.append(i)
            found = rows.get(k)
            if found is None:
                rows[k] = [r]
            else:
                found.append(r)
        out.append((int(entry), rows))
    return out
