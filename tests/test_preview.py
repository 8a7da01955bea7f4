"""Feature view previews and column profiles, checked against pandas on the same data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import jupyter_features as jf
from jupyter_features.demo import define_views, generate_data
from jupyter_features.errors import FeatureViewError
from jupyter_features.preview import FeatureViewPreview, diff_views
from jupyter_features.profile import profile


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "data"
    generate_data(folder, rows=3_000)
    return folder


@pytest.fixture
def demo_ws(ws: Any, demo_data: Path) -> jf.Workspace:
    define_views(ws, demo_data)
    return ws


def test_preview_matches_the_view_data(demo_ws: jf.Workspace) -> None:
    view = demo_ws.feature_view(
        "user_amounts", "SELECT user_id, ts, amount, amount * 2 AS doubled, CAST(amount > 100 AS INTEGER) AS big FROM transactions",
        entity="user_id", timestamp="ts",
    )  # fmt: skip
    result = view.preview(rows=5)
    assert isinstance(result, FeatureViewPreview)
    data = demo_ws.sql(view.sql)
    assert result.rows == len(data)
    assert result.entities == data["user_id"].nunique()
    assert result.first == data["ts"].min() and result.last == data["ts"].max()
    assert len(result.sample) == 5 and list(result.sample.columns) == list(data.columns)
    stats = result.stats.set_index("feature")
    assert list(stats.index) == view.feature_names
    for feature in view.feature_names:
        assert stats.at[feature, "type"] == view.schema[feature]
        assert stats.at[feature, "distinct"] == data[feature].nunique()
        assert stats.at[feature, "min"] == pytest.approx(data[feature].min())
        assert stats.at[feature, "max"] == pytest.approx(data[feature].max())
        assert stats.at[feature, "mean"] == pytest.approx(data[feature].mean())
    assert set(result.charts) == set(view.feature_names)
    assert result.chart() is not None and "$schema" in result.chart().to_dict()
    html = result._repr_html_()
    # the shared connection is left with no half-read result, which would block the next caller
    demo_ws.duckdb.con.register("probe", pd.DataFrame({"a": [1]}))
    demo_ws.duckdb.con.unregister("probe")
    assert "transactions.amount" in html  # lineage
    assert "first definition" in html
    assert result.previous is None


def test_preview_of_a_profile_view_counts_nulls(demo_ws: jf.Workspace) -> None:
    view = demo_ws.feature_view(
        "sparse", "SELECT user_id, ts, CASE WHEN amount > 50 THEN amount END AS big FROM transactions",
        entity="user_id", timestamp="ts",
    )  # fmt: skip
    data = demo_ws.sql(view.sql)
    col = view.preview().profile.column("big")
    assert col.nulls == data["big"].isna().sum()
    assert col.null_rate == pytest.approx(data["big"].isna().mean())
    assert sum(n for _, _, n in col.bins) == data["big"].notna().sum()


def test_redefinition_shows_what_changed(demo_ws: jf.Workspace) -> None:
    first = demo_ws.get_view("user_spend")
    second = demo_ws.feature_view(
        "user_spend",
        "SELECT user_id, ts, sum(amount) OVER (PARTITION BY user_id ORDER BY ts) AS spend_total, "
        "CAST(count(*) OVER (PARTITION BY user_id ORDER BY ts) AS DOUBLE) AS tx_7d FROM transactions",
        entity="user_id", timestamp="ts", ttl="7d", owner="someone",
    )  # fmt: skip
    result = second.preview()
    assert result.previous is first
    diff = result.diff
    assert diff is not None and not diff.same_definition
    text = "\n".join(diff.changes)
    assert "added feature(s): spend_total" in text
    assert "removed feature(s): spend_7d, avg_amount_7d, max_amount_7d, spend_30d, tx_30d" in text
    assert "tx_7d (int64 → float64)" in text
    assert "ttl: none → 7d" in text and "windows: 7d, 30d → none" in text
    assert "owner: fraud-team → someone" in text
    assert any(line.startswith("+") for line in diff.sql_diff)
    assert "changed since the previous definition" in result._repr_html_()
    again = demo_ws.feature_view(
        "user_spend", second.sql, entity="user_id", timestamp="ts", ttl="7d", owner="someone"
    )
    unchanged = again.preview()
    assert unchanged.diff is not None and unchanged.diff.same_definition and not unchanged.diff.changes
    assert "unchanged since the previous definition" in unchanged._repr_html_()


def test_diff_of_identical_views_is_empty(demo_ws: jf.Workspace) -> None:
    view = demo_ws.get_view("merchant_risk")
    diff = diff_views(view, view)
    assert not diff and diff.same_definition and diff.sql_diff == []


def test_preview_errors_name_the_view(demo_ws: jf.Workspace) -> None:
    bad = demo_ws.feature_view(
        "bad", "SELECT user_id, ts, CAST(CASE WHEN amount > 10 THEN 'x' ELSE '1' END AS INTEGER) AS n FROM transactions",
        entity="user_id", timestamp="ts",
    )  # fmt: skip
    with pytest.raises(FeatureViewError, match="feature view 'bad': DuckDB failed running its SQL"):
        bad.preview()
    with pytest.raises(FeatureViewError, match="not held by an open workspace"):
        dataclasses.replace(demo_ws.get_view("user_spend")).preview()
    assert not any(t.startswith("__jf_preview") for t in demo_ws.duckdb.tables())


def test_profile_of_a_dataframe_agrees_with_pandas() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=500),
            "k": rng.integers(0, 5, 500),
            "word": rng.choice(["a", "b", "c", None], 500, p=[0.5, 0.3, 0.1, 0.1]),
            "when": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 30, 500), unit="D"),
            "flag": rng.uniform(size=500) < 0.2,
            "empty": [None] * 500,
        }
    )
    frame.loc[::10, "x"] = np.nan
    p = profile(frame, bins=10)
    assert p.rows == 500 and [c.name for c in p.columns] == list(frame.columns)
    x = p.column("x")
    assert x.kind == "numeric" and x.nulls == frame["x"].isna().sum()
    assert x.mean == pytest.approx(frame["x"].mean()) and x.min == pytest.approx(frame["x"].min())
    assert len(x.bins) == 10 and sum(n for _, _, n in x.bins) == frame["x"].notna().sum()
    k = p.column("k")
    assert [round(lo + 0.5) for lo, _, _ in k.bins] == [0, 1, 2, 3, 4]  # one bin per small integer
    assert [n for _, _, n in k.bins] == [int((frame["k"] == v).sum()) for v in range(5)]
    word = p.column("word")
    counts = frame["word"].value_counts()
    assert word.top[0] == (counts.index[0], int(counts.iloc[0])) and word.distinct == 3
    assert p.column("when").kind == "timestamp" and sum(n for _, _, n in p.column("when").bins) == 500
    assert p.column("flag").top[0][0] == "false"
    assert p.column("empty").nulls == 500 and p.column("empty").bins == []
    assert set(p.charts) == {"x", "k", "word", "when", "flag"}
    assert "500 rows × 6 columns" in p._repr_html_()
    assert list(p.to_frame()["column"]) == list(frame.columns)


def test_profile_samples_large_tables() -> None:
    frame = pd.DataFrame({"v": np.arange(10_000, dtype=float)})
    p = profile(frame, max_rows=1_000)
    assert p.rows == 10_000 and p.sample == 1_000
    assert p.column("v").count == 1_000
    assert "sample of 1,000" in p._repr_html_()
