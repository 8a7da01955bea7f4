"""Quick model evaluation: how well does a training frame predict its label, and does a
new feature help?

``evaluate`` fits one model (HistGradientBoosting by default, ``"linear"``, or any
scikit-learn estimator) on a split that cannot leak the future (``split="time"``), or a
random split, or k folds, and returns an ``EvaluationReport``: metrics, permutation
importance and charts. ``report.compare(other)`` and ``ablate`` put runs side by side.
This module loads scikit-learn; ``import jupyter_features`` only loads it on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import render
from .errors import EvaluationError, did_you_mean
from .modeling import build_model, feature_frame, importance, infer_task, make_splits, pick_features, score

if TYPE_CHECKING:
    import altair as alt

__all__ = ["EvaluationReport", "Comparison", "evaluate", "ablate"]

#: metric → True when higher is better
HIGHER_IS_BETTER = {
    "auc": True, "average_precision": True, "accuracy": True, "log_loss": False,
    "rmse": False, "mae": False, "r2": True,
}  # fmt: skip
_PRIMARY = {"classification": "auc", "regression": "rmse"}
_SPLITS = ("time", "random", "kfold")


@dataclass
class EvaluationReport:
    """What ``evaluate`` found. Shows itself in a notebook; ``compare`` puts two side by side."""

    label: str
    task: str
    model_name: str
    split: str
    features: list[str]
    metrics: dict[str, float]
    importance: pd.DataFrame
    n_train: int
    n_test: int
    dropped: dict[str, str] = field(default_factory=dict)
    fold_metrics: pd.DataFrame | None = None
    name: str = ""
    model: Any = field(default=None, repr=False)  # the fitted pipeline (last fold)
    y_true: np.ndarray | None = field(default=None, repr=False)  # test rows (all folds)
    y_score: np.ndarray | None = field(default=None, repr=False)  # P(positive) or prediction
    classes: list[Any] | None = None

    @property
    def primary(self) -> str:
        return _PRIMARY[self.task]

    @property
    def charts(self) -> dict[str, alt.Chart]:
        """Altair: ROC curve (binary) or residuals (regression), and importance bars."""
        from . import charts

        out: dict[str, Any] = {}
        if self.y_true is not None and self.y_score is not None:
            if (
                self.task == "classification"
                and self.classes is not None
                and len(self.classes) == 2
                and len(np.unique(self.y_true)) == 2
            ):
                from sklearn.metrics import roc_curve

                fpr, tpr, _ = roc_curve(self.y_true == self.classes[1], self.y_score)
                out["roc"] = charts.roc_chart(fpr, tpr, self.metrics.get("auc", float("nan")))
            elif self.task == "regression":
                out["residuals"] = charts.residuals_chart(self.y_true, self.y_score)
        if len(self.importance):
            out["importance"] = charts.importance_chart(self.importance)
        return out

    def compare(self, other: EvaluationReport, names: tuple[str, str] | None = None) -> Comparison:
        """This report and ``other`` side by side; Δ = other − this, marked better or worse."""
        a, b = names or (self.name or "this", other.name or "other")
        if a == b:
            a, b = f"{a} (1)", f"{b} (2)"
        return _comparison({a: self, b: other}, baseline=a)

    def html(self) -> str:
        kind = ("binary " if self.classes is not None and len(self.classes) == 2 else "") + self.task
        head = (
            f"<h4>{render.esc(self.label)} · {kind} · {render.esc(self.model_name)}</h4>"
            f"<div class='meta'>{render.esc(self.split)} · {self.n_train:,} train rows · {self.n_test:,} test rows · "
            f"{len(self.features)} features</div>"
        )
        cards = "".join(
            f"<div class='card'>{render.esc(k.replace('_', ' '))}<b>{v:.4g}</b></div>"
            for k, v in self.metrics.items()
        )
        if self.fold_metrics is not None:
            spread = self.fold_metrics.std()
            cards += f"<div class='card'>±{spread.get(self.primary, float('nan')):.3g}<b>{self.primary} spread</b></div>"
        top = self.importance.head(15)
        peak = float(top["importance"].abs().max()) if len(top) else 0.0
        rows = [
            [render.esc(f), render.bar(v / peak if peak else 0, negative=v < 0, width=120), v, sd]
            for f, v, sd in zip(
                top["feature"], top["importance"].astype(float), top["std"].astype(float), strict=True
            )
        ]
        table = "<h4>permutation importance (drop in score when a feature is shuffled)</h4>" + render.table(
            ["feature", "", "importance", "± std"], rows, raw=(0, 1)
        )
        unused = ""
        if self.dropped:
            unused = (
                "<div class='meta'>not used: "
                + render.esc(", ".join(f"{c} ({why})" for c, why in self.dropped.items()))
                + "</div>"
            )
        return head + f"<div class='cards'>{cards}</div>" + table + unused

    def _repr_html_(self) -> str:
        return render.wrap(self.html())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._repr_html_()))
        charts = list(self.charts.values())
        if charts:
            import altair as alt

            from .charts import show

            show(alt.hconcat(*charts))

    def __repr__(self) -> str:
        shown = " ".join(f"{k}={v:.4f}" for k, v in self.metrics.items())
        return f"EvaluationReport({self.label}: {self.model_name}, {shown}, {self.n_test:,} test rows)"


def evaluate(
    frame: pd.DataFrame,
    label: str,
    features: Sequence[str] | None = None,
    model: Any = "auto",
    split: str = "time",
    time_column: str | None = None,
    *,
    task: str | None = None,
    test_size: float = 0.2,
    folds: int = 5,
    seed: int = 0,
    importance_rows: int = 5_000,
    name: str = "",
    n_jobs: int | None = 1,
) -> EvaluationReport:
    """Fit ``model`` to predict ``label`` from ``features`` (default: every usable column) and report.

    ``split="time"`` trains on rows strictly earlier than every test row (``time_column``,
    or the frame's only datetime column); ``"random"`` holds out ``test_size``; ``"kfold"``
    averages ``folds`` folds. Rows without a label are left out. ``n_jobs`` caps the
    threads the model uses (None: every core); one thread is the predictable default on a
    shared machine.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_jobs):
        return _evaluate(
            frame, label, features, model, split, time_column, task=task, test_size=test_size,
            folds=folds, seed=seed, importance_rows=importance_rows, name=name,
        )  # fmt: skip


def _evaluate(
    frame: pd.DataFrame,
    label: str,
    features: Sequence[str] | None,
    model: Any,
    split: str,
    time_column: str | None,
    *,
    task: str | None,
    test_size: float,
    folds: int,
    seed: int,
    importance_rows: int,
    name: str,
) -> EvaluationReport:
    if not isinstance(frame, pd.DataFrame):
        raise EvaluationError(f"evaluate needs a pandas DataFrame, not {type(frame).__name__}")
    if label not in frame.columns:
        raise EvaluationError(
            f"label column '{label}' is not in the frame{did_you_mean(label, map(str, frame.columns))}"
        )
    if split not in _SPLITS:
        raise EvaluationError(f"unknown split {split!r}; use one of: {', '.join(_SPLITS)}")
    if not 0 < test_size < 1:
        raise EvaluationError(f"test_size must be between 0 and 1, got {test_size}")
    if split == "time" and time_column is None:
        candidates = [
            str(c) for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c]) and c != label
        ]
        if len(candidates) != 1:
            found = f"it has {', '.join(candidates)}" if candidates else "it has none"
            raise EvaluationError(
                f"split='time' needs time_column=...: the frame must have exactly one datetime column to guess from, and {found}; or use split='random'"
            )
        time_column = candidates[0]
    if time_column is not None and time_column not in frame.columns:
        raise EvaluationError(
            f"time column '{time_column}' is not in the frame{did_you_mean(time_column, map(str, frame.columns))}"
        )
    data = frame[frame[label].notna()]
    if split == "time":
        data = data[data[str(time_column)].notna()]
    data = data.reset_index(drop=True)
    if len(data) < 20:
        raise EvaluationError(f"only {len(data)} labelled rows; evaluation needs at least 20")
    task = task or infer_task(data[label])
    if task not in _PRIMARY:
        raise EvaluationError(f"unknown task {task!r}; use 'classification' or 'regression'")
    chosen, dropped = pick_features(data, label, time_column, features)
    X = feature_frame(data, chosen)
    y = data[label]
    if task == "regression":
        y = y.astype("float64")
    elif pd.api.types.is_bool_dtype(y) or y.dtype == object:
        y = y.astype(bool) if pd.api.types.is_bool_dtype(y) else y.astype(str)
    if task == "classification" and y.nunique() < 2:
        raise EvaluationError(
            f"label '{label}' has a single value ({y.iloc[0]!r}); a classifier needs at least two"
        )
    times = data[str(time_column)] if split == "time" else None
    pairs, split_desc = make_splits(split, y, times, task, test_size, folds, seed)
    fold_rows, truths, scores = [], [], []
    fitted: Any = None
    model_name = ""
    ranked = pd.DataFrame(columns=["feature", "importance", "std"])
    for k, (train, test) in enumerate(pairs):
        fitted, model_name = build_model(model, task, X, seed)
        fitted.fit(X.iloc[train], y.iloc[train])
        X_test, y_test = X.iloc[test], y.iloc[test].to_numpy()
        pred = fitted.predict(X_test)
        proba, classes = None, None
        if task == "classification":
            classes = np.asarray(fitted.classes_)
            proba = fitted.predict_proba(X_test)
        fold_rows.append(score(task, y_test, pred, proba, classes))
        truths.append(y_test)
        scores.append(pred if proba is None else (proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)))
        if k == 0:
            ranked = importance(fitted, X_test, y_test, task, classes, seed, importance_rows)
    fold_metrics = pd.DataFrame(fold_rows)
    metrics = {str(k): float(v) for k, v in fold_metrics.mean().items()}
    return EvaluationReport(
        label=label, task=task, model_name=model_name, split=split_desc, features=chosen, metrics=metrics,
        importance=ranked, n_train=len(pairs[0][0]), n_test=len(pairs[0][1]), dropped=dropped,
        fold_metrics=fold_metrics if len(pairs) > 1 else None, name=name, model=fitted,
        y_true=np.concatenate(truths), y_score=np.concatenate(scores),
        classes=list(fitted.classes_) if task == "classification" else None,
    )  # fmt: skip


@dataclass
class Comparison:
    """Evaluation runs side by side: one column per run, Δ columns against the baseline."""

    reports: dict[str, EvaluationReport]
    baseline: str
    table: pd.DataFrame
    primary: str
    ablation: bool = False  # runs are "without GROUP"; the verdict speaks of groups

    def delta(self, run: str, metric: str | None = None) -> float:
        """``metric`` of ``run`` minus the baseline's (the primary metric by default)."""
        metric = metric or self.primary
        return float(
            self.reports[run].metrics.get(metric, np.nan)
            - self.reports[self.baseline].metrics.get(metric, np.nan)
        )

    def html(self) -> str:
        runs = list(self.reports)
        header = ["metric", *runs, *[f"Δ {r}" for r in runs if r != self.baseline]]
        rows = []
        for metric in self.table.index:
            higher = HIGHER_IS_BETTER.get(metric, True)
            cells: list[Any] = [render.esc(metric)] + [
                render.fmt_value(self.table.at[metric, r]) for r in runs
            ]
            for r in runs:
                if r == self.baseline:
                    continue
                d = self.delta(r, metric)
                cls = "" if d == 0 or d != d else ("good" if (d > 0) == higher else "bad")
                cells.append(f"<span class='{cls}'>{d:+.4f}</span>")
            rows.append(cells)
        return render.table(header, rows, raw=range(len(header))) + self._verdict()

    def _verdict(self) -> str:
        lines = []
        higher = HIGHER_IS_BETTER.get(self.primary, True)
        for r in self.reports:
            if r == self.baseline:
                continue
            d = self.delta(r)
            if d != d:
                continue
            better = (d > 0) == higher and d != 0
            if self.ablation:
                group = render.esc(r.removeprefix("without "))
                verdict = (
                    "helps" if d and not better else "does not help here" if d else "makes no difference"
                )
                lines.append(f"<b>{group}</b> {verdict}: {self.primary} {d:+.4f} without it")
            else:
                outcome = "better" if better else "worse" if d else "the same"
                lines.append(
                    f"{render.esc(r)}: {self.primary} {d:+.4f} vs {render.esc(self.baseline)} ({outcome})"
                )
        return "<div class='meta'>" + "<br>".join(lines) + "</div>" if lines else ""

    def _repr_html_(self) -> str:
        return render.wrap(self.html())

    def __repr__(self) -> str:
        return f"Comparison(baseline={self.baseline!r}, runs={list(self.reports)})\n{self.table}"


def _comparison(reports: dict[str, EvaluationReport], baseline: str, *, ablation: bool = False) -> Comparison:
    primary = reports[baseline].primary
    metrics: list[str] = []
    for rep in reports.values():
        metrics += [m for m in rep.metrics if m not in metrics]
    table = pd.DataFrame(
        {name: [rep.metrics.get(m, np.nan) for m in metrics] for name, rep in reports.items()}, index=metrics
    )
    for name in reports:
        if name != baseline:
            table[f"Δ {name}"] = table[name] - table[baseline]
    return Comparison(reports=reports, baseline=baseline, table=table, primary=primary, ablation=ablation)


def ablate(
    frame: pd.DataFrame,
    label: str,
    feature_groups: Mapping[str, Sequence[str] | str] | Sequence[str],
    **kwargs: Any,
) -> Comparison:
    """Does each group of features help? Evaluates every feature, then each group left out.

    ``feature_groups`` maps a group name to its columns, or lists feature view names whose
    ``view__feature`` columns form a group. Δ = without the group − with everything.
    """
    base = evaluate(frame, label, **kwargs)
    groups: dict[str, list[str]] = {}
    items = (
        feature_groups.items() if isinstance(feature_groups, Mapping) else ((g, g) for g in feature_groups)
    )
    for group, cols in items:
        if isinstance(cols, str):
            cols = [c for c in base.features if c == cols or c.startswith(f"{cols}__")]
        missing = [c for c in cols if c not in base.features]
        if missing or not cols:
            raise EvaluationError(
                f"feature group '{group}': "
                + (
                    f"column(s) {', '.join(missing)} are not features of this evaluation"
                    if missing
                    else "matches no feature column"
                )
                + f"; features are: {', '.join(base.features)}"
            )
        groups[str(group)] = list(cols)
    reports = {"all features": base}
    for group, cols in groups.items():
        rest = [f for f in base.features if f not in cols]
        if not rest:
            raise EvaluationError(
                f"feature group '{group}' holds every feature; nothing would be left to evaluate"
            )
        reports[f"without {group}"] = evaluate(frame, label, **{**kwargs, "features": rest})
    return _comparison(reports, baseline="all features", ablation=True)
