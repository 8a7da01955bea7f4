"""SQLite's aggregation of windowed reads against the Python evaluation of the same events.

The oracle is ``window_values.WindowEvaluator`` over the events SQLite holds (the path the
replica and Redis use): for random events with nulls, FILTER, DISTINCT, texts, times, integer
sums past 64 bits, pushed and late events, one and several entities, and reads exactly at an
event, exactly one window after it and at many offsets after ``end``, the tiled statement, the
statement over raw events and Python give the same values of the same types. Events fall on
hour and day edges (where tiles meet) and a microsecond off them. Float sums (and averages)
add the same numbers grouped by band and tile, so they agree to rounding. The tiles themselves
equal the partial aggregates of the events both tables hold.
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
from jupyter_features.online.sqlite_push import has_pushed
from jupyter_features.online.sqlite_tiles import (
    OVERFLOW,
    pushed_tiles_of,
    served_tiles,
    tile_columns,
    tile_widths,
)
from jupyter_features.online.sqlite_windows import WindowReadPlan, read_windows
from jupyter_features.sqltext import EVENT_TS, quote
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
            "ts": [
                BASE
                + timedelta(minutes=30 * draw(st.integers(0, 8 * 48)))
                + timedelta(microseconds=draw(st.sampled_from([0, 0, 0, 1, -1, 7_000_000])))
                for _ in range(n)
            ],
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
    if data.draw(st.booleans()):  # a run since: its switch replays the pushes into the new version
        end += timedelta(
            hours=data.draw(st.sampled_from([0, 1, 7])), microseconds=data.draw(st.sampled_from([0, 1]))
        )
        ws.materialize(["w"], end=end, progress=False)
    store = SQLiteStore(url)
    table = store.current("w")
    assert table is not None and table.window is not None
    con = store._con()
    tiles = served_tiles(con, table)
    assert tiles is not None
    _assert_tiles_hold_the_events(con, table, tiles)
    offsets = data.draw(st.lists(st.integers(0, 4 * 86_400_000_000), max_size=6))
    times = {to_micros(end + timedelta(hours=h)) for h in (0, 5, 30)} | {
        to_micros(end) + us for us in offsets
    }
    lengths = [us for _, us in table.window.windows]
    for rows in [frame, *late_and_new]:  # at an event, one window after it, a microsecond before
        for ts in rows["ts"].head(4):
            t = to_micros(ts.to_pydatetime())
            times |= {t, *(t + us for us in lengths), *(t + us - 1 for us in lengths)}
    features = data.draw(st.none() | st.lists(st.sampled_from(table.feature_names), min_size=1, unique=True))
    for entities in ([{"k": 0}], [{"k": 4}], [{"k": 3}, {"k": 9}, {"k": 1}, {"k": 3}, {"k": 2}]):
        plan = WindowReadPlan(table, features, len(entities), "__jf_online", tiles)
        assert plan.aggregate is not None
        assert plan.aggregate.tiled or len(plan.aggregate.pieces) <= 1, plan.aggregate.sql
        raw = WindowReadPlan(table, features, len(entities), "__jf_online")
        served = WindowReadPlan(table, features, len(entities), "__jf_online", tiles, has_pushed(con, table))
        python = WindowReadPlan(table, features, len(entities), "__jf_online")
        python.aggregate = None
        for at in sorted(times):
            want = read_windows(con, python, entities, at)
            assert want is not None
            for reader in (plan, raw, served):
                got = read_windows(con, reader, entities, at)
                assert got is not None
                for name, have, expected in zip(plan.evaluator.features, got, want, strict=True):
                    assert all(map(_same, have, expected)), (name.name, at, have, expected)
    store.close()
    ws.close()


def _assert_tiles_hold_the_events(con: Any, table: Any, tiles: str) -> None:
    """Every tile equals the partial aggregates of the events in it: the events' tiles of the
    materialized events, the pushed tiles of the pushed events."""
    keys = ", ".join(quote(k) for k in table.entity)
    cols = ", ".join(quote(c.name) for c in table.window.columns)
    widths = tile_widths(table.window)
    for name, source, kept in (
        (tiles, table.view, widths),
        (pushed_tiles_of(tiles), table.view + "__pushed", widths[:1]),
    ):
        _assert_tiles_of(con, table, name, f"SELECT {keys}, {EVENT_TS}, {cols} FROM {quote(source)}", kept)


def _assert_tiles_of(con: Any, table: Any, tiles: str, events: str, widths: list[int]) -> None:
    spec = table.window
    keys = ", ".join(quote(k) for k in table.entity)
    columns = tile_columns(spec)
    stored = {
        r[:3]: r[3:]
        for r in con.execute(
            f"SELECT {keys}, __jf_g, __jf_t, {', '.join(quote(c.name) for c in columns)} FROM {quote(tiles)}"
        )
    }
    position = {c.name: 2 + i for i, c in enumerate(spec.columns)}
    rows = con.execute(events).fetchall()
    expected: dict[Any, list[Any]] = {}
    for width in widths:
        for r in rows:
            tile = (r[0], width, (r[1] - 1) // width * width)
            expected.setdefault(tile, []).append(r)
    assert set(stored) == set(expected)
    for tile, events_in in expected.items():
        for column, value in zip(columns, stored[tile], strict=True):
            used = [e for e in events_in if column.flag is None or e[position[column.flag]]]
            xs = [e[position[column.input]] for e in used] if column.input else [1] * len(used)
            xs = [x for x in xs if x is not None]
            if column.function == "count":
                assert value == len(xs), (tile, column.name)
            elif column.function == "sum" and column.int_sum:  # exact, or +inf past 64 bits
                assert value == (sum(xs) if -(2**63) <= sum(xs) < 2**63 else OVERFLOW) or not xs, (
                    tile,
                    column.name,
                )
            elif column.function == "sum":
                assert (value is None) == (not xs), (tile, column.name)
                assert not xs or math.isclose(value, sum(xs), rel_tol=1e-12, abs_tol=1e-6), (
                    tile,
                    column.name,
                )
            elif column.function in ("min", "max") and xs:
                assert value == (min(xs) if column.function == "min" else max(xs)), (tile, column.name)


def _two_events(tmp_path: Path) -> tuple[jf.Workspace, str]:
    """A workspace with windowed view ``w``: entity 1's events at BASE and an hour later."""
    url = f"sqlite:///{tmp_path}/online.db"
    ws = jf.Workspace(tmp_path / "ws", online_store=url)
    frame = pd.DataFrame({"k": [1, 1], "ts": [BASE, BASE + timedelta(hours=1)], "x": [1.0, 2.0]})
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view(
        "w", "SELECT k, sum(x) AS s FROM ev GROUP BY k", entity="k", timestamp="ts", windows=WINDOWS
    )
    return ws, url


def test_a_plan_for_a_version_no_longer_served_is_refused(tmp_path: Path) -> None:
    """The statement reads the version served with the values: the store plans again."""
    ws, url = _two_events(tmp_path)
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


def test_a_plan_made_before_a_push_is_made_again_with_it(tmp_path: Path) -> None:
    """A plan made while the version held no pushed events reads only its events: a push since
    is seen in the same statement, and the store plans again."""
    ws, url = _two_events(tmp_path)
    end = BASE + timedelta(hours=2)
    ws.materialize(["w"], end=end, progress=False)
    store = SQLiteStore(url)
    table = store.current("w")
    assert table is not None
    con = store._con()
    plan = WindowReadPlan(table, None, 1, "__jf_online", served_tiles(con, table), pushed=False)
    assert plan.aggregate is not None and plan.aggregate.sql.count("__pushed") == 1  # only to check
    at = to_micros(end)
    assert read_windows(con, plan, [{"k": 1}], at) == [[None], [3.0], [3.0]]
    assert store.read("w", None, [{"k": 1}], at)[1] == [[None], [3.0], [3.0]]
    ws.push("w", [{"k": 1, "ts": end, "x": 4.0}], to="online")
    assert read_windows(con, plan, [{"k": 1}], at) is None
    assert store.read("w", None, [{"k": 1}], at)[1] == [[4.0], [7.0], [7.0]]
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


def _sum_and_count(
    tmp_path: Path, keys: list[int], times: list[datetime], values: list[int]
) -> tuple[jf.Workspace, str, datetime]:
    """Windowed view ``w`` (sum and count of integer ``i``) over these events, materialized as of
    BASE + 2 days into a SQLite store: the workspace, the store's URL and the run's end."""
    url = f"sqlite:///{tmp_path}/online.db"
    ws = jf.Workspace(tmp_path / "ws", online_store=url)
    frame = pd.DataFrame({"k": keys, "ts": times, "i": pd.array(values, dtype="Int64")})
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", "SELECT k, sum(i) AS s, count(*) AS n FROM ev GROUP BY k", entity="k",
                    timestamp="ts", windows=WINDOWS)  # fmt: skip
    end = BASE + timedelta(days=2)
    ws.materialize(["w"], end=end, progress=False)
    return ws, url, end


def test_integer_sums_past_64_bits_in_tiles_are_exact(tmp_path: Path) -> None:
    """A tile whose sum passes 64 bits (from the run or from a push) sends the read to Python."""
    times = [BASE + timedelta(hours=h, minutes=m) for h in (1, 30) for m in (10, 20)]
    ws, url, end = _sum_and_count(tmp_path, [1, 1, 2, 2], times, [2**62, 2**62, 1, 2])
    store = SQLiteStore(url)
    table = store.current("w")
    assert table is not None and served_tiles(store._con(), table) is not None
    overflow = store._con().execute('SELECT k, max(typeof("sum(__jf_x0)")) FROM "w__v1__tiles" GROUP BY k')
    assert dict(overflow.fetchall()) == {1: "real", 2: "integer"}
    ws.push(
        "w", pd.DataFrame({"k": [2, 2], "ts": [times[2]] * 2, "i": pd.array([2**62, 2**62], dtype="Int64")})
    )
    at = end + timedelta(hours=1)
    got = ws.online_features(["w:s_3d", "w:n_3d"], [{"k": 1}, {"k": 2}], at=at).to_dict()
    assert got == {"w__s_3d": [2**63, 2**63 + 3], "w__n_3d": [2, 4]}
    store.close()
    ws.close()


def test_pushes_add_to_the_pushed_tiles_only(tmp_path: Path) -> None:
    """A push leaves the events' tiles as the run built them and adds to the small pushed tiles;
    a version without pushed tiles (written before they existed) is read from its events."""
    times = [BASE + timedelta(hours=h, minutes=5) for h in (1, 2, 30)]
    ws, url, end = _sum_and_count(tmp_path, [1, 2, 1], times, [1, 2, 3])
    store = SQLiteStore(url)
    con = store._con()
    before = con.execute('SELECT * FROM "w__v1__tiles" ORDER BY 1, 2, 3').fetchall()
    pushed = pd.DataFrame(
        {
            "k": [1, 2, 2, 3],
            "ts": [times[0], times[1], end, end],
            "i": pd.array([10, 20, None, 5], dtype="Int64"),
        }
    )
    ws.push("w", pushed, to="online")
    ws.push("w", pushed.head(1), to="online")
    assert con.execute('SELECT * FROM "w__v1__tiles" ORDER BY 1, 2, 3').fetchall() == before
    hour = 3_600_000_000
    got = con.execute('SELECT k, "count(*)", "sum(__jf_x0)" FROM "w__v1__pushed_tiles" WHERE __jf_g = ? '
                      "ORDER BY k, __jf_t", (hour,)).fetchall()  # fmt: skip
    assert con.execute(
        'SELECT count(*) FROM "w__v1__pushed_tiles" WHERE __jf_g <> ?', (hour,)
    ).fetchone() == (0,)
    assert got == [(1, 2, 20), (2, 1, 20), (2, 1, None), (3, 1, 5)]
    table = store.current("w")
    assert table is not None
    _assert_tiles_hold_the_events(con, table, "w__v1__tiles")
    at = end + timedelta(hours=1)
    want = {"w__s_3d": [24, 22, 5], "w__n_3d": [4, 3, 1]}
    assert ws.online_features(["w:s_3d", "w:n_3d"], [{"k": 1}, {"k": 2}, {"k": 3}], at=at).to_dict() == want
    con.execute('DROP TABLE "w__v1__pushed_tiles"')  # as a version written before pushed tiles
    assert served_tiles(con, table) is None
    ws.close()
    ws = jf.Workspace(tmp_path / "ws", online_store=url)  # plans made afresh
    frame = pd.DataFrame({"k": [1, 2, 1], "ts": times, "i": pd.array([1, 2, 3], dtype="Int64")})
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", "SELECT k, sum(i) AS s, count(*) AS n FROM ev GROUP BY k", entity="k",
                    timestamp="ts", windows=WINDOWS)  # fmt: skip
    ws.push("w", pushed.tail(1), to="online")  # no pushed tiles to add to: the rows alone
    want = {"w__s_3d": [24, 22, 10], "w__n_3d": [4, 3, 2]}
    assert ws.online_features(["w:s_3d", "w:n_3d"], [{"k": 1}, {"k": 2}, {"k": 3}], at=at).to_dict() == want
    store.close()
    ws.close()
