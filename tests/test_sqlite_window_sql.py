"""SQLite's aggregation of windowed reads against the Python evaluation of the same events.

The oracle is ``window_values.WindowEvaluator`` over the events SQLite holds (the path the
replica and Redis use): for random events with nulls, FILTER, DISTINCT, texts, times, integer
sums past 64 bits, pushed and late events, one and several entities, and reads exactly at an
event and exactly one window after it, both give the same values of the same types. Float
sums (and averages) add the same numbers grouped by band, so they agree to rounding.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jupyter_features as jf
from jupyter_features.online.sqlite import SQLiteStore
from jupyter_features.online.sqlite_windows import WindowReadPlan, read_windows
from jupyter_features.times import to_micros

BASE = datetime(2024, 1, 1)
WINDOWS = ["1h", "1d", "3d"]
SQL = """SELECT k, count(*) AS n, count(x) AS nx, sum(i) AS si, avg(i) AS ai, avg(x) AS ax, sum(x) AS sx,
                min(x) AS mn, max(i) AS mx, min(c) AS mc, max(ts) AS last, count(DISTINCT c) AS dc,
                count(DISTINCT i) FILTER (WHERE x > 0) AS dpos, stddev(x) AS sd, var_samp(i) AS vi,
                count(*) FILTER (WHERE i > 0) AS pos, sum(x) FILTER (WHERE c = 'a') AS sa,
                max(c) FILTER (WHERE i < 0) AS mneg, min(b) AS mb
         FROM ev GROUP BY k"""
BIG = 2**62


@st.composite
def events(draw: Any, n_max: int = 25, big: bool = False) -> pd.DataFrame:
    """Events with equal times, nulls, keys 0..3; some integers near 2**62 when ``big``."""
    n = draw(st.integers(0, n_max))
    ints = st.integers(-5, 5) | (st.sampled_from([BIG, -BIG, BIG - 1]) if big else st.nothing())
    frame = pd.DataFrame(
        {
            "k": [draw(st.integers(0, 3)) for _ in range(n)],
            "ts": [BASE + timedelta(minutes=30 * draw(st.integers(0, 8 * 48))) for _ in range(n)],
            "x": [draw(st.none() | st.floats(-1e6, 1e6, allow_nan=False)) for _ in range(n)],
            "i": [draw(st.none() | ints) for _ in range(n)],
            "c": [draw(st.sampled_from(["a", "b", "é", "", None])) for _ in range(n)],
            "b": [draw(st.sampled_from([True, False, None])) for _ in range(n)],
        }
    )
    frame["k"] = frame["k"].astype("int64")
    frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[us]")
    frame["x"] = frame["x"].astype("float64")
    frame["i"] = frame["i"].astype("Int64")
    frame["c"] = frame["c"].astype("string")  # VARCHAR even when empty or all null
    frame["b"] = frame["b"].astype("boolean")
    return frame


def _same(sql_value: Any, python_value: Any) -> bool:
    if type(sql_value) is not type(python_value):
        return False
    if isinstance(python_value, float):
        return math.isclose(sql_value, python_value, rel_tol=1e-12, abs_tol=1e-6)
    return bool(sql_value == python_value)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), big=st.booleans(), pushes=st.integers(0, 2))
def test_sqlite_aggregation_equals_python_evaluation(
    tmp_path: Path, data: st.DataObject, big: bool, pushes: int
) -> None:
    frame = data.draw(events(big=big))
    url = f"sqlite:///{tmp_path}/online{time.monotonic_ns()}.db"
    ws = jf.Workspace(tmp_path / f"ws{time.monotonic_ns()}", online_store=url)
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", SQL, entity="k", timestamp="ts", windows=WINDOWS)
    end = BASE + timedelta(days=4)
    ws.materialize(["w"], end=end, progress=False)
    late_and_new = [data.draw(events(n_max=6, big=big)) for _ in range(pushes)]
    for rows in late_and_new:
        ws.push("w", rows, to="online")
    store = SQLiteStore(url)
    table = store.current("w")
    assert table is not None and table.window is not None
    con = store._con()
    times = {to_micros(end + timedelta(hours=h)) for h in (0, 5, 30)}
    lengths = [us for _, us in table.window.windows]
    for rows in [frame, *late_and_new]:  # at an event, one window after it, a microsecond before
        for ts in rows["ts"].head(4):
            t = to_micros(ts.to_pydatetime())
            times |= {t, *(t + us for us in lengths), *(t + us - 1 for us in lengths)}
    features = data.draw(st.none() | st.lists(st.sampled_from(table.feature_names), min_size=1, unique=True))
    for entities in ([{"k": 0}], [{"k": 4}], [{"k": 3}, {"k": 9}, {"k": 1}, {"k": 3}, {"k": 2}]):
        plan = WindowReadPlan(table, features, len(entities), "__jf_online")
        assert plan.aggregate is not None
        python = WindowReadPlan(table, features, len(entities), "__jf_online")
        python.aggregate = None
        for at in sorted(times):
            got = read_windows(con, plan, entities, at)
            want = read_windows(con, python, entities, at)
            assert got is not None and want is not None
            for name, have, expected in zip(plan.evaluator.features, got, want, strict=True):
                assert all(map(_same, have, expected)), (name.name, at, have, expected)
    store.close()
    ws.close()


def test_a_plan_for_a_version_no_longer_served_is_refused(tmp_path: Path) -> None:
    """The statement reads the version served with the values: the store plans again."""
    url = f"sqlite:///{tmp_path}/online.db"
    ws = jf.Workspace(tmp_path / "ws", online_store=url)
    frame = pd.DataFrame({"k": [1, 1], "ts": [BASE, BASE + timedelta(hours=1)], "x": [1.0, 2.0]})
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view(
        "w", "SELECT k, sum(x) AS s FROM ev GROUP BY k", entity="k", timestamp="ts", windows=WINDOWS
    )
    ws.materialize(["w"], end=BASE + timedelta(hours=2), progress=False)
    store = SQLiteStore(url)
    old = store.current("w")
    assert old is not None
    plan = WindowReadPlan(old, None, 1, "__jf_online")
    at = to_micros(BASE + timedelta(hours=2))
    assert read_windows(store._con(), plan, [{"k": 1}], at) == [[None], [3.0], [3.0]]
    ws.materialize(["w"], end=BASE + timedelta(hours=3), progress=False)
    assert read_windows(store._con(), plan, [{"k": 1}], at) is None
    assert store.read("w", None, [{"k": 1}], at)[1] == [[None], [3.0], [3.0]]
    store.close()
    ws.close()


def test_integer_sums_past_64_bits_are_exact(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/online.db"
    ws = jf.Workspace(tmp_path / "ws", online_store=url)
    frame = pd.DataFrame({"k": [1, 1, 1], "ts": [BASE] * 3, "i": [2**62, 2**62, 2**62]})
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", "SELECT k, sum(i) AS s, avg(i) AS a FROM ev GROUP BY k", entity="k",
                    timestamp="ts", windows=["1h"])  # fmt: skip
    ws.materialize(["w"], end=BASE, progress=False)
    got = ws.online_features(["w:*"], [{"k": 1}], at=BASE).to_dict()
    assert got == {"w__s_1h": [3 * 2**62], "w__a_1h": [float(2**62)]}
    ws.close()
