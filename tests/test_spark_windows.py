"""Windowed views materialized by Spark: the executors write the same version as the DuckDB engine
(every entity's events in (end - longest window, end] and the logged pushes after end), so online
reads on SQLite, Redis and Redis Cluster give equal values at any T >= end. The DuckDB run is the
oracle (itself checked against training frames in tests/test_nearline_windows.py). Marked ``spark``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_nearline_windows import BASE, LATER, SQL, WINDOWS, _fresh, _same, events

import jupyter_features as jf
from jupyter_features.online import OnlineStore

pytestmark = pytest.mark.spark

#: Where the executors writing the store run: in local mode, and on a standalone cluster of
#: separate processes (tests/spark_cluster.py; run after every other test).
EXECUTORS = ["local", pytest.param("cluster", marks=pytest.mark.spark_cluster)]


@pytest.fixture(params=EXECUTORS)
def executors(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("spark_session" if request.param == "local" else "spark_cluster_session")


def _run(
    root: Path, engine: Any, store_url: str, frame: pd.DataFrame, pushes: list[pd.DataFrame], end: datetime
) -> jf.Workspace:
    """A workspace on ``engine`` holding the view over ``frame``, the ``pushes`` logged offline
    (every run reads them), materialized as of ``end`` into a store of its own."""
    ws = jf.Workspace(root, engine=engine, online_store=_fresh(store_url))
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", SQL, entity="k", timestamp="ts", windows=WINDOWS)
    for rows in pushes:
        if len(rows):
            ws.push("w", rows, to="offline")
    result = ws.materialize(["w"], end=end, progress=False)["w"]
    assert result.mode == "full" and result.end == end
    return ws


def _stored(store: OnlineStore) -> tuple[dict[str, Any], dict[Any, list[str]]]:
    """The served version's layout (less when it was written) and each entity's stored events,
    in a canonical order."""
    snapshot = store.snapshot("w")  # type: ignore[attr-defined]
    layout = {
        k: v for k, v in json.loads(snapshot.table.to_json()).items() if k not in ("written_at", "version")
    }
    return layout, {key: sorted(map(repr, rows)) for key, rows in snapshot.rows.items()}


def _assert_same_online(duck: jf.Workspace, spark: jf.Workspace, times: list[datetime]) -> None:
    (layout, events), (want_layout, want_events) = _stored(spark.online_store()), _stored(duck.online_store())
    assert layout == want_layout
    differ = {
        k: (events.get(k), want_events.get(k))
        for k in {*events, *want_events}
        if events.get(k) != want_events.get(k)
    }
    assert not differ, differ
    grid = [{"k": k} for k in range(6)]  # keys 4 and 5 only ever pushed, or never seen
    for at in times:
        want = duck.online_features(["w:*"], grid, at=at).to_dict()
        have = spark.online_features(["w:*"], grid, at=at).to_dict()
        assert list(have) == list(want)
        for column, values in want.items():
            assert all(map(_same, have[column], values)), (column, at, have[column], values)


def _times(end: datetime, frames: list[pd.DataFrame]) -> list[datetime]:
    """Minutes to days after ``end``, and exactly where an event leaves a window (and 1 µs before)."""
    times = [end + later for later in LATER]
    for rows in frames:
        for ts in rows["ts"].head(3):
            for w in (timedelta(hours=1), timedelta(days=1), timedelta(days=3)):
                edge = ts.to_pydatetime() + w
                if edge >= end:
                    times += [edge, edge - timedelta(microseconds=1)]
    return times


def test_spark_run_equals_duckdb_run_online(executors: Any, tmp_path: Path, store_url: str) -> None:
    on_cluster = not str(executors.sparkContext.master).startswith("local")

    @settings(
        max_examples=1 if on_cluster else 3, deadline=None, phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )  # fmt: skip
    @given(data=st.data(), end_hour=st.integers(0, 8 * 24))
    def check(data: st.DataObject, end_hour: int) -> None:
        frame = data.draw(events(n_max=25))
        # late rows (before end, some older than every window) and rows after end; keys up to 5
        pushes = [data.draw(events(n_max=5, hours=12 * 24)) for _ in range(2)]
        pushes[1]["k"] += 2
        end = BASE + timedelta(hours=end_hour)
        root = tmp_path / f"case{time.monotonic_ns()}"
        duck = _run(root / "duckdb", "duckdb", store_url, frame, pushes, end)
        spark = _run(root / "spark", executors, store_url, frame, pushes, end)
        try:
            _assert_same_online(duck, spark, _times(end, [frame, *pushes]))
        finally:
            duck.close()
            spark.close()

    check()


def test_edges_and_pushes_by_hand(spark_session: Any, tmp_path: Path, store_url: str) -> None:
    """Events exactly at end and exactly a longest window before it, a pushed row at end and
    after it, an entity seen only in pushes; ``check_online`` on Spark finds the store right."""
    end = datetime(2024, 1, 10)
    frame = pd.DataFrame(
        {
            "k": [1, 1, 1, 2, 3],
            "ts": [end, end - timedelta(days=3), end - timedelta(days=3) + timedelta(microseconds=1),
                   end - timedelta(hours=1), end + timedelta(minutes=1)],
            "x": [1.5, 2.5, None, 4.0, 8.0],
            "i": pd.array([1, 2, 3, None, 5], dtype="Int64"),
            "c": pd.array(["a", "b", "a", None, "c"], dtype="string"),
        }
    )  # fmt: skip
    frame["ts"] = frame["ts"].astype("datetime64[us]")
    pushed = pd.DataFrame(
        {
            "k": [1, 4, 4],
            "ts": [end, end + timedelta(hours=2), end - timedelta(days=4)],
            "x": [0.5, 1.0, 2.0],
            "i": pd.array([7, 8, 9], dtype="Int64"),
            "c": pd.array(["z", "a", "a"], dtype="string"),
        }
    )
    pushed["ts"] = pushed["ts"].astype("datetime64[us]")
    duck = _run(tmp_path / "duckdb", "duckdb", store_url, frame, [pushed], end)
    spark = _run(tmp_path / "spark", spark_session, store_url, frame, [pushed], end)
    try:
        _assert_same_online(duck, spark, _times(end, [frame, pushed]))
        got = spark.online_features(["w:n_3d", "w:si_3d", "w:dc_1h"], [{"k": 1}, {"k": 3}, {"k": 4}], at=end)
        # k 1: its events at end and 1 µs after end - 3d, and the pushed one at end (not the one at
        # exactly end - 3d); k 3's event is after end (not read); k 4's pushed event after end is
        # not in a window at end, its other is older than every window
        assert got.to_dict() == {"w__n_3d": [3, 0, 0], "w__si_3d": [11, None, None], "w__dc_1h": [2, 0, 0]}
        later = spark.online_features(["w:n_1d"], [{"k": 4}], at=end + timedelta(hours=3)).to_dict()
        assert later == {"w__n_1d": [1]}
        # Spark recomputes the windows for check_online: right at end, and once k 3's event after end
        # (in the source, not in the run) has left every window; before, it differs on either engine
        times = [(None, True), (end + timedelta(days=2), False), (end + timedelta(days=3, minutes=2), True)]
        for at, ok in times:
            reports = [ws.check_online(["w"], at=at, progress=False) for ws in (duck, spark)]
            assert [r.ok for r in reports] == [ok, ok], reports
    finally:
        duck.close()
        spark.close()


def test_spark_reads_the_push_log_as_it_is_at_each_use(spark_session: Any, tmp_path: Path) -> None:
    """The push log is read on the driver whenever a query names it: a push logged after the
    first one is seen by the next training frame (plain and windowed views)."""
    ws = jf.Workspace(tmp_path, engine=spark_session)
    frame = pd.DataFrame({"k": [1], "ts": [BASE], "x": [1.0], "i": pd.array([1], dtype="Int64"),
                          "c": pd.array(["a"], dtype="string")})  # fmt: skip
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", SQL, entity="k", timestamp="ts", windows=WINDOWS)
    ws.feature_view("p", "SELECT k, ts, x FROM ev", entity="k", timestamp="ts")
    labels = pd.DataFrame({"k": [1], "t": [BASE + timedelta(hours=5)]})
    for hour, x in ((1, 2.0), (2, 3.0)):
        row = {"k": 1, "ts": BASE + timedelta(hours=hour), "x": x}
        ws.push("p", [row], to="offline")
        ws.push("w", [{**row, "i": hour, "c": "b"}], to="offline")
        out = ws.training_frame(labels, ["p:x", "w:n_1d", "w:si_1d"], timestamp="t")
        assert out.drop(columns=["k", "t"]).to_dict("list") == {
            "p__x": [x],
            "w__n_1d": [1 + hour],
            "w__si_1d": [1 + sum(range(hour + 1))],
        }
    # compacted, and as if the compaction stopped before removing what it merged: read the same
    saved = {f.name: f.read_bytes() for f in ws.push_log.view_folder("w").iterdir()}
    ws.compact_pushes()
    for name, data in saved.items():
        (ws.push_log.view_folder("w") / name).write_bytes(data)
    again = ws.training_frame(labels, ["p:x", "w:n_1d", "w:si_1d"], timestamp="t")
    assert again.drop(columns=["k", "t"]).to_dict("list") == out.drop(columns=["k", "t"]).to_dict("list")
