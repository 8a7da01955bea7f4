"""Reads of windowed views from the SQLite online store.

A windowed version's table ``"<view>__v<N>"`` holds one row per event (keys, ``__jf_ts``, the
aggregate inputs and filter flags), indexed on (keys, event time, the columns); pushed events go
to its rows table like any push; the version's tiles (``sqlite_tiles``) hold partial aggregates
of both per hour and day. A read is one statement over them: SQLite aggregates the windows
from tiles and the raw events at the bands' edges (``sqlite_window_sql``), or, for features
it cannot compute as Python does (a text filter flag) and sums past 64 bits, the entities'
events within the longest requested window are read and evaluated in Python
(``window_values.WindowEvaluator``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from ..sqltext import EVENT_TS, quote
from .layout import OnlineTable
from .sqlite_push import pushed_name
from .sqlite_rows import as_int, as_text, group_by_entity
from .sqlite_window_sql import META_TAG, ROWS_TAG, TileOverflow, WindowSQL, window_sql
from .window_values import WindowEvaluator

__all__ = ["WindowReadPlan", "read_windows"]


class WindowReadPlan:
    """A prepared read of some features of a windowed version for ``n`` entities."""

    __slots__ = (
        "sql",
        "table",
        "version",
        "evaluator",
        "normalize",
        "nkeys",
        "entity",
        "window",
        "aggregate",
    )

    def __init__(
        self,
        table: OnlineTable,
        features: Sequence[str] | None,
        n: int,
        meta: str,
        tiles: str | None = None,
        pushed: bool = True,
    ) -> None:
        assert table.window is not None
        self.table = table
        self.version = table.version
        wanted = table.feature_index(features)
        self.evaluator = WindowEvaluator(table.window, table.features, wanted)
        #: the statement SQLite aggregates in (None: read the events, evaluate in Python)
        self.aggregate = window_sql(
            table.window,
            table.features,
            wanted,
            table.entity,
            n,
            (table.view, pushed_name(table.view)),
            meta,
            tiles,
            pushed,
        )
        keys = table.entity
        cols = ", ".join(["__jf_v", *(quote(k) for k in keys), *(quote(c) for c in table.row_columns)])
        if len(keys) == 1:
            where = f"{quote(keys[0])} = ?" if n == 1 else f"{quote(keys[0])} IN ({', '.join('?' * n)})"
        else:
            tup = "(" + ", ".join("?" * len(keys)) + ")"
            where = f"({', '.join(quote(k) for k in keys)}) IN (VALUES {', '.join([tup] * n)})"
        where += f" AND {EVENT_TS} > ? AND {EVENT_TS} <= ?"
        self.sql = (
            f"SELECT {cols} FROM {quote(table.view)} WHERE {where} "
            f"UNION ALL SELECT {cols} FROM {quote(pushed_name(table.view))} WHERE {where}"
        )
        self.normalize = [as_int if t == "int64" else as_text for t in table.key_types]
        self.nkeys = len(keys)
        self.entity = keys
        self.window = self.evaluator.longest


def read_windows(
    con: sqlite3.Connection, plan: WindowReadPlan, entity_rows: Sequence[Mapping[str, Any]], at_us: int
) -> list[list[Any]] | None:
    """One list of values per requested feature, in entity order; None when the rows read belong
    to another version than the plan's (the caller plans again)."""
    entity = plan.entity
    if plan.nkeys == 1:
        k, norm = entity[0], plan.normalize[0]
        keys: list[Any] = [norm(row[k]) for row in entity_rows]
        flat = keys
    else:
        keys = [tuple(f(row[k]) for f, k in zip(plan.normalize, entity, strict=True)) for row in entity_rows]
        flat = [v for key in keys for v in key]
    if plan.aggregate is not None:
        try:
            return _aggregated(con, plan, plan.aggregate, keys, flat, at_us)
        except sqlite3.OperationalError as exc:
            if "integer overflow" not in str(exc):
                raise
            # a sum past 64 bits: Python's integers hold it
        except TileOverflow:
            pass  # a tile's sum is past 64 bits: likewise
    return _evaluated(con, plan, keys, flat, at_us)


def _aggregated(
    con: sqlite3.Connection,
    plan: WindowReadPlan,
    agg: WindowSQL,
    keys: list[Any],
    flat: list[Any],
    at_us: int,
) -> list[list[Any]] | None:
    found = con.execute(agg.sql, agg.params(flat, at_us, plan.table.view)).fetchall()
    first = agg.first
    width = 1 + len(plan.table.stored)
    if agg.nkeys == 0:  # one entity
        parts: dict[int, Any] = {}
        events: list[Any] = []
        served = None
        for r in found:
            tag = r[0]
            if tag >= 0:
                parts[tag] = r
            elif tag == ROWS_TAG:
                events.append(r[first : first + width])
            else:
                served = r[first] if not r[first + 1] else None  # pushed events the plan does not read
        if served != plan.version:
            return None
        return [[v] for v in agg.values(parts, events, at_us)]
    by_key: dict[Any, dict[int, Any]] = {}
    events_of: dict[Any, list[Any]] = {}
    served = None
    single = agg.nkeys == 1
    for r in found:
        tag = r[0]
        if tag == META_TAG:
            served = r[first] if not r[first + 1] else None
            continue
        key = r[1] if single else r[1:first]
        if tag == ROWS_TAG:
            events_of.setdefault(key, []).append(r[first : first + width])
        else:
            by_key.setdefault(key, {})[tag] = r
    if served != plan.version:
        return None
    ordered = [agg.values(by_key.get(key, {}), events_of.get(key, []), at_us) for key in keys]
    return [list(c) for c in zip(*ordered, strict=True)] if ordered else [[] for _ in agg.recipes]


def _evaluated(
    con: sqlite3.Connection, plan: WindowReadPlan, keys: list[Any], flat: list[Any], at_us: int
) -> list[list[Any]] | None:
    """The entities' events read and evaluated in Python."""
    skip = 1 + plan.nkeys
    params = [*flat, at_us - plan.window, at_us]
    found = con.execute(plan.sql, params + params).fetchall()
    version = plan.version
    for r in found:
        if r[0] != version:
            return None
    evaluator = plan.evaluator
    if len(keys) == 1:
        values = evaluator.values([r[skip:] for r in found], at_us) if found else evaluator.empty()
        return [[v] for v in values]
    grouped = group_by_entity(found, plan.nkeys, skip)
    empty = evaluator.empty()
    ordered = []
    for key in keys:
        rows = grouped.get(key)
        ordered.append(evaluator.values(rows, at_us) if rows else empty)
    return [list(c) for c in zip(*ordered, strict=True)] if ordered else [[] for _ in empty]
