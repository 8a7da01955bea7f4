"""Windowed views online: an entity's stored events and the values a read at time T gives.

A windowed view's stored rows are its *events*: ``[event time µs, input 1, ..., flag 1, ...]``
— the relation of its window plan (``windows.WindowPlan``: the aggregates' inputs and FILTER
flags), in the order of ``WindowSpec.columns``. A read at T evaluates each requested feature
over the entity's events with event time in (T - w, T], exactly, with the offline engine's
types and null rules: count is 0 over no rows, sum of integers an integer, avg and the
variances floats, min and max keep their input's type, a variance over fewer than two rows
null; every other aggregate over no rows null.

``WindowSpec`` is what a version's metadata carries for a reader (so no reader parses SQL);
it is read back from the store, so ``WindowSpec.from_dict`` checks it as untrusted input.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OnlineStoreError
from ..schema import FEATURE_TYPES, Feature
from ..times import micros_to_datetime

__all__ = ["WindowSpec", "WindowAggregate", "WindowEvaluator", "WindowPush", "FUNCTIONS", "window_spec"]

#: The aggregate functions a windowed view may use online (the window plan's vocabulary).
FUNCTIONS = ("count", "sum", "avg", "min", "max", "stddev_samp", "var_samp")
_MAX_MICROS = 10**17  # about 3,000 years: longer is not a window
_MAX_PUSH_SQL = 100_000  # characters of a push projection: more is not one a run wrote


@dataclass(frozen=True)
class WindowPush:
    """How pushed rows become a windowed version's events, for a pusher without the view: the
    columns a push carries (name, DuckDB type) and the projection's SQL (keys, event time, inputs,
    flags) over them as the table ``windows.PUSHED_TABLE``. Read back from the store, it is
    untrusted: whoever runs ``sql`` checks it first (``feature_server/window_push.py``)."""

    columns: tuple[tuple[str, str], ...]
    sql: str

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [[name, kind] for name, kind in self.columns], "sql": self.sql}


@dataclass(frozen=True)
class WindowAggregate:
    """One aggregate: ``function(input) FILTER (WHERE flag) AS alias`` (``input`` None: ``count(*)``)."""

    function: str
    input: str | None
    flag: str | None
    distinct: bool
    alias: str


@dataclass(frozen=True)
class WindowSpec:
    """What a reader of a windowed view's version needs: the stored event columns (after the event
    time), the aggregates and the windows (text, µs). Features are ``alias_window``, each window in
    order, each aggregate in order (``names``)."""

    columns: tuple[Feature, ...]
    aggregates: tuple[WindowAggregate, ...]
    windows: tuple[tuple[str, int], ...]
    push: WindowPush | None = None  # None: written before pushes over HTTP could be projected

    @property
    def names(self) -> list[str]:
        return [f"{a.alias}_{text}" for text, _ in self.windows for a in self.aggregates]

    @property
    def longest_us(self) -> int:
        return max(us for _, us in self.windows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [c.to_dict() for c in self.columns],
            "aggregates": [
                {
                    "function": a.function,
                    "input": a.input,
                    "flag": a.flag,
                    "distinct": a.distinct,
                    "alias": a.alias,
                }
                for a in self.aggregates
            ],
            "windows": [[text, us] for text, us in self.windows],
            **({"push": self.push.to_dict()} if self.push is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, view: str) -> WindowSpec:
        """The spec ``data`` (from a store's metadata) describes; an OnlineStoreError when it is not
        one this version of jupyter-features writes (unknown function, column or type)."""

        def bad(what: str) -> OnlineStoreError:
            return OnlineStoreError(
                f"feature view '{view}': the online store's metadata of its windows is not valid ({what}); "
                "the store was changed behind its back: materialize the view again"
            )

        try:
            columns = tuple(Feature.from_dict(c) for c in data["columns"])
            names = {c.name for c in columns}
            if any(c.type not in FEATURE_TYPES for c in columns) or len(names) != len(columns):
                raise bad("a stored column has an unknown type or a repeated name")
            aggregates = []
            for a in data["aggregates"]:
                function, inp, flag = a["function"], a.get("input"), a.get("flag")
                if function not in FUNCTIONS:
                    raise bad(f"function {function!r} is not one of {', '.join(FUNCTIONS)}")
                if (inp is not None and inp not in names) or (flag is not None and flag not in names):
                    raise bad(f"aggregate {a.get('alias')!r} reads a column that is not stored")
                if inp is None and function != "count":
                    raise bad(f"{function}() needs an input")
                aggregates.append(
                    WindowAggregate(function, inp, flag, bool(a.get("distinct")), str(a["alias"]))
                )
            windows = tuple((str(text), int(us)) for text, us in data["windows"])
            if not aggregates or not windows or any(not 0 < us < _MAX_MICROS for _, us in windows):
                raise bad("no aggregates, no windows or a window that is not a positive length")
            push = None
            if data.get("push") is not None:
                raw = data["push"]
                pairs = tuple((name, kind) for name, kind in raw["columns"])
                sql = raw["sql"]
                plain = all(type(n) is str and type(k) is str and 0 < len(n) <= 256 and 0 < len(k) <= 256
                            for n, k in pairs)  # fmt: skip
                if not plain or len({n for n, _ in pairs}) != len(pairs) or type(sql) is not str:
                    raise bad("the pushed columns are not distinct names with types")
                if not pairs or not 0 < len(sql) <= _MAX_PUSH_SQL:
                    raise bad("the push projection is empty or too long")
                push = WindowPush(pairs, sql)
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from None
        return cls(columns, tuple(aggregates), windows, push)


def value_decoder(kind: str) -> Callable[[Any], Any] | None:
    """A min/max value as reads return it: times as datetimes, booleans as bool."""
    if kind == "timestamp":
        return micros_to_datetime
    if kind == "bool":
        return bool
    return None


class WindowEvaluator:
    """The requested features of a windowed version, compiled once: ``values(rows, at_us)`` gives
    one value per feature over an entity's stored ``rows`` (any order)."""

    __slots__ = ("features", "positions", "windows", "longest", "decoders", "_steps")

    def __init__(self, spec: WindowSpec, features: Sequence[Feature], wanted: Sequence[int]) -> None:
        position = {c.name: i + 1 for i, c in enumerate(spec.columns)}  # after the event time
        kinds = {c.name: c.type for c in spec.columns}
        per = len(spec.aggregates)
        self.windows = sorted({spec.windows[i // per][1] for i in wanted}, reverse=True)
        self.longest = self.windows[0] if self.windows else 0
        steps = []
        for i in wanted:
            a = spec.aggregates[i % per]
            us = spec.windows[i // per][1]
            steps.append(
                (
                    a.function,
                    position[a.input] if a.input is not None else 0,
                    position[a.flag] if a.flag is not None else 0,
                    a.distinct,
                    us,
                    a.input is not None and kinds[a.input] == "list<float>",
                )
            )
        self._steps = steps
        self.decoders = [
            value_decoder(features[i].type) if spec.aggregates[i % per].function in ("min", "max") else None
            for i in wanted
        ]
        self.features = [features[i] for i in wanted]

    def empty(self) -> list[Any]:
        """The values over no events: counts 0, all else null."""
        return [0 if s[0] == "count" else None for s in self._steps]

    def values(self, rows: Sequence[Sequence[Any]], at_us: int) -> list[Any]:
        """Each feature over the rows with event time in (at - window, at]."""
        low = at_us - self.longest
        rows = [r for r in rows if low < r[0] <= at_us]
        if not rows:
            return self.empty()
        rows.sort(key=_time)
        times = [r[0] for r in rows]
        starts = {us: bisect_right(times, at_us - us) for us in self.windows}
        columns: dict[int, list[Any]] = {}
        out: list[Any] = []
        for (function, inp, flag, distinct, us, lists), decode in zip(
            self._steps, self.decoders, strict=True
        ):
            start = starts[us]
            if inp == 0:  # count(*)
                if flag == 0:
                    out.append(len(rows) - start)
                else:
                    fs = columns.get(flag)
                    if fs is None:
                        fs = columns[flag] = [r[flag] for r in rows]
                    out.append(sum(1 for f in fs[start:] if f))
                continue
            xs = columns.get(inp)
            if xs is None:
                xs = columns[inp] = [r[inp] for r in rows]
            part = xs[start:]
            if flag:
                fs = columns.get(flag)
                if fs is None:
                    fs = columns[flag] = [r[flag] for r in rows]
                used = [x for x, f in zip(part, fs[start:], strict=True) if f and x is not None]
            elif None in part:
                used = [x for x in part if x is not None]
            else:
                used = part
            out.append(_aggregate(function, used, distinct, lists, decode))
        return out


def _time(row: Sequence[Any]) -> Any:
    return row[0]


def _aggregate(function: str, used: list[Any], distinct: bool, lists: bool, decode: Any) -> Any:
    n = len(used)
    if function == "count":
        if distinct:
            return len({tuple(x) if lists else x for x in used})
        return n
    if not n:
        return None
    if function == "sum":
        return sum(used)
    if function == "avg":
        return sum(used) / n
    if function in ("min", "max"):
        value = min(used) if function == "min" else max(used)
        return value if decode is None else decode(value)
    if n < 2:
        return None
    mean = math.fsum(used) / n
    var = math.fsum((float(x) - mean) ** 2 for x in used) / (n - 1)
    return var if function == "var_samp" else math.sqrt(var)


def window_spec(
    aggregates: Sequence[Any],
    windows: Sequence[Any],
    column_types: Mapping[str, str],
    push: WindowPush | None = None,
) -> WindowSpec:
    """A spec from a window plan's aggregates and windows (``windows.Aggregate``,
    ``windows.TimeWindow``), the stored columns' DuckDB types (inputs, then flags) and how
    pushed rows are projected (``push``)."""
    from ..schema import feature_type_of

    columns = []
    for name, duckdb_type in column_types.items():
        kind, vocabulary = feature_type_of(duckdb_type)
        if kind == "categorical":
            kind, vocabulary = "string", None  # stored as text: min/max compare as text
        columns.append(Feature(name=name, type=kind, duckdb_type=duckdb_type, vocabulary=vocabulary))
    return WindowSpec(
        columns=tuple(columns),
        aggregates=tuple(
            WindowAggregate(a.function, a.input, a.flag, a.distinct, a.alias) for a in aggregates
        ),
        windows=tuple((w.text, w.micros) for w in windows),
        push=push,
    )
