"""A slow, obviously-correct window aggregation, and hypothesis strategies for it.

For every label row and window: filter the view's rows to the label's keys and event times in
(t - w, t], then aggregate them in Python with exact arithmetic (ints, math.fsum, fractions,
statistics.variance). Shared by the DuckDB and Spark window tests.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st
from oracle import is_null

BASE = datetime(2024, 1, 1)
WINDOWS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "1d": timedelta(days=1),
           "36h": timedelta(hours=36), "3d": timedelta(days=3)}  # fmt: skip


@dataclass(frozen=True)
class Arg:
    """An aggregate argument: its SQL over the source's columns and the same in Python."""

    sql: str
    fn: Callable[[dict[str, Any]], Any]


def _col(name: str) -> Arg:
    return Arg(name, lambda r: None if is_null(r[name]) else r[name])


ARGS = {
    "v_int": _col("v_int"),
    "v_float": _col("v_float"),
    "v_time": _col("v_time"),
    "cat": _col("cat"),
    "v_float * 2": Arg("v_float * 2", lambda r: None if is_null(r["v_float"]) else r["v_float"] * 2),
}

#: FILTER conditions and their Python truth (SQL: a NULL condition excludes the row).
FILTERS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "v_int > 0": lambda r: not is_null(r["v_int"]) and r["v_int"] > 0,
    "cat = 'a'": lambda r: not is_null(r["cat"]) and r["cat"] == "a",
    "v_float < 0 OR cat IS NULL": lambda r: (
        (not is_null(r["v_float"]) and r["v_float"] < 0) or is_null(r["cat"])
    ),
}

#: (function, argument or None, distinct) the strategies combine; each may get a filter.
MENU = [
    ("count", None, False), ("count", "v_float", False), ("count", "cat", True), ("count", "v_int", True),
    ("sum", "v_int", False), ("sum", "v_float", False), ("sum", "v_float * 2", False),
    ("avg", "v_int", False), ("avg", "v_float", False),
    ("min", "v_int", False), ("max", "v_int", False), ("min", "v_float", False), ("max", "v_float", False),
    ("min", "v_time", False), ("max", "v_time", False), ("min", "cat", False), ("max", "cat", False),
    ("stddev_samp", "v_float", False), ("var_samp", "v_int", False), ("var_samp", "v_float", False),
    ("stddev", "v_int", False), ("variance", "v_float", False),
]  # fmt: skip


@dataclass(frozen=True)
class Agg:
    function: str
    arg: str | None
    distinct: bool
    filter: str | None
    alias: str

    @property
    def sql(self) -> str:
        inner = "*" if self.arg is None else ("DISTINCT " if self.distinct else "") + self.arg
        where = f" FILTER (WHERE {self.filter})" if self.filter else ""
        return f"{self.function}({inner}){where} AS {self.alias}"


@dataclass
class WindowCase:
    name: str
    frame: pd.DataFrame  # keys..., ts, v_int, v_float, v_time, cat
    entity: list[str]
    aggregates: list[Agg]
    windows: list[str]

    @property
    def source(self) -> str:
        return f"src_{self.name}"

    @property
    def sql(self) -> str:
        cols = ", ".join(self.entity + [a.sql for a in self.aggregates])
        return f"SELECT {cols} FROM {self.source} GROUP BY {', '.join(self.entity)}"

    @property
    def feature_names(self) -> list[str]:
        return [f"{a.alias}_{w}" for w in self.windows for a in self.aggregates]


def _aggregate(agg: Agg, rows: list[dict[str, Any]]) -> tuple[Any, float]:
    """The value and the scale its float tolerance is relative to."""
    if agg.filter:
        rows = [r for r in rows if FILTERS[agg.filter](r)]
    func = {"stddev": "stddev_samp", "variance": "var_samp"}.get(agg.function, agg.function)
    if agg.arg is None:
        return len(rows), 0.0
    values = [v for v in (ARGS[agg.arg].fn(r) for r in rows) if v is not None]
    if func == "count":
        return (len(set(values)) if agg.distinct else len(values)), 0.0
    if not values:
        return None, 0.0
    if func in ("min", "max"):
        return (min if func == "min" else max)(values), 0.0
    scale = math.fsum(abs(float(v)) for v in values)
    if func == "sum":
        exact = sum(values) if all(isinstance(v, int) for v in values) else math.fsum(values)
        return exact, scale
    if func == "avg":
        return float(sum(Fraction(v) for v in values) / len(values)), scale / len(values)
    if len(values) < 2:
        return None, 0.0
    variance = statistics.variance([Fraction(v) for v in values])
    squares = max(float(v) ** 2 for v in values)
    if func == "var_samp":
        return float(variance), 1e-16 * squares
    return math.sqrt(variance), 1e-8 * math.sqrt(squares)


def oracle_windows(
    labels: pd.DataFrame, timestamp: str, case: WindowCase
) -> dict[str, list[tuple[Any, float]]]:
    """Feature name → per label row (value, scale), brute force."""
    rows = [{k: plain(v) for k, v in r.items()} for r in case.frame.to_dict("records")]
    out: dict[str, list[tuple[Any, float]]] = {n: [] for n in case.feature_names}
    for label in labels.to_dict("records"):
        label = {k: plain(v) for k, v in label.items()}
        t = label[timestamp]
        keys = [label[k] for k in case.entity]
        unknown = is_null(t) or any(is_null(k) for k in keys)
        for w in case.windows:
            start = None if unknown else t - WINDOWS[w]
            inside = (
                []
                if unknown
                else [
                    r for r in rows
                    if not is_null(r["ts"]) and start < r["ts"] <= t
                    and all(not is_null(r[k]) and r[k] == label[k] for k in case.entity)
                ]
            )  # fmt: skip
            for a in case.aggregates:
                out[f"{a.alias}_{w}"].append(_aggregate(a, inside))
    return out


def plain(value: Any) -> Any:
    """A result cell as a plain Python value (None for nulls)."""
    if is_null(value):
        return None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def assert_matches(
    result: pd.DataFrame, expected: dict[str, list[tuple[Any, float]]], prefix: str = ""
) -> None:
    """Counts, ints, times and strings exactly; floats within 1e-9 relative (of the value or,
    where a sum cancels, of the terms' magnitude)."""
    for name, cells in expected.items():
        column = result[prefix + name]
        assert len(column) == len(cells), name
        for i, (got, (want, scale)) in enumerate(zip(column, cells, strict=True)):
            got, want = plain(got), plain(want)
            where = f"{name} row {i}: got {got!r}, expected {want!r}"
            if want is None:
                assert got is None, where
            elif isinstance(want, float) or isinstance(got, float):
                assert got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12 * scale), where
            else:
                assert got == want and type(got) is type(want), where


# -- strategies ------------------------------------------------------------------------------


@st.composite
def window_cases(draw: Any, name: str, entity: list[str], *, large: bool | None = None) -> WindowCase:
    """A view's rows with many equal times (a few distinct hours), nulls everywhere, and a random
    choice of aggregates, filters and windows. ``large`` puts the floats around a large mean with
    a small spread (drawn when None)."""
    n = draw(st.integers(0, 30))
    hours = draw(st.lists(st.integers(0, 120), min_size=1, max_size=8))
    if large is None:
        large = draw(st.booleans())
    mean = draw(st.sampled_from([1e6, 123456.789, -5e7])) if large else 0.0
    data: dict[str, list[Any]] = {
        k: [
            draw(st.one_of(st.integers(0, 3), st.none()) if i % 7 == 3 else st.integers(0, 3))
            for i in range(n)
        ]
        for k in entity
    }
    data["ts"] = [
        None if draw(st.integers(0, 12)) == 0 else BASE + timedelta(hours=draw(st.sampled_from(hours)))
        for _ in range(n)
    ]
    data["v_int"] = [
        draw(st.one_of(st.none(), st.integers(-5, 5), st.integers(-(10**12), 10**12))) for _ in range(n)
    ]
    data["v_float"] = [
        draw(st.one_of(st.none(), st.floats(-10, 10, allow_nan=False).map(lambda x, m=mean: m + round(x, 3))))
        for _ in range(n)
    ]
    data["v_time"] = [
        None if draw(st.booleans()) else BASE + timedelta(minutes=draw(st.integers(0, 10_000)))
        for _ in range(n)
    ]
    data["cat"] = [draw(st.sampled_from([None, "a", "b", "c"])) for _ in range(n)]
    frame = pd.DataFrame(data)
    for k in entity:
        frame[k] = frame[k].astype("Int64")
    frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[us]")
    frame["v_int"] = frame["v_int"].astype("Int64")
    frame["v_float"] = frame["v_float"].astype("float64")
    frame["v_time"] = pd.to_datetime(frame["v_time"]).astype("datetime64[us]")
    frame["cat"] = frame["cat"].astype(object)
    picks = draw(st.lists(st.sampled_from(MENU), min_size=1, max_size=6))
    aggregates = [
        Agg(f, arg, distinct, draw(st.sampled_from([None, None, *FILTERS])), f"a{i}")
        for i, (f, arg, distinct) in enumerate(picks)
    ]
    windows = draw(st.lists(st.sampled_from(list(WINDOWS)), min_size=1, max_size=3, unique=True))
    return WindowCase(name=name, frame=frame, entity=entity, aggregates=aggregates, windows=windows)


@st.composite
def window_labels(draw: Any, keys: list[str], cases: list[WindowCase]) -> pd.DataFrame:
    """Label rows at event times, exactly a window after one, between, and null; unsorted,
    with duplicates and an index that is neither sorted nor unique."""
    times = [t for c in cases for t in c.frame["ts"].dropna()]
    spans = [WINDOWS[w] for c in cases for w in c.windows]

    def label_time() -> Any:
        choice = draw(st.integers(0, 9))
        if choice == 0:
            return None
        if times and choice <= 3:
            return draw(st.sampled_from(times))
        if times and spans and choice <= 6:
            return draw(st.sampled_from(times)) + draw(st.sampled_from(spans))
        return BASE + timedelta(minutes=draw(st.integers(-60, 130 * 60)))

    n = draw(st.integers(0, 20))
    data: dict[str, list[Any]] = {
        k: [
            draw(st.one_of(st.integers(0, 4), st.none()) if i % 9 == 4 else st.integers(0, 4))
            for i in range(n)
        ]
        for k in keys
    }
    data["label_ts"] = [label_time() for _ in range(n)]
    data["y"] = list(range(n))
    frame = pd.DataFrame(data)
    if n and draw(st.booleans()):  # a duplicated label row
        frame = pd.concat([frame, frame.iloc[[draw(st.integers(0, n - 1))]]], ignore_index=True)
    for k in keys:
        frame[k] = frame[k].astype("Int64")
    frame["label_ts"] = pd.to_datetime(frame["label_ts"]).astype("datetime64[us]")
    frame.index = [draw(st.integers(0, 5)) for _ in range(len(frame))]
    return frame
