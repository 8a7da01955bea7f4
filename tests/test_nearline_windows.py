"""Windowed views online: events kept per entity, windows evaluated at request time.

The oracle is ``training_frame`` (the window engine, itself checked against a brute-force
oracle in tests/test_windows.py): for every T at or after the last run's end — minutes to days
later and exactly where an event leaves a window — an online read at T (SQLite, Redis, the
replica) equals the training frame's row for a label at T over the same rows: the view's up to
the last end and every event pushed.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jupyter_features as jf
from jupyter_features.errors import FeaturesError, NotMaterializedError, UnknownColumnError
from jupyter_features.online import OnlineTable, WindowSpec

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BASE = datetime(2024, 1, 1)
WINDOWS = ["1h", "1d", "3d"]
SQL = """SELECT k, count(*) AS n, count(x) AS nx, sum(i) AS si, avg(x) AS ax, min(x) AS mn, max(i) AS mx,
                max(ts) AS last, count(DISTINCT c) AS dc, stddev(x) AS sd, var_samp(i) AS vi,
                count(*) FILTER (WHERE i > 0) AS pos, sum(x) FILTER (WHERE c = 'a') AS sa
         FROM ev GROUP BY k"""
LATER = [
    timedelta(0),
    timedelta(minutes=5),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=3),
    timedelta(days=5),
]


@st.composite
def events(draw: Any, n_max: int = 30, hours: int = 10 * 24) -> pd.DataFrame:
    """Events with many equal times, nulls, keys 0..3."""
    n = draw(st.integers(0, n_max))
    frame = pd.DataFrame(
        {
            "k": [draw(st.integers(0, 3)) for _ in range(n)],
            "ts": [BASE + timedelta(hours=draw(st.integers(0, hours))) for _ in range(n)],
            "x": [draw(st.one_of(st.none(), st.floats(-100, 100, allow_nan=False))) for _ in range(n)],
            "i": [draw(st.one_of(st.none(), st.integers(-5, 5))) for _ in range(n)],
            "c": [draw(st.sampled_from(["a", "b", "c", None])) for _ in range(n)],
        }
    )
    frame["k"] = frame["k"].astype("int64")
    frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[us]")
    frame["x"] = frame["x"].astype("float64")
    frame["i"] = frame["i"].astype("Int64")
    frame["c"] = frame["c"].astype("string")  # typed VARCHAR even when every value is null
    return frame


def _fresh(store_url: str) -> str:
    n = time.monotonic_ns()
    if store_url.startswith("sqlite"):
        return store_url.replace("online.db", f"online{n}.db")
    return store_url + f"w{n}:"


def _define(ws: jf.Workspace, frame: pd.DataFrame) -> None:
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", SQL, entity="k", timestamp="ts", windows=WINDOWS)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(b, float) and b != b):
        return (a is None or (isinstance(a, float) and a != a)) and (
            b is None or (isinstance(b, float) and b != b)
        )
    if isinstance(a, float) or isinstance(b, float):
        return float(a) == pytest.approx(float(b), rel=1e-9, abs=1e-9)
    if isinstance(b, pd.Timestamp):
        b = b.to_pydatetime()
    return bool(a == b)


def _assert_online_equals_training(ws: jf.Workspace, at: datetime, reader: Any = None) -> None:
    grid = [{"k": k} for k in range(5)]  # key 4 never has an event
    labels = pd.DataFrame(grid)
    labels["t"] = at
    train = ws.training_frame(labels, ["w:*"], timestamp="t")
    got = (reader or ws.online_features)(["w:*"], grid, at=at).to_dict()
    for column in [c for c in train.columns if c.startswith("w__")]:
        want = [None if v is pd.NA or v is pd.NaT else v for v in train[column].tolist()]
        have = got[column]
        assert len(have) == len(want) and all(map(_same, have, want)), (column, at, have, want)


@SETTINGS
@given(
    data=st.data(),
    end_hour=st.integers(0, 8 * 24),
    steps=st.lists(st.sampled_from(["push", "push", "run"]), max_size=3),
)
def test_online_windows_equal_training_frame_at_later_times(
    tmp_path: Path, store_url: str, data: st.DataObject, end_hour: int, steps: list[str]
) -> None:
    frame = data.draw(events())
    ws = jf.Workspace(tmp_path / f"ws{time.monotonic_ns()}", online_store=_fresh(store_url))
    _define(ws, frame)
    end = BASE + timedelta(hours=end_hour)
    ws.materialize(["w"], end=end, progress=False)
    pushed = []
    for step in steps:
        if step == "push":  # late events (before end, some older than every window) and new ones
            rows = data.draw(events(n_max=6, hours=12 * 24))
            ws.push("w", rows)
            pushed.append(rows)
        else:
            end += timedelta(hours=data.draw(st.integers(0, 72)))
            ws.materialize(["w"], end=end, progress=False)
    # the oracle reads the rows the runs wrote (the view's up to the last end) and every push
    ws.register_source("ev", frame[frame["ts"] <= end], timestamp="ts")
    times = [end + later for later in LATER]
    for rows in [frame, *pushed]:  # exactly where an event leaves a window, and a microsecond before
        for ts in rows["ts"].head(3):
            for w in (timedelta(hours=1), timedelta(days=1)):
                edge = ts.to_pydatetime() + w
                times += [t for t in (edge, edge - timedelta(microseconds=1)) if t >= end]
    for at in times:
        _assert_online_equals_training(ws, at)
    with ws.online_replica(["w"]) as replica:
        for at in times[:4]:
            _assert_online_equals_training(ws, at, reader=replica.get)
    ws.close()


def _small(tmp_path: Path, store_url: str) -> jf.Workspace:
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    frame = pd.DataFrame(
        {
            "k": [1, 1, 2],
            "ts": pd.to_datetime(["2024-01-09 10:00", "2024-01-09 23:30", "2024-01-09 12:00"]),
            "x": [1.5, 2.5, 4.0],
            "i": pd.array([1, 2, 3], dtype="Int64"),
            "c": ["a", "b", "a"],
        }
    )
    _define(ws, frame)
    return ws


END = datetime(2024, 1, 10)


def test_window_slides_online_and_pushes_are_read_at_once(tmp_path: Path, store_url: str) -> None:
    ws = _small(tmp_path, store_url)
    ws.materialize(["w"], end=END, progress=False)

    def read(at: datetime) -> dict[str, list[Any]]:
        return ws.online_features(["w:n_1h", "w:n_1d", "w:si_1d"], [{"k": 1}, {"k": 9}], at=at).to_dict()

    assert read(END) == {"w__n_1h": [1, 0], "w__n_1d": [2, 0], "w__si_1d": [3, None]}
    assert read(END + timedelta(hours=1)) == {"w__n_1h": [0, 0], "w__n_1d": [2, 0], "w__si_1d": [3, None]}
    assert read(datetime(2024, 1, 10, 10)) == {"w__n_1h": [0, 0], "w__n_1d": [1, 0], "w__si_1d": [2, None]}
    result = ws.push("w", [{"k": 9, "ts": END + timedelta(minutes=10), "x": 1.0, "i": 7, "c": "z"}])
    assert result.rows == 1 and result.log_file is not None
    # k 1's event at 23:30 is exactly 1h old at 00:30: out of the 1h window
    assert read(END + timedelta(minutes=30)) == {"w__n_1h": [0, 1], "w__n_1d": [2, 1], "w__si_1d": [3, 7]}
    # a late event older than every window is logged for training but not kept online
    ws.push("w", [{"k": 9, "ts": END - timedelta(days=30), "x": 1.0, "i": 1, "c": "z"}])
    assert read(END + timedelta(minutes=30))["w__si_1d"] == [3, 7]
    labels = pd.DataFrame({"k": [9, 9], "t": [END + timedelta(minutes=30), END - timedelta(days=30)]})
    assert ws.training_frame(labels, ["w:si_1d"], timestamp="t")["w__si_1d"].tolist() == [7, 1]


def test_bad_window_pushes_are_refused_and_write_nothing(tmp_path: Path, store_url: str) -> None:
    ws = _small(tmp_path, store_url)
    with pytest.raises(NotMaterializedError):
        ws.push("w", [{"k": 1, "ts": END, "x": 1.0, "i": 1, "c": "a"}])
    ws.materialize(["w"], end=END, progress=False)
    before = ws.online_features(["w:*"], [{"k": 1}], at=END + timedelta(minutes=1)).to_dict()
    bad: list[tuple[Any, type[FeaturesError], str]] = [
        ([{"k": 1, "ts": END, "x": 1.0, "i": 1}], UnknownColumnError, r"lack column\(s\) c"),
        ([{"k": 1, "ts": END, "x": 1.0, "i": 1, "c": "a", "y": 2}], UnknownColumnError, "y are not in"),
        ([{"k": 1, "ts": END, "x": "many", "i": 1, "c": "a"}], FeaturesError, "'x'"),
        ([{"k": 1, "ts": "not a time", "x": 1.0, "i": 1, "c": "a"}], FeaturesError, "'ts'"),
        ([{"k": None, "ts": END, "x": 1.0, "i": 1, "c": "a"}], FeaturesError, "nulls"),
    ]
    for rows, error, text in bad:
        with pytest.raises(error, match=text):
            ws.push("w", rows)
    assert ws.online_features(["w:*"], [{"k": 1}], at=END + timedelta(minutes=1)).to_dict() == before
    assert not ws.push_log.files("w")


def test_window_metadata_is_checked_when_read() -> None:
    spec = {"columns": [], "aggregates": [{"function": "os.system", "alias": "a"}], "windows": [["1h", 1]]}
    with pytest.raises(FeaturesError, match="not one of"):
        WindowSpec.from_dict(spec, "w")
    table = OnlineTable(view="w", entity=("k",), key_types=("int64",), features=(), end_us=0)
    assert OnlineTable.from_json(table.to_json()).window is None


def test_window_pushes_racing_runs_are_never_lost(tmp_path: Path, store_url: str) -> None:
    ws = _small(tmp_path, store_url)
    ws.materialize(["w"], end=END, progress=False)
    errors: list[BaseException] = []
    count = 30

    def pusher() -> None:
        try:
            for j in range(count):
                ws.push("w", [{"k": 100 + j % 3, "ts": END + timedelta(minutes=1 + j), "x": 1.0, "i": j, "c": "a"}],
                        to="online" if j % 5 == 0 else "both")  # fmt: skip
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=pusher)
    thread.start()
    runs = 0
    while thread.is_alive() or runs < 2:
        ws.materialize(["w"], end=END + timedelta(seconds=20 * runs), progress=False)
        runs += 1
    thread.join()
    assert not errors, errors
    ws.materialize(["w"], end=END + timedelta(seconds=30), progress=False)
    at = END + timedelta(hours=2)
    keys = [{"k": 100}, {"k": 101}, {"k": 102}]
    got = ws.online_features(["w:n_1d", "w:si_1d"], keys, at=at).to_dict()
    assert got["w__n_1d"] == [len(range(k, count, 3)) for k in range(3)]
    assert got["w__si_1d"] == [sum(range(k, count, 3)) for k in range(3)]


def test_check_online_compares_windows_at_a_time(tmp_path: Path, store_url: str) -> None:
    ws = _small(tmp_path, store_url)
    ws.materialize(["w"], end=END, progress=False)
    ws.push("w", [{"k": 9, "ts": END + timedelta(minutes=10), "x": 1.0, "i": 7, "c": "z"}])
    for at in (None, END + timedelta(minutes=30), END + timedelta(hours=20)):
        report = ws.check_online(["w"], at=at, progress=False)
        assert report.ok, report


def test_a_push_into_a_column_the_source_left_untyped_says_how_to_type_it(
    tmp_path: Path, store_url: str
) -> None:
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    frame = pd.DataFrame({"k": [1], "ts": [BASE], "c": pd.Series([None], dtype="object")})
    ws.register_source("ev", frame, timestamp="ts")
    sql = "SELECT k, count(DISTINCT c) AS dc FROM ev GROUP BY k"
    ws.feature_view("u", sql, entity="k", timestamp="ts", windows=["1d"])
    ws.materialize(["u"], end=BASE + timedelta(days=1), progress=False)
    with pytest.raises(FeaturesError, match=r"column\(s\) c have no type .* CAST\(c AS VARCHAR\)"):
        ws.push("u", [{"k": 1, "ts": BASE + timedelta(hours=1), "c": "a"}])
    got = ws.online_features(["u:dc_1d"], [{"k": 1}], at=BASE + timedelta(days=1)).to_dict()
    assert got == {"u__dc_1d": [0]}
    ws.close()


PLAIN_INPUTS = """SELECT k, count(*) AS n, sum(i) AS si, avg(x) AS ax, max(ts) AS last, count(DISTINCT c) AS dc
                  FROM ev GROUP BY k"""


@SETTINGS
@given(data=st.data())
def test_pushes_into_a_view_of_plain_inputs_are_renamed_not_queried(
    tmp_path: Path, store_url: str, data: st.DataObject
) -> None:
    """Pushed rows of a view whose inputs are plain columns (no filter) become its relation's rows
    by renaming columns, the same rows DuckDB's projection gives; reads see them as training does."""
    from jupyter_features.windows import pushed_relation_renames, pushed_relation_sql, window_plan

    frame = data.draw(events())
    ws = jf.Workspace(tmp_path / f"ws{time.monotonic_ns()}", online_store=_fresh(store_url))
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", PLAIN_INPUTS, entity="k", timestamp="ts", windows=WINDOWS)
    plan = window_plan(PLAIN_INPUTS, "k", "ts", WINDOWS, owner="w")
    renames = pushed_relation_renames(plan)
    assert renames is not None
    assert pushed_relation_renames(window_plan(SQL, "k", "ts", WINDOWS, owner="w")) is None  # filters
    rows = data.draw(events(n_max=8, hours=12 * 24))
    import pyarrow as pa

    table = pa.Table.from_pandas(rows, preserve_index=False)
    queried = ws.duckdb.project(pushed_relation_sql(plan, "__jf_pushed"), "__jf_pushed", table)
    renamed = table.select([c for c, _ in renames]).rename_columns([r for _, r in renames])
    assert renamed.column_names == queried.column_names
    assert renamed.to_pylist() == queried.to_pylist()
    end = BASE + timedelta(days=8)
    ws.materialize(["w"], end=end, progress=False)
    ws.push("w", rows)
    ws.register_source("ev", frame[frame["ts"] <= end], timestamp="ts")
    for at in (end, end + timedelta(minutes=30), end + timedelta(days=2)):
        _assert_online_equals_training(ws, at)
    ws.close()


_PROJECTION = (
    'SELECT "k" AS "k", "ts" AS "__jf_ts", "x" * 2 AS "x0", "n" + 1 AS "n1", upper("s") AS "s0", '
    'COALESCE(("x" > 0 AND "b"), FALSE) AS "f0" FROM __jf_pushed'
)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(-(2**40), 2**40),
            st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)),
            st.none() | st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.none() | st.integers(-(2**31), 2**31),
            st.none() | st.text(max_size=5),
            st.none() | st.booleans(),
        ),
        min_size=1,
        max_size=64,
    )
)
def test_few_pushed_rows_projected_as_parameters_equal_the_arrow_path(rows: list[tuple[Any, ...]]) -> None:
    """A few rows go to DuckDB as parameters of a statement made once per (projection, schema):
    the same table as registering them, types and values (NaN, nulls, text, times)."""
    import pyarrow as pa

    from jupyter_features.engines.duckdb import DuckDBEngine

    schema = pa.schema(
        [("k", pa.int64()), ("ts", pa.timestamp("us")), ("x", pa.float64()), ("n", pa.int64()),
         ("s", pa.string()), ("b", pa.bool_())]
    )  # fmt: skip
    table = pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema=schema)
    engine = DuckDBEngine()
    first = engine.project(_PROJECTION, "__jf_pushed", table)  # the Arrow path; plans the other
    assert engine._projections[(_PROJECTION, "__jf_pushed", table.schema)] is not None
    second = engine.project(_PROJECTION, "__jf_pushed", table)
    assert second.schema == first.schema
    assert second.to_pylist() == first.to_pylist() or all(
        a == b or (a != a and b != b)  # NaN
        for r, q in zip(second.to_pylist(), first.to_pylist(), strict=True)
        for a, b in zip(r.values(), q.values(), strict=True)
    )


def test_pushed_rows_of_other_types_keep_the_arrow_path() -> None:
    """Timestamps with a zone (or any type outside the plain ones) are not passed as parameters."""
    import pyarrow as pa

    from jupyter_features.engines.duckdb import DuckDBEngine

    table = pa.table({"k": [1], "ts": pa.array([datetime(2024, 1, 1)], pa.timestamp("us", tz="UTC"))})
    engine = DuckDBEngine()
    sql = 'SELECT "k", "ts" AS "__jf_ts" FROM __jf_pushed'
    first = engine.project(sql, "__jf_pushed", table)
    assert engine.project(sql, "__jf_pushed", table).equals(first)
    assert engine._projections[(sql, "__jf_pushed", table.schema)] is None
