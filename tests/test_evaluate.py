"""jf.evaluate / jf.ablate / EvaluationReport on small synthetic frames."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jupyter_features as jf
from jupyter_features.errors import EvaluationError
from jupyter_features.modeling import make_splits


def _frame(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """A label driven by `signal` (and a bit by `color`); `noise` carries nothing."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    logit = 2.5 * signal + np.where(color == "red", 1.0, 0.0)
    frame = pd.DataFrame(
        {
            "user_id": np.arange(n),
            "label_ts": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(np.sort(rng.uniform(0, 90, n)), unit="D"),
            "signal": signal,
            "noise": rng.normal(size=n),
            "color": color,
            "y": rng.uniform(size=n) < 1 / (1 + np.exp(-logit)),
        }
    )
    frame["amount"] = 3 * signal + rng.normal(scale=0.5, size=n)
    return frame


def test_classification_report_has_metrics_importance_and_charts() -> None:
    frame = _frame().drop(columns="amount")
    report = jf.evaluate(frame, label="y", time_column="label_ts")
    assert report.task == "classification"
    assert set(report.metrics) >= {"auc", "log_loss", "accuracy", "average_precision"}
    assert report.metrics["auc"] > 0.8
    assert report.importance.iloc[0]["feature"] == "signal"
    assert list(report.importance.columns) == ["feature", "importance", "std"]
    assert report.dropped == {"user_id": "an identifier", "label_ts": "the time column"}
    assert sorted(report.features) == ["color", "noise", "signal"]
    assert report.n_train + report.n_test == len(frame)
    charts = report.charts
    assert set(charts) == {"roc", "importance"}
    for chart in charts.values():
        assert "$schema" in chart.to_dict()
    bundle = report._repr_mimebundle_()
    assert "auc" in bundle["text/html"] and "signal" in bundle["text/html"]
    assert "EvaluationReport(y:" in bundle["text/plain"]


def test_regression_is_inferred_from_a_float_label() -> None:
    frame = _frame().drop(columns="y")
    report = jf.evaluate(frame, label="amount", split="random")
    assert report.task == "regression"
    assert set(report.metrics) == {"rmse", "mae", "r2"}
    assert report.metrics["r2"] > 0.8
    assert set(report.charts) == {"residuals", "importance"}
    report.charts["residuals"].to_dict()


def test_time_split_trains_only_on_earlier_rows() -> None:
    frame = _frame()
    y = frame["y"]
    [(train, test)], description = make_splits("time", y, frame["label_ts"], "classification", 0.25, 5, 0)
    assert "label_ts" in description
    times = frame["label_ts"].to_numpy()
    assert times[train].max() < times[test].min()
    assert len(train) + len(test) == len(frame)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=2, max_size=60), st.floats(0.1, 0.6))
def test_time_split_never_leaks_even_with_ties(days: list[int], test_size: float) -> None:
    times = pd.Series(pd.Timestamp("2026-01-01") + pd.to_timedelta(days, unit="D"), name="t")
    y = pd.Series(np.arange(len(days)) % 2 == 0)
    try:
        [(train, test)], _ = make_splits("time", y, times, "classification", test_size, 5, 0)
    except EvaluationError:  # only when no row is earlier than the cut
        assert sorted(days)[min(len(days) - 1, int(len(days) * (1 - test_size)))] == min(days)
        return
    assert sorted([*train, *test]) == list(range(len(days)))
    assert times.to_numpy()[train].max() < times.to_numpy()[test].min()


def test_categoricals_and_missing_values_are_handled_by_every_model() -> None:
    from sklearn.linear_model import LogisticRegression

    frame = _frame().drop(columns="amount")
    frame.loc[::7, "signal"] = np.nan
    frame.loc[::5, "color"] = None
    for model in ("auto", "linear", LogisticRegression(max_iter=500)):
        report = jf.evaluate(frame, label="y", model=model, time_column="label_ts")
        assert report.metrics["auc"] > 0.7, model
    assert jf.evaluate(frame, "y", model="linear", time_column="label_ts").model_name == "LogisticRegression"


def test_a_pipeline_is_used_as_given() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    frame = _frame().drop(columns=["amount", "color"])
    model = make_pipeline(SimpleImputer(), RandomForestClassifier(n_estimators=20, random_state=0))
    report = jf.evaluate(frame, "y", model=model, time_column="label_ts")
    assert report.model_name == "RandomForestClassifier"
    assert report.metrics["auc"] > 0.75


def test_kfold_reports_each_fold() -> None:
    report = jf.evaluate(_frame().drop(columns="amount"), "y", model="linear", split="kfold", folds=3)
    assert report.fold_metrics is not None and len(report.fold_metrics) == 3
    assert report.metrics["auc"] == pytest.approx(report.fold_metrics["auc"].mean())
    assert report.n_test + report.n_train == 1500
    assert "3-fold" in report.split


def test_compare_puts_two_reports_side_by_side() -> None:
    frame = _frame().drop(columns="amount")
    full = jf.evaluate(frame, "y", model="linear", time_column="label_ts", name="with signal")
    weak = jf.evaluate(
        frame, "y", model="linear", features=["noise", "color"], time_column="label_ts", name="without"
    )
    comparison = full.compare(weak)
    assert list(comparison.table.columns) == ["with signal", "without", "Δ without"]
    assert comparison.delta("without") == pytest.approx(weak.metrics["auc"] - full.metrics["auc"])
    assert comparison.delta("without") < -0.2
    html = comparison._repr_html_()
    assert "class='bad'" in html and "worse" in html


def test_ablate_shows_what_each_group_is_worth() -> None:
    frame = _frame().drop(columns="amount")
    frame = frame.rename(columns={"signal": "view_a__signal", "noise": "view_b__noise"})
    result = jf.ablate(frame, "y", ["view_a", "view_b"], model="linear", time_column="label_ts")
    assert list(result.reports) == ["all features", "without view_a", "without view_b"]
    assert result.delta("without view_a") < -0.1  # the informative group
    assert abs(result.delta("without view_b")) < 0.05  # the noise group
    named = jf.ablate(frame, "y", {"colour": ["color"]}, model="linear", time_column="label_ts")
    assert "Δ without colour" in named.table.columns


def test_errors_name_the_fix() -> None:
    frame = _frame()
    with pytest.raises(EvaluationError, match="did you mean 'y'"):
        jf.evaluate(frame, label="yy")
    with pytest.raises(EvaluationError, match="time_column"):
        jf.evaluate(frame.assign(other_ts=frame["label_ts"]), label="y")
    with pytest.raises(EvaluationError, match="single value"):
        jf.evaluate(frame.assign(y=True), label="y", time_column="label_ts")
    with pytest.raises(EvaluationError, match="unknown split"):
        jf.evaluate(frame, label="y", split="later")
    with pytest.raises(EvaluationError, match="not in the frame"):
        jf.evaluate(frame, label="y", features=["signl"], time_column="label_ts")
    with pytest.raises(EvaluationError, match="regressor"):
        from sklearn.linear_model import LogisticRegression

        jf.evaluate(frame, label="amount", model=LogisticRegression(), split="random")
    with pytest.raises(EvaluationError, match="matches no feature"):
        jf.ablate(frame, "y", ["nothing_here"], time_column="label_ts")


def test_import_stays_light() -> None:
    code = (
        "import sys, jupyter_features as jf\n"
        "heavy = [m for m in ('sklearn', 'altair', 'ipywidgets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "jf.evaluate\n"
        "assert 'sklearn' in sys.modules and 'altair' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
