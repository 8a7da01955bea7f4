"""What only the Spark engine does (Spark results and labels, object stores, transpiled SQL,
executors writing the online store); the point-in-time contract it shares with DuckDB is
tests/test_pit.py. Marked ``spark``: deselect locally with ``-m 'not spark'``; CI runs them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from oracle import BASE, normalize, view_frames
from test_materialize_oracle import _check as check_online
from test_materialize_oracle import _define as define_materialized

import jupyter_features as jf
from jupyter_features.errors import LabelFrameError, TranspileError

pytestmark = pytest.mark.spark


@pytest.fixture
def spark(spark_session: Any) -> Any:
    return spark_session


SETTINGS = settings(
    max_examples=20, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip


# -- hand-written cases -------------------------------------------------------------------


def _ts(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, 1) + timedelta(days=day, hours=hour)


@pytest.fixture
def spend(spark: Any, tmp_path: Path) -> jf.Workspace:
    ws = jf.Workspace(tmp_path, engine=spark)
    tx = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2],
            "ts": [_ts(0), _ts(2), _ts(2), _ts(5), _ts(1)],
            "created": [_ts(0), _ts(2, 1), _ts(2, 3), _ts(5), _ts(1)],
            "amount": [10.0, 20.0, 25.0, 50.0, 7.0],
        }
    )
    ws.register_source("tx", tx, timestamp="ts")
    ws.feature_view(
        "spend", "SELECT user_id, ts, created, amount FROM tx", entity="user_id",
        timestamp="ts", created_timestamp="created", ttl="2d",
    )  # fmt: skip
    return ws


LABELS = pd.DataFrame(
    {
        "user_id": [1, 1, 1, 1, 1, 2, 3],
        "label_ts": [_ts(2), _ts(4), _ts(4, 1), _ts(5), _ts(-1), _ts(3), _ts(3)],
    }
)
EXPECTED = [25.0, 25.0, None, 50.0, None, 7.0, None]


def test_workspace_runs_on_spark(spend: jf.Workspace) -> None:
    assert spend.engine.name == "spark"
    # day 2: the later-created of two rows at one event time; day 4: exactly t - ttl is kept;
    # day 4 + 1h: older than the TTL; day 5: exact match; before any event; user 2; unknown user 3.
    out = spend.training_frame(LABELS, ["spend:amount"], timestamp="label_ts")
    assert normalize(out["spend__amount"]) == EXPECTED
    assert spend.engine.sql("SELECT count(*) AS n FROM tx")["n"].tolist() == [5]


def test_spark_result_and_spark_labels(spend: jf.Workspace, spark: Any) -> None:
    frame = spend.training_frame(LABELS, ["spend:amount"], timestamp="label_ts", to="spark")
    assert frame.columns == ["user_id", "label_ts", "spend__amount"]
    assert normalize(frame.toPandas()["spend__amount"]) == EXPECTED
    from_spark = spend.training_frame(
        spark.createDataFrame(LABELS), ["spend:*"], timestamp="label_ts", to="spark"
    )
    assert normalize(from_spark.toPandas()["spend__amount"]) == EXPECTED


def test_to_spark_needs_the_spark_engine(ws: jf.Workspace) -> None:
    ws.register_source("tx", pd.DataFrame({"user_id": [1], "ts": [_ts(0)], "amount": [1.0]}), timestamp="ts")
    ws.feature_view("spend", "SELECT * FROM tx", entity="user_id", timestamp="ts")
    with pytest.raises(jf.errors.EngineError, match="engine='spark'"):
        ws.training_frame(LABELS, ["spend:*"], timestamp="label_ts", to="spark")


def test_key_types_are_checked_and_widened(spend: jf.Workspace) -> None:
    with pytest.raises(LabelFrameError, match="VARCHAR"):
        spend.training_frame(
            pd.DataFrame({"user_id": ["1"], "label_ts": [_ts(2)]}), ["spend:*"], timestamp="label_ts"
        )
    out = spend.training_frame(
        pd.DataFrame({"user_id": [1.0], "label_ts": [_ts(2)]}), ["spend:*"], timestamp="label_ts"
    )
    assert normalize(out["spend__amount"]) == [25.0]


def test_file_sources_and_windowed_view_match_duckdb(spark: Any, tmp_path: Path) -> None:
    folder = tmp_path / "tx"
    folder.mkdir()
    for part in range(2):
        pd.DataFrame(
            {
                "user_id": [1, 1, 2],
                "ts": [_ts(part * 2), _ts(part * 2 + 1), _ts(part)],
                "amount": [1.0 + part, 2.0 + part, 5.0],
            }
        ).to_parquet(folder / f"part{part}.parquet")
    sql = (
        "SELECT user_id, ts, sum(amount) OVER (PARTITION BY user_id ORDER BY ts "
        "RANGE BETWEEN INTERVAL 1 DAY PRECEDING AND CURRENT ROW) AS spend_1d, "
        "count(*) OVER (PARTITION BY user_id ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS n2 FROM tx"
    )
    labels = pd.DataFrame({"user_id": [1, 1, 2, 2], "label_ts": [_ts(3, 5), _ts(1), _ts(0, 1), _ts(9)]})
    results = []
    for engine in ("duckdb", spark):
        ws = jf.Workspace(tmp_path, engine=engine)
        ws.register_source("tx", folder / "*.parquet", timestamp="ts")
        ws.feature_view("spend", sql, entity="user_id", timestamp="ts")
        results.append(ws.training_frame(labels, ["spend:*"], timestamp="label_ts"))
    for col in ("spend__spend_1d", "spend__n2"):
        assert normalize(results[0][col]) == normalize(results[1][col]), col
    assert normalize(results[1]["spend__spend_1d"]) == [5.0, 3.0, 5.0, 10.0]


def test_transpiled_sql_gives_duckdb_values(spark: Any, tmp_path: Path) -> None:
    tx = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3],
            "ts": [_ts(0, 1), _ts(0, 5), _ts(1, 2), _ts(0, 3), _ts(2), _ts(1)],
            "amount": [10.0, -2.5, 4.0, None, 8.0, 1.0],
            "merchant": ["a", "b", "a", None, "c", "a"],
        }
    )
    sql = """
        WITH daily AS (
            SELECT user_id, date_trunc('day', ts) AS ts, count(*) AS n,
                   sum(amount) FILTER (WHERE amount > 0) AS spend, max(CASE WHEN merchant = 'a' THEN 1 ELSE 0 END) AS saw_a,
                   count(DISTINCT merchant) AS merchants
            FROM tx GROUP BY ALL
        )
        SELECT user_id, ts, n, coalesce(spend, 0) AS spend, saw_a, merchants,
               lag(n) OVER (PARTITION BY user_id ORDER BY ts) AS prev_n,
               CAST(round(coalesce(spend, 0)) AS BIGINT) AS spend_rounded, ts + INTERVAL 1 DAY AS next_day
        FROM daily
        QUALIFY row_number() OVER (PARTITION BY user_id, ts ORDER BY n DESC) = 1
    """
    labels = pd.DataFrame(
        {"user_id": [1, 1, 2, 3, 2], "label_ts": [_ts(0, 12), _ts(3), _ts(2, 1), _ts(2), _ts(1)]}
    )
    frames = []
    for engine in ("duckdb", spark):
        ws = jf.Workspace(tmp_path, engine=engine)
        ws.register_source("tx", tx, timestamp="ts")
        ws.feature_view("daily", sql, entity="user_id", timestamp="ts")
        frames.append(ws.training_frame(labels, ["daily:*"], timestamp="label_ts"))
    duck, spark_frame = frames
    for col in duck.columns:
        assert normalize(duck[col]) == normalize(spark_frame[col]), col
    assert normalize(spark_frame["daily__spend"]) == [10.0, 4.0, 8.0, 1.0, 0.0]


def test_object_store_urls_are_read_by_spark_only(spark: Any, tmp_path: Path) -> None:
    pd.DataFrame({"user_id": [1, 1], "ts": [_ts(0), _ts(2)], "amount": [1.0, 2.0]}).to_parquet(
        tmp_path / "tx.parquet"
    )
    url = f"file://{tmp_path}/*.parquet"  # stands for s3a://, gs://, abfss:// ...
    with pytest.raises(jf.errors.SourceError, match="engine='spark'"):
        jf.Workspace(tmp_path).register_source("tx", url, timestamp="ts")
    ws = jf.Workspace(tmp_path, engine=spark)
    with pytest.raises(jf.errors.UnknownColumnError, match="did you mean 'ts'"):
        ws.register_source("tx", url, timestamp="tss")
    source = ws.register_source("tx", url, timestamp="ts")
    assert source.schema["amount"] == "DOUBLE"
    ws.feature_view("spend", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts")
    assert ws.views["spend"].schema == {"amount": "float64"}
    out = ws.training_frame(
        pd.DataFrame({"user_id": [1, 1], "label_ts": [_ts(1), _ts(3)]}), ["spend:*"], timestamp="label_ts"
    )
    assert normalize(out["spend__amount"]) == [1.0, 2.0]


def test_view_sql_that_cannot_be_carried_is_refused(spark: Any, tmp_path: Path) -> None:
    ws = jf.Workspace(tmp_path, engine=spark)
    ws.register_source("tx", pd.DataFrame({"user_id": [1], "ts": [_ts(0)], "amount": [1.5]}), timestamp="ts")
    ws.feature_view(
        "spend", "SELECT user_id, ts, CAST(amount AS INTEGER) AS a FROM tx", entity="user_id", timestamp="ts"
    )
    with pytest.raises(TranspileError, match=r"feature view 'spend': CAST\(.*rounds"):
        ws.training_frame(LABELS, ["spend:*"], timestamp="label_ts")


def test_latest_matches_duckdb(spend: jf.Workspace) -> None:
    from jupyter_features.engines.duckdb import DuckDBEngine

    join = spend._plan_joins(["spend:*"], [], False)[0]
    duck = DuckDBEngine()
    duck.register_source(spend.sources["tx"])
    for end, since in ((_ts(6), None), (_ts(3), None), (_ts(6), _ts(2, 12)), (_ts(2), _ts(1))):
        got = spend.engine.latest(join, end, since).to_pandas().sort_values("user_id").reset_index(drop=True)
        want = duck.latest(join, end, since).to_pandas().sort_values("user_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


# -- materialization from the executors ----------------------------------------------------


ends = st.integers(0, 24).map(lambda d: BASE + timedelta(days=d))

#: Where the executors writing the store run: in local mode, and on a standalone cluster of
#: separate processes (tests/spark_cluster.py; run after every other test).
EXECUTORS = ["local", pytest.param("cluster", marks=pytest.mark.spark_cluster)]


@pytest.fixture(params=EXECUTORS)
def executors(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("spark_session" if request.param == "local" else "spark_cluster_session")


def test_materialized_from_spark_matches_oracle(executors: Any, tmp_path: Path, store_url: str) -> None:
    on_cluster = not str(executors.sparkContext.master).startswith("local")

    @settings(
        max_examples=2 if on_cluster else 8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )  # fmt: skip
    @given(
        data=st.data(), composite=st.booleans(), with_created=st.booleans(), end=ends, later=st.integers(0, 5)
    )
    def check(data: st.DataObject, composite: bool, with_created: bool, end: datetime, later: int) -> None:
        case = data.draw(view_frames("v", ["a", "b"] if composite else ["a"], with_created))
        ws = jf.Workspace(tmp_path / "ws", online_store=store_url, engine=executors)
        define_materialized(ws, case)
        result = ws.materialize([case.name], end=end, progress=False)[case.name]
        assert result.mode == "full"
        check_online(ws, case, end)
        later_end = end + timedelta(days=later)
        result = ws.materialize([case.name], end=later_end, incremental=True, progress=False)[case.name]
        assert result.mode == "incremental"
        check_online(ws, case, later_end)

    check()


def test_failed_spark_run_keeps_the_served_version(executors: Any, tmp_path: Path, store_url: str) -> None:
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url, engine=executors)
    ws.register_source("tx", pd.DataFrame({"a": [1, 2], "ts": [_ts(0), _ts(1)], "x": [1, 0]}), timestamp="ts")
    ws.feature_view("v", "SELECT a, ts, x + 0.5 AS y FROM tx", entity="a", timestamp="ts")
    first = ws.materialize(["v"], end=_ts(5), progress=False)["v"]
    # DuckDB divides by zero into inf; Spark's ANSI mode fails the job on the executors.
    ws.feature_view("v", "SELECT a, ts, 1 / x AS y FROM tx", entity="a", timestamp="ts")
    with pytest.raises(jf.errors.MaterializationError, match="readers still see the previous version"):
        ws.materialize(["v"], end=_ts(5), progress=False)
    assert ws.online_features(["v:y"], [{"a": 1}, {"a": 2}]).to_dict()["v__y"] == [1.5, 0.5]
    ws.feature_view("v", "SELECT a, ts, x + 0.5 AS y FROM tx", entity="a", timestamp="ts")
    again = ws.materialize(["v"], end=_ts(5), progress=False)
    assert again["v"].version > first.version  # the lock was released; the failed version is gone


def test_an_error_of_ours_on_an_executor_is_the_reason_given(spark: Any) -> None:
    from pyspark.errors import PySparkException

    from jupyter_features.engines.spark.writes import failure_reason

    def fail(batches: Any) -> Any:
        from jupyter_features.errors import OnlineStoreError

        raise OnlineStoreError("online store redis://127.0.0.1:6379/2: no lock of the run writing 'v'")
        yield from batches

    with pytest.raises(PySparkException) as info:
        spark.range(1).mapInArrow(fail, "id long").collect()
    assert failure_reason(str(info.value)) == (
        "OnlineStoreError: online store redis://127.0.0.1:6379/2: no lock of the run writing 'v'"
    )


def test_cli_materializes_on_spark(spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_materialize_cli import _project

    from jupyter_features.cli import main

    ws = _project(tmp_path)  # registry views 'spend' v1 and v2 over a parquet source
    store = f"sqlite:///{tmp_path}/cli-online.db"
    code = main(
        ["materialize", "spend", "--engine", "spark", "--dir", str(tmp_path), "--store", store,
         "--sources-from", str(tmp_path / "sources.py"), "--end", "2024-01-10", "--no-progress"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "spend: version 1 now served" in out and "2 entities" in out
    res = ws.online_features(["spend:amount"], [{"user_id": 1}, {"user_id": 2}], store=store)
    assert res.to_dict() == {"spend__amount": [40.0, 14.0]}
