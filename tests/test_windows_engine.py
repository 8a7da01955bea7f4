"""Window aggregations: the plan (parsing and its refusals) and the engines' values against a
brute-force oracle, on DuckDB and (marked ``spark``) on Spark."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from window_oracle import (
    BASE,
    Agg,
    WindowCase,
    assert_matches,
    oracle_windows,
    plain,
    window_cases,
    window_labels,
)

from jupyter_features.engines.duckdb import window_arrays as wa
from jupyter_features.engines.duckdb.windows import latest_windows_sql, relation_types, window_features
from jupyter_features.errors import (
    EngineError,
    FeaturesError,
    FeatureViewError,
    LabelFrameError,
    UnsafeSQLError,
)
from jupyter_features.sqltext import LABEL_TS, LABELS, ROW
from jupyter_features.windows import window_plan

OWNER = "feature view 'v'"


def _plan(sql: str, entity: Any = "user_id", timestamp: str = "ts", windows: Any = ("1h",), **kw: Any) -> Any:
    return window_plan(sql, entity, timestamp, list(windows), owner=OWNER, **kw)


# -- the plan ---------------------------------------------------------------------------------


def test_plan_names_relation_and_types() -> None:
    plan = _plan(
        """WITH f AS (SELECT * FROM flights WHERE origin = 'JFK')
           SELECT f.tailnum, count(*) AS flights, avg(dep_delay) AS delay, max(dep_delay) AS worst,
                  count(*) FILTER (WHERE dep_delay > 15) AS late, sum(dep_delay * 2) AS twice,
                  count(DISTINCT dest) AS dests
           FROM f JOIN planes p ON f.tailnum = p.tailnum GROUP BY f.tailnum""",
        entity=["tailnum"], timestamp="dep_ts", windows=["1h", "24h", "7d"],
    )  # fmt: skip
    assert plan.feature_names[:6] == ["flights_1h", "delay_1h", "worst_1h", "late_1h", "twice_1h", "dests_1h"]
    assert plan.feature_names[-1] == "dests_7d" and len(plan.feature_names) == 18
    assert [w.length for w in plan.windows] == [timedelta(hours=1), timedelta(hours=24), timedelta(days=7)]
    rel = plan.relation_sql
    assert "WITH f AS" in rel and "JOIN planes" in rel and "GROUP BY" not in rel
    assert 'f.tailnum AS "tailnum"' in rel and 'dep_ts AS "__jf_ts"' in rel
    assert plan.inputs == ("__jf_x0", "__jf_x1", "__jf_x2")  # dep_delay shared by avg and max
    late = plan.aggregates[3]
    assert (late.function, late.filter, late.flag) == ("count", "dep_delay > 15", "__jf_f0")
    assert plan.aggregates[5].distinct and plan.aggregates[5].function == "count"
    types = plan.output_types({"__jf_x0": "INTEGER", "__jf_x1": "INTEGER", "__jf_x2": "VARCHAR"})
    assert types["flights_1h"] == "BIGINT" and types["delay_1h"] == "DOUBLE"
    assert types["worst_1h"] == "INTEGER" and types["twice_24h"] == "BIGINT" and types["dests_7d"] == "BIGINT"
    assert _plan("SELECT user_id, stddev(x) AS s, variance(x) AS v FROM t GROUP BY 1").aggregates[
        1
    ].function == ("var_samp")
    assert _plan("SELECT user_id, count() AS n FROM t GROUP BY ALL").aggregates[0].argument is None


@pytest.mark.parametrize(
    ("sql", "kwargs", "match"),
    [
        ("SELECT user_id, median(x) AS m FROM t GROUP BY user_id", {}, r"not a supported aggregate.*count\(\*\)"),
        ("SELECT user_id, sum(x) FROM t GROUP BY user_id", {}, r"needs a name: write .*AS some_name"),
        ("SELECT user_id, x FROM t GROUP BY user_id", {}, "neither an entity key nor an aggregate"),
        ("SELECT user_id, count(*) AS n FROM t", {}, "needs GROUP BY user_id"),
        ("SELECT user_id, count(*) AS n FROM t GROUP BY user_id, x", {}, "not an entity key"),
        ("SELECT x, count(*) AS n FROM t GROUP BY x", {}, r"entity key\(s\) user_id are not selected"),
        ("SELECT user_id + 1 AS user_id, count(*) AS n FROM t GROUP BY 1", {}, "plain column"),
        ("SELECT user_id, sum(DISTINCT x) AS s FROM t GROUP BY user_id", {}, "DISTINCT is supported only in count"),
        ("SELECT user_id, sum(x) OVER () AS s FROM t GROUP BY user_id", {}, "window function"),
        ("SELECT user_id, sum(max(x)) AS s FROM t GROUP BY user_id", {}, "nests an aggregate"),
        ("SELECT user_id, min(x, 2) AS s FROM t GROUP BY user_id", {}, "extra arguments"),
        ("SELECT user_id, count(*) AS n FROM t GROUP BY user_id HAVING count(*) > 1", {}, "HAVING"),
        ("SELECT user_id, count(*) AS n, count(*) AS N FROM t GROUP BY user_id", {}, "two aggregates are named"),
        ("SELECT user_id, count(*) AS n FROM t GROUP BY user_id UNION SELECT 1, 2", {}, "not a UNION"),
        ("SELECT user_id, count(*) AS n FROM t GROUP BY user_id", {"windows": []}, "windows is empty"),
        ("SELECT user_id, count(*) AS n FROM t GROUP BY user_id", {"windows": ["1h", "60m"]}, "same length"),
        ("SELECT user_id, count(*) AS n FROM t GROUP BY user_id", {"windows": ["0h"]}, "positive"),
        ("SELECT user_id, count(*) AS n FROM t GROUP BY user_id", {"windows": ["soon"]}, "numbers and units"),
        ("SELECT user_id, count(*) AS n FROM t GROUP BY user_id", {"windows": ["1 day"]}, r"\('1d'\)"),
        ("SELECT user_id, count(*) AS n FROM t GROUP BY user_id", {"ttl": "2d"}, "windows and ttl"),
        ("SELECT user_id, count(*) AS user_id_1h FROM t GROUP BY user_id", {"entity": ["user_id", "x"]}, "not selected"),
    ],
)  # fmt: skip
def test_plan_refusals_name_the_fix(sql: str, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(FeatureViewError, match=match):
        _plan(sql, **kwargs)


def test_plan_refuses_unsafe_sql_and_unknown_sources() -> None:
    with pytest.raises(UnsafeSQLError, match="read_csv.*not allowed"):
        _plan("SELECT user_id, count(*) AS n FROM read_csv('/etc/passwd') GROUP BY user_id")
    with pytest.raises(FeaturesError, match="unknown source 'tx'"):
        _plan("SELECT user_id, count(*) AS n FROM tx GROUP BY user_id", sources={"txs": object()})


def test_output_types_refuse_sums_of_text() -> None:
    plan = _plan("SELECT user_id, sum(name) AS s FROM t GROUP BY user_id")
    with pytest.raises(FeatureViewError, match=r"needs a number.*CAST\(name AS DOUBLE\)"):
        plan.output_types({"__jf_x0": "VARCHAR"})


# -- the array kernels -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(-50, 50), min_size=0, max_size=200),
    data=st.data(),
    block=st.sampled_from([1, 2, 4, 8]),
)
def test_range_extreme_matches_brute_force(values: list[int], data: st.DataObject, block: int) -> None:
    """Every path: inside a block, across blocks, with and without whole blocks between, and
    ranges queried in two rounds (the sparse table grows between them)."""
    arr = np.array(values, dtype=np.int64)
    n = arr.size
    use = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, n)), max_size=30))
    a = np.array([min(p) for p in pairs], dtype=np.int64)
    b = np.array([max(p) for p in pairs], dtype=np.int64)
    lo = np.iinfo(np.int64).min
    rmq = wa.RangeExtreme(arr, np.maximum, lo, use=use, block=block)
    expected = [
        max([v for v, u in zip(values[x:y], use[x:y], strict=True) if u], default=lo)
        for x, y in zip(a.tolist(), b.tolist(), strict=True)
    ]
    half = len(pairs) // 2
    assert rmq.query(a[:half], b[:half]).tolist() == expected[:half]
    assert rmq.query(a, b).tolist() == expected
    assert wa.range_extremes(arr, use, np.maximum, lo, [(a, b)])[0].tolist() == expected


# -- DuckDB against the oracle ------------------------------------------------------------------


def _connection(cases: list[WindowCase], labels: pd.DataFrame, timestamp: str = "label_ts") -> Any:
    """Sources and a LABELS table as the point-in-time join registers them."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for case in cases:
        con.register(case.source, case.frame)
    keys = list(dict.fromkeys(k for c in cases for k in c.entity))
    frame = pd.DataFrame({k: labels[k].array for k in keys})
    frame[LABEL_TS] = labels[timestamp].to_numpy()
    frame[ROW] = np.arange(len(labels), dtype=np.int64)
    con.register(LABELS, frame)
    return con


def _check_duckdb(cases: list[WindowCase], labels: pd.DataFrame) -> None:
    original = labels.copy()
    con = _connection(cases, labels)
    for case in cases:
        plan = window_plan(case.sql, case.entity, "ts", case.windows, owner=f"feature view '{case.name}'")
        result = window_features(con, plan)
        assert list(result.columns) == plan.feature_names == case.feature_names
        assert len(result) == len(labels)
        assert_matches(result, oracle_windows(labels, "label_ts", case))
    pd.testing.assert_frame_equal(labels, original)


SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@SETTINGS
@given(data=st.data())
def test_duckdb_single_view_matches_oracle(data: st.DataObject) -> None:
    case = data.draw(window_cases("v", ["user_id"]))
    labels = data.draw(window_labels(["user_id"], [case]))
    _check_duckdb([case], labels)


@SETTINGS
@given(data=st.data())
def test_duckdb_several_views_and_composite_keys_match_oracle(data: st.DataObject) -> None:
    single = data.draw(window_cases("by_a", ["a"]))
    composite = data.draw(window_cases("by_ab", ["a", "b"]))
    labels = data.draw(window_labels(["a", "b"], [single, composite]))
    _check_duckdb([single, composite], labels)


# -- hand-written cases -------------------------------------------------------------------------


def _ts(hour: float) -> datetime:
    return BASE + timedelta(hours=hour)


def _frame(**columns: Any) -> pd.DataFrame:
    return pd.DataFrame(columns)


@pytest.fixture
def tx() -> pd.DataFrame:
    return _frame(
        user_id=[1, 1, 1, 1, 2, 1],
        ts=[_ts(0), _ts(1), _ts(1), _ts(5), _ts(1), _ts(24)],
        amount=pd.array([10, 20, 25, None, 7, 1], dtype="Int64"),
        price=[1e9 + 0.001, 1e9 + 0.002, 1e9 + 0.004, 1e9, 3.0, 1e9 + 0.003],
    )


def test_boundaries_ties_nulls_and_unknown_keys(tx: pd.DataFrame) -> None:
    labels = _frame(
        user_id=[1, 1, 1, 1, 3, None, 1, 1],
        label_ts=[_ts(1), _ts(2), _ts(5.5), _ts(-1), _ts(1), _ts(1), pd.NaT, _ts(1)],
    )
    case = WindowCase(
        "v", tx.rename(columns={"amount": "v_int"}).assign(v_float=None, v_time=pd.NaT, cat=None),
        ["user_id"],
        [Agg("count", None, False, None, "n"), Agg("sum", "v_int", False, None, "s"),
         Agg("count", "v_int", False, None, "c"), Agg("max", "v_int", False, None, "m")],
        ["1h"],
    )  # fmt: skip
    con = _connection([case], labels)
    plan = window_plan(case.sql, ["user_id"], "ts", ["1h"], owner=OWNER)
    out = window_features(con, plan)
    # (t-1h, t]: at 1h both rows at 1h count, the row at exactly 0h does not; at 2h the 1h rows
    # are exactly 1h old: gone; at 5.5h the 5h row counts but its amount is null
    assert out["n_1h"].tolist() == [2, 0, 1, 0, 0, 0, 0, 2]
    assert [plain(v) for v in out["s_1h"]] == [45, None, None, None, None, None, None, 45]
    assert out["c_1h"].tolist() == [2, 0, 0, 0, 0, 0, 0, 2]
    assert [plain(v) for v in out["m_1h"]] == [25, None, None, None, None, None, None, 25]
    assert str(out["n_1h"].dtype) == "int64" and str(out["s_1h"].dtype) == "Int64"


def test_variance_of_a_large_mean_with_a_small_spread(tx: pd.DataFrame) -> None:
    con = duckdb.connect()
    con.register("tx", tx)
    labels = _frame(user_id=[1, 1, 2], label_ts=[_ts(1), _ts(24), _ts(1)])
    con.register(LABELS, labels.rename(columns={"label_ts": LABEL_TS}).assign(**{ROW: np.arange(3)}))
    plan = _plan(
        "SELECT user_id, var_samp(price) AS v, stddev(price) AS s, avg(price) AS m FROM tx GROUP BY user_id",
        windows=["2h", "1d"],
    )
    out = window_features(con, plan)
    # the exact variance of the three doubles near 1e9 + {0.001, 0.002, 0.004}
    exact = float(statistics.variance([Fraction(x) for x in tx["price"][:3]]))
    assert out["v_2h"][0] == pytest.approx(exact, rel=1e-9)
    assert out["s_2h"][0] == pytest.approx(exact**0.5, rel=1e-9)
    assert np.isnan(out["v_2h"][2])  # one row: no sample variance
    assert out["m_1d"][1] == pytest.approx(
        float(sum(map(Fraction, tx["price"][[1, 2, 3, 5]])) / 4), rel=1e-15
    )


def test_min_max_of_times_floats_strings_and_bools() -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register(
        "ev",
        _frame(
            k=["x", "x", "x", "y"],
            ts=[_ts(0), _ts(1), _ts(2), _ts(0)],
            at=[_ts(10), _ts(-5), None, _ts(3)],
            f=[1.5, float("nan"), -2.0, 4.0],
            s=["pear", "apple", None, "fig"],
            b=[True, False, None, True],
        ),
    )
    con.register(LABELS, _frame(k=["x", "y", "z"], **{LABEL_TS: [_ts(2), _ts(0), _ts(0)], ROW: [0, 1, 2]}))
    plan = window_plan(
        "SELECT k, min(at) AS first, max(at) AS last, min(f) AS lo, max(f) AS hi, min(s) AS a, max(s) AS z, "
        "min(b) AS nb, max(b) AS xb, sum(b) AS sb FROM ev GROUP BY k",
        "k", "ts", ["3h"], owner=OWNER,
    )  # fmt: skip
    out = window_features(con, plan)
    assert [plain(v) for v in out["first_3h"]] == [_ts(-5), _ts(3), None]
    assert [plain(v) for v in out["last_3h"]] == [_ts(10), _ts(3), None]
    assert [plain(v) for v in out["lo_3h"]] == [-2.0, 4.0, None]  # a pandas NaN is a null in DuckDB
    assert [plain(v) for v in out["a_3h"]] == ["apple", "fig", None]
    assert [plain(v) for v in out["z_3h"]] == ["pear", "fig", None]
    assert [plain(v) for v in out["nb_3h"]] == [False, True, None]
    assert [plain(v) for v in out["xb_3h"]] == [True, True, None]
    assert [plain(v) for v in out["sb_3h"]] == [1, 1, None]
    assert str(out["first_3h"].dtype) == "datetime64[us]"


def test_label_key_type_mismatch_is_refused() -> None:
    con = duckdb.connect()
    con.register("ev", _frame(k=[1], ts=[_ts(0)]))
    con.register(LABELS, _frame(k=["1"], **{LABEL_TS: [_ts(0)], ROW: [0]}))
    plan = window_plan("SELECT k, count(*) AS n FROM ev GROUP BY k", "k", "ts", ["1h"], owner=OWNER)
    with pytest.raises(LabelFrameError, match="key 'k' is VARCHAR"):
        window_features(con, plan)


def test_a_subset_of_features_under_other_names(tx: pd.DataFrame) -> None:
    con = duckdb.connect()
    con.register("tx", tx)
    con.register(LABELS, _frame(user_id=[1], **{LABEL_TS: [_ts(1)], ROW: [0]}))
    plan = _plan(
        "SELECT user_id, count(*) AS n, sum(amount) AS s FROM tx GROUP BY user_id", windows=["1h", "1d"]
    )
    out = window_features(con, plan, features=["s_1d", "n_1h"], output=["v__s_1d", "v__n_1h"])
    assert list(out.columns) == ["v__s_1d", "v__n_1h"]
    assert [plain(out["v__s_1d"][0]), plain(out["v__n_1h"][0])] == [55, 2]
    with pytest.raises(FeaturesError, match="did you mean 'n_1h'"):
        window_features(con, plan, features=["n_1"])


def test_empty_labels_and_no_rows(tx: pd.DataFrame) -> None:
    con = duckdb.connect()
    con.register("tx", tx.iloc[:0])
    con.register(
        LABELS,
        pd.DataFrame({"user_id": pd.Series([], dtype="int64"), LABEL_TS: pd.Series([], dtype="datetime64[us]"),
                      ROW: pd.Series([], dtype="int64")}),
    )  # fmt: skip
    plan = _plan(
        "SELECT user_id, count(*) AS n, max(price) AS m, var_samp(price) AS v, count(DISTINCT amount) AS d "
        "FROM tx GROUP BY user_id"
    )
    out = window_features(con, plan)
    assert len(out) == 0 and list(out.columns) == ["n_1h", "m_1h", "v_1h", "d_1h"]


def test_latest_windows_sql_is_the_windows_at_end(tx: pd.DataFrame) -> None:
    con = duckdb.connect()
    con.register("tx", tx)
    plan = _plan(
        "SELECT user_id, count(*) AS n, sum(amount) AS s, max(price) AS m, count(DISTINCT amount) "
        "FILTER (WHERE amount > 10) AS d FROM tx GROUP BY user_id",
        windows=["2h", "1d"],
    )
    sql = latest_windows_sql(
        plan, end_literal="TIMESTAMP '2024-01-01 05:00:00'", input_types=relation_types(con, plan)
    )
    rows = {r[0]: r[1:] for r in con.execute(sql + " ORDER BY 1").fetchall()}
    # user 1 at 5h: (3h, 5h] holds the null amount at 5h; (5h - 1d, 5h] holds 0h, 1h, 1h, 5h
    assert rows[1] == (1, None, 1e9, 0, 4, 55, 1e9 + 0.004, 2)
    assert rows[2] == (0, None, None, 0, 1, 7, 3.0, 0)
    # the same as the training-frame path at t = end
    con.register(LABELS, _frame(user_id=[1, 2], **{LABEL_TS: [_ts(5), _ts(5)], ROW: [0, 1]}))
    frame = window_features(con, plan)
    assert [tuple(plain(v) for v in row) for row in frame.itertuples(index=False)] == [rows[1], rows[2]]


# -- Spark against the same oracle (few examples: Spark is slow on two cores) -----------------


@pytest.fixture(scope="module")
def spark_engine() -> Any:
    pytest.importorskip("pyspark")
    import warnings

    from jupyter_features.engines.spark import SparkEngine, default_session

    warnings.filterwarnings("ignore", category=FutureWarning)
    session = default_session(
        "local[2]",
        {
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.sql.adaptive.enabled": "false",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    return SparkEngine(session=session)


def _check_spark(engine: Any, cases: list[WindowCase], labels: pd.DataFrame) -> None:
    from jupyter_features.engines.spark.windows import window_features as spark_window_features
    from jupyter_features.sources import Source

    keys = list(dict.fromkeys(k for c in cases for k in c.entity))
    frame = pd.DataFrame({k: labels[k].array for k in keys})
    frame[LABEL_TS] = labels["label_ts"].to_numpy()
    frame[ROW] = np.arange(len(labels), dtype=np.int64)
    for case in cases:
        engine.register_source(Source(name=case.source, kind="dataframe", data=case.frame))
        plan = window_plan(case.sql, case.entity, "ts", case.windows, owner=f"feature view '{case.name}'")
        result = spark_window_features(engine, frame, plan)
        assert list(result.columns) == plan.feature_names and len(result) == len(labels)
        assert_matches(result, oracle_windows(labels, "label_ts", case))


SPARK_SETTINGS = settings(
    max_examples=6, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip


@pytest.mark.spark
@SPARK_SETTINGS
@given(data=st.data())
def test_spark_matches_oracle(spark_engine: Any, data: st.DataObject) -> None:
    single = data.draw(window_cases("by_a", ["a"]))
    composite = data.draw(window_cases("by_ab", ["a", "b"]))
    labels = data.draw(window_labels(["a", "b"], [single, composite]))
    _check_spark(spark_engine, [single, composite], labels)


@pytest.mark.spark
def test_spark_boundaries_and_every_aggregate(spark_engine: Any, tx: pd.DataFrame) -> None:
    frame = tx.rename(columns={"amount": "v_int", "price": "v_float"}).assign(
        v_time=[_ts(3), None, _ts(1), _ts(2), _ts(0), _ts(9)], cat=["a", "b", None, "a", "c", "b"]
    )
    aggregates = [
        Agg(f, arg, distinct, flt, f"a{i}")
        for i, (f, arg, distinct, flt) in enumerate(
            [("count", None, False, None), ("count", "cat", True, None), ("sum", "v_int", False, "v_int > 0"),
             ("avg", "v_float", False, None), ("min", "v_time", False, None), ("max", "cat", False, None),
             ("var_samp", "v_float", False, None), ("stddev", "v_int", False, "cat = 'a'")]
        )
    ]  # fmt: skip
    case = WindowCase("v", frame, ["user_id"], aggregates, ["1h", "1d"])
    labels = _frame(
        user_id=pd.array([1, 1, 1, 2, 3, None, 1], dtype="Int64"),
        label_ts=[_ts(1), _ts(2), _ts(5.5), _ts(1), _ts(1), _ts(1), pd.NaT],
    )
    _check_spark(spark_engine, [case], labels)


def test_nanosecond_label_times_are_not_rounded_into_the_future() -> None:
    con = duckdb.connect()
    con.register("ev", _frame(k=[1], ts=[_ts(0)]))
    ns = pd.Series([_ts(0), _ts(0), _ts(1)]).astype("datetime64[ns]") + pd.to_timedelta(
        [-1, 999, 999], unit="ns"
    )
    con.register(LABELS, pd.DataFrame({"k": [1, 1, 1], LABEL_TS: ns, ROW: [0, 1, 2]}))
    plan = window_plan("SELECT k, count(*) AS n FROM ev GROUP BY k", "k", "ts", ["1h"], owner=OWNER)
    assert window_features(con, plan)["n_1h"].tolist() == [0, 1, 0]


def test_long_history_with_a_large_mean_stays_exact() -> None:
    """Thousands of rows per key before the window, values near 1e6 that step by 50 every ten
    days, a spread of 1e-3 inside a window: sums, means and variances against exact arithmetic."""
    rng = np.random.default_rng(7)
    n = 6000
    hours = np.sort(rng.integers(0, 24 * 200, n))
    values = 1e6 + (hours // 240) * 50.0 + np.round(rng.normal(0, 1e-3, n), 6)  # a new level every 10 days
    con = duckdb.connect()
    con.register("ev", _frame(k=rng.integers(0, 2, n), ts=[_ts(int(h)) for h in hours], x=values))
    at = np.sort(rng.choice(hours, 25)) + 1
    con.register(
        LABELS, _frame(k=[i % 2 for i in range(25)], **{LABEL_TS: [_ts(int(h)) for h in at], ROW: range(25)})
    )
    plan = window_plan(
        "SELECT k, sum(x) AS s, avg(x) AS m, var_samp(x) AS v FROM ev GROUP BY k",
        "k",
        "ts",
        ["12h", "3d"],
        owner=OWNER,
    )
    out = window_features(con, plan)
    events = con.execute("SELECT k, ts, x FROM ev").fetchall()
    for i, h in enumerate(at):
        for w, span in (("12h", 12), ("3d", 72)):
            xs = [Fraction(x) for k, ts, x in events if k == i % 2 and _ts(int(h) - span) < ts <= _ts(int(h))]
            if len(xs) < 2:
                continue
            assert out[f"s_{w}"][i] == pytest.approx(float(sum(xs)), rel=1e-12)
            assert out[f"m_{w}"][i] == pytest.approx(float(sum(xs) / len(xs)), rel=1e-12)
            assert out[f"v_{w}"][i] == pytest.approx(float(statistics.variance(xs)), rel=1e-9)


def test_integer_sums_that_may_overflow_are_refused() -> None:
    con = duckdb.connect()
    con.register("ev", _frame(k=[1, 1], ts=[_ts(0), _ts(0)], x=[2**62, 2**62]))
    con.register(LABELS, _frame(k=[1], **{LABEL_TS: [_ts(0)], ROW: [0]}))
    plan = window_plan("SELECT k, sum(x) AS s FROM ev GROUP BY k", "k", "ts", ["1h"], owner=OWNER)
    with pytest.raises(EngineError, match=r"sum\(CAST\(x AS DOUBLE\)\)"):
        window_features(con, plan)


@pytest.mark.parametrize("keys", [[0, 1], [0, 2**61], ["a", "b"]], ids=["packed", "wide", "text"])
def test_each_way_of_numbering_keys(keys: list[Any]) -> None:
    """A compact integer key is its own id; a wide one or text is numbered through the labels' keys."""
    con = duckdb.connect()
    k0, k1 = keys
    con.register(
        "ev",
        _frame(
            k=[k0, k0, k1, k1],
            ts=[_ts(0), _ts(1), _ts(1), _ts(9)],
            x=[1.0, 2.0, 4.0, 8.0],
            c=["p", "q", "p", "p"],
        ),
    )
    con.register(
        LABELS, _frame(k=[k1, k0, k1, k0], **{LABEL_TS: [_ts(1), _ts(1), _ts(9), _ts(30)], ROW: range(4)})
    )
    plan = window_plan(
        "SELECT k, count(*) AS n, sum(x) AS s, max(x) AS m, count(DISTINCT c) AS d FROM ev GROUP BY k",
        "k", "ts", ["2h", "1d"], owner=OWNER,
    )  # fmt: skip
    out = window_features(con, plan)
    assert out["n_2h"].tolist() == [1, 2, 1, 0] and out["n_1d"].tolist() == [1, 2, 2, 0]
    assert [plain(v) for v in out["s_1d"]] == [4.0, 3.0, 12.0, None]
    assert [plain(v) for v in out["m_2h"]] == [4.0, 2.0, 8.0, None]
    assert out["d_1d"].tolist() == [1, 2, 1, 0]
