"""The engine contract for point-in-time joins: every offline engine (DuckDB, Spark) gives the
brute-force oracle's answers on randomized data, and the same answers on hand-written edges."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from oracle import ViewCase, label_frames, normalize, oracle_join, view_frames

import jupyter_features as jf
from jupyter_features.errors import FeatureReferenceError, LabelFrameError, UnknownColumnError
from jupyter_features.featureview import format_ttl


def _define(ws: jf.Workspace, case: ViewCase) -> None:
    source = f"src_{case.name}"
    ws.register_source(source, case.frame, timestamp="ts")
    cols = ", ".join(case.entity + ["ts"] + ([case.created] if case.created else []) + case.features)
    ws.feature_view(
        case.name, f"SELECT {cols} FROM {source}", entity=case.entity, timestamp="ts",
        created_timestamp=case.created, ttl=format_ttl(case.ttl),
    )  # fmt: skip


def _check(ws: jf.Workspace, labels: pd.DataFrame, cases: list[ViewCase]) -> None:
    for case in cases:
        _define(ws, case)
    original = labels.copy()
    result = ws.training_frame(labels, [f"{c.name}:*" for c in cases], timestamp="label_ts")
    # label rows and columns untouched, in order, index kept
    pd.testing.assert_frame_equal(result[list(labels.columns)], original)
    pd.testing.assert_frame_equal(labels, original)
    expected = oracle_join(labels, "label_ts", cases)
    assert list(result.columns) == list(labels.columns) + list(expected)
    for col, values in expected.items():
        assert normalize(result[col]) == normalize(values), col


#: Every offline engine; Spark in local mode and on a standalone cluster of separate processes,
#: both marked `spark` (CI runs them).
ENGINES = [
    "duckdb",
    pytest.param("spark", marks=pytest.mark.spark),
    pytest.param("spark-cluster", marks=[pytest.mark.spark, pytest.mark.spark_cluster]),
]
SESSIONS = {"spark": "spark_session", "spark-cluster": "spark_cluster_session"}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Any:
    """The engine argument of jf.Workspace: a name, or one of the test session's SparkSessions."""
    if request.param in SESSIONS:
        return request.getfixturevalue(SESSIONS[request.param])
    return request.param


def _examples(engine: Any) -> settings:
    on_cluster = engine != "duckdb" and not str(engine.sparkContext.master).startswith("local")
    return settings(
        max_examples=60 if engine == "duckdb" else 5 if on_cluster else 20,  # Spark is slow on two cores
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def test_single_view_matches_oracle(engine: Any, tmp_path: Path) -> None:
    @_examples(engine)
    @given(data=st.data(), with_created=st.booleans())
    def check(data: st.DataObject, with_created: bool) -> None:
        ws = jf.Workspace(tmp_path, engine=engine)
        case = data.draw(view_frames("v", ["user_id"], with_created))
        labels = data.draw(label_frames(["user_id"]))
        _check(ws, labels, [case])

    check()


def test_several_views_and_composite_keys_match_oracle(engine: Any, tmp_path: Path) -> None:
    @_examples(engine)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        ws = jf.Workspace(tmp_path, engine=engine)
        single = data.draw(view_frames("by_a", ["a"], data.draw(st.booleans())))
        composite = data.draw(view_frames("by_ab", ["a", "b"], data.draw(st.booleans())))
        labels = data.draw(label_frames(["a", "b"]))
        _check(ws, labels, [single, composite])

    check()


def test_tie_heavy_views_match_oracle(engine: Any, tmp_path: Path) -> None:
    """Most rows share keys and event time: the tie-break (created, then values, nulls losing) decides."""

    @_examples(engine)
    @given(data=st.data(), with_created=st.booleans())
    def check(data: st.DataObject, with_created: bool) -> None:
        ws = jf.Workspace(tmp_path, engine=engine)
        single = data.draw(view_frames("by_a", ["a"], with_created, tie_heavy=True))
        composite = data.draw(view_frames("by_ab", ["a", "b"], data.draw(st.booleans()), tie_heavy=True))
        labels = data.draw(label_frames(["a", "b"]))
        _check(ws, labels, [single, composite])

    check()


# -- hand-written edge cases -------------------------------------------------------------


def _ts(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, 1) + timedelta(days=day, hours=hour)


@pytest.fixture
def spend(engine: Any, tmp_path: Path) -> jf.Workspace:
    ws = jf.Workspace(tmp_path, engine=engine)
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


def test_tie_break_created_ttl_boundary_and_future(spend: jf.Workspace) -> None:
    labels = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 1, 2, 3],
            "label_ts": [_ts(2), _ts(4), _ts(4, 1), _ts(5), _ts(-1), _ts(3), _ts(3)],
        }
    )
    out = spend.training_frame(labels, ["spend:amount"], timestamp="label_ts")
    # day 2: the later-created of two rows at the same event time; day 4: exactly t - ttl is kept;
    # day 4 + 1h: older than the TTL -> null; day 5: exact time match; before any event: null;
    # user 2 within TTL; user 3 unknown.
    assert normalize(out["spend__amount"]) == [25.0, 25.0, None, 50.0, None, 7.0, None]


def test_label_keys_of_another_numeric_type_match_and_break_ties(spend: jf.Workspace) -> None:
    """The ASOF JOIN and the fetch of the features at the matched rows compare int32 label keys
    with the view's int64 ones alike; the tie on day 2 still goes to the later-created row."""
    labels = pd.DataFrame(
        {"user_id": np.array([1, 2, 1, 3], dtype=np.int32), "label_ts": [_ts(2), _ts(3), _ts(5), _ts(3)]}
    )
    out = spend.training_frame(labels, ["spend:amount"], timestamp="label_ts")
    assert normalize(out["spend__amount"]) == [25.0, 7.0, 50.0, None]
    if spend.engine.name == "duckdb":
        table = spend.training_frame(labels, ["spend:amount"], timestamp="label_ts", to="arrow").read_all()
        assert table.column("user_id").to_pylist() == [1, 2, 1, 3]
        assert table.column("spend__amount").to_pylist() == [25.0, 7.0, 50.0, None]


def test_plain_names_and_clash(spend: jf.Workspace) -> None:
    labels = pd.DataFrame({"user_id": [1], "label_ts": [_ts(2)], "amount": [0.0]})
    with pytest.raises(FeatureReferenceError, match="clashes"):
        spend.training_frame(labels, ["spend:amount"], timestamp="label_ts", plain_names=True)
    out = spend.training_frame(
        labels.drop(columns="amount"), ["spend:amount"], timestamp="label_ts", plain_names=True
    )
    assert list(out.columns) == ["user_id", "label_ts", "amount"]


def test_labels_as_sql_and_string_timestamps(spend: jf.Workspace) -> None:
    out = spend.training_frame(
        "SELECT 1 AS user_id, TIMESTAMP '2024-01-03' AS label_ts UNION ALL SELECT 2, TIMESTAMP '2024-01-02'",
        ["spend:*"], timestamp="label_ts",
    )  # fmt: skip
    assert len(out) == 2
    labels = pd.DataFrame({"user_id": [1], "label_ts": ["2024-01-03T00:00:00"]})
    out = spend.training_frame(labels, ["spend:amount"], timestamp="label_ts")
    assert normalize(out["spend__amount"]) == [25.0]
    assert out["label_ts"].tolist() == ["2024-01-03T00:00:00"]


def test_timezone_aware_labels_compare_in_utc(spend: jf.Workspace) -> None:
    labels = pd.DataFrame({"user_id": [1], "label_ts": [pd.Timestamp("2024-01-03 01:00", tz="Europe/Paris")]})
    out = spend.training_frame(labels, ["spend:amount"], timestamp="label_ts")
    assert normalize(out["spend__amount"]) == [25.0]  # 00:00 UTC on Jan 3


def test_bad_label_frames(spend: jf.Workspace) -> None:
    labels = pd.DataFrame({"user": [1], "label_ts": [_ts(2)]})
    with pytest.raises(UnknownColumnError, match="user_id"):
        spend.training_frame(labels, ["spend:*"], timestamp="label_ts")
    with pytest.raises(UnknownColumnError, match="did you mean 'label_ts'"):
        spend.training_frame(labels, ["spend:*"], timestamp="label_tz")
    with pytest.raises(LabelFrameError, match="VARCHAR"):
        spend.training_frame(
            pd.DataFrame({"user_id": ["1"], "label_ts": [_ts(2)]}), ["spend:*"], timestamp="label_ts"
        )
    with pytest.raises(jf.errors.UnknownFeatureError, match="did you mean 'amount'"):
        spend.training_frame(
            pd.DataFrame({"user_id": [1], "label_ts": [_ts(2)]}), ["spend:amout"], timestamp="label_ts"
        )
    with pytest.raises(jf.errors.UnknownFeatureViewError, match="did you mean 'spend'"):
        spend.training_frame(
            pd.DataFrame({"user_id": [1], "label_ts": [_ts(2)]}), ["spnd:*"], timestamp="label_ts"
        )
    with pytest.raises(FeatureReferenceError, match="view:feature"):
        spend.training_frame(
            pd.DataFrame({"user_id": [1], "label_ts": [_ts(2)]}), ["spend.amount"], timestamp="label_ts"
        )


def test_empty_labels(spend: jf.Workspace) -> None:
    labels = pd.DataFrame(
        {"user_id": pd.Series([], dtype="int64"), "label_ts": pd.Series([], dtype="datetime64[ns]")}
    )
    out = spend.training_frame(labels, ["spend:*"], timestamp="label_ts")
    assert len(out) == 0 and "spend__amount" in out.columns


def test_file_sources_and_windowed_view(engine: Any, tmp_path: Path) -> None:
    ws = jf.Workspace(tmp_path, engine=engine)
    folder = tmp_path / "tx"
    folder.mkdir()
    for part in range(2):
        pd.DataFrame(
            {"user_id": [1, 1], "ts": [_ts(part * 2), _ts(part * 2 + 1)], "amount": [1.0 + part, 2.0 + part]}
        ).to_parquet(folder / f"part{part}.parquet")
    ws.register_source("tx", folder / "*.parquet", timestamp="ts")
    ws.feature_view(
        "spend",
        "SELECT user_id, ts, sum(amount) OVER (PARTITION BY user_id ORDER BY ts "
        "RANGE BETWEEN INTERVAL 1 DAY PRECEDING AND CURRENT ROW) AS spend_1d FROM tx",
        entity="user_id", timestamp="ts",
    )  # fmt: skip
    labels = pd.DataFrame({"user_id": [1, 1], "label_ts": [_ts(3, 5), _ts(1)]})
    out = ws.training_frame(labels, ["spend:spend_1d"], timestamp="label_ts")
    assert normalize(out["spend__spend_1d"]) == [5.0, 3.0]
