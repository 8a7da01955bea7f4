"""Reads of windowed views from the SQLite online store.

A windowed version's table ``"<view>__v<N>"`` holds one row per event (keys, ``__jf_ts``, the
aggregate inputs and filter flags), indexed on (keys, event time); pushed events go to its rows
table like any push. A read selects the entities' events within the longest requested window
before T from both, in one statement, and evaluates the features in Python
(``window_values.WindowEvaluator``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from ..sqltext import EVENT_TS, quote
from .layout import OnlineTable
from .sqlite_push import pushed_name
from .sqlite_rows import as_int, as_text
from .window_values import WindowEvaluator

__all__ = ["WindowReadPlan", "read_windows"]


class WindowReadPlan:
    """A prepared read of some features of a windowed version for ``n`` entities."""

    __slots__ = ("sql", "table", "version", "evaluator", "normalize", "nkeys", "entity", "window")

    def __init__(self, table: OnlineTable, features: Sequence[str] | None, n: int) -> None:
        assert table.window is not None
        self.table = table
        self.version = table.version
        self.evaluator = WindowEvaluator(table.window, table.features, table.feature_index(features))
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
    skip = 1 + plan.nkeys
    if plan.nkeys == 1:
        k, norm = entity[0], plan.normalize[0]
        keys: list[Any] = [norm(row[k]) for row in entity_rows]
        params: list[Any] = [*keys, at_us - plan.window, at_us]
    else:
        keys = [tuple(f(row[k]) for f, k in zip(plan.normalize, entity, strict=True)) for row in entity_rows]
        params = [*(v for key in keys for v in key), at_us - plan.window, at_us]
    found = con.execute(plan.sql, params + params).fetchall()
    version = plan.version
    for r in found:
        if r[0] != version:
            return None
    evaluator = plan.evaluator
    if len(keys) == 1:
        values = evaluator.values([r[skip:] for r in found], at_us) if found else evaluator.empty()
        return [[v] for v in values]
    grouped: dict[Any, list[Any]] = {}
    if plan.nkeys == 1:
        for r in found:
            grouped.setdefault(r[1], []).append(r[skip:])
    else:
        for r in found:
            grouped.setdefault(r[1:skip], []).append(r[skip:])
    empty = evaluator.empty()
    ordered = []
    for key in keys:
        rows = grouped.get(key)
        ordered.append(evaluator.values(rows, at_us) if rows else empty)
    return [list(c) for c in zip(*ordered, strict=True)] if ordered else [[] for _ in empty]
