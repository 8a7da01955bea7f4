"""Fitting and scoring quick models for ``evaluate``: feature selection and typing,
splits that cannot leak the future, the model zoo, metrics and permutation importance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone, is_classifier, is_regressor
from sklearn.pipeline import Pipeline

from .errors import EvaluationError, did_you_mean

__all__ = [
    "build_model",
    "infer_task",
    "pick_features",
    "feature_frame",
    "make_splits",
    "score",
    "importance",
]


class _Categorize(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Numbers to float; text to pandas categories learned on the training rows (the most
    frequent ``max_categories``; anything else becomes missing), for native categorical
    support in HistGradientBoosting."""

    def __init__(self, max_categories: int = 250) -> None:
        self.max_categories = max_categories

    def fit(self, X: pd.DataFrame, y: Any = None) -> _Categorize:
        self.categories_ = {
            c: list(X[c].dropna().astype(str).value_counts().index[: self.max_categories])
            for c in X.columns
            if not pd.api.types.is_numeric_dtype(X[c])
        }
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out: dict[str, Any] = {}
        for c in X.columns:
            if c in self.categories_:
                values = X[c].astype(object).where(X[c].notna(), None)
                out[c] = pd.Categorical(
                    values.map(lambda v: None if v is None else str(v)), categories=self.categories_[c]
                )
            else:
                out[c] = X[c].astype("float64")
        return pd.DataFrame(out, index=X.index)


def _linear_preprocessing(X: pd.DataFrame) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    text = [c for c in X.columns if c not in numeric]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(
            (
                "num",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                        ),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if text:
        parts.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                        ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=50)),
                    ]
                ),
                text,
            )
        )
    return ColumnTransformer(parts)


def build_model(model: Any, task: str, X: pd.DataFrame, seed: int) -> tuple[Any, str]:
    if isinstance(model, str):
        key = model.lower()
        if key in ("auto", "hgb", "gbm"):
            from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

            cls = (
                HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
            )
            est = cls(max_iter=200, categorical_features="from_dtype", random_state=seed)
            return Pipeline([("prepare", _Categorize()), ("model", est)]), "HistGradientBoosting"
        if key == "linear":
            from sklearn.linear_model import LogisticRegression, Ridge

            lin = LogisticRegression(max_iter=2000) if task == "classification" else Ridge()
            return Pipeline([("prepare", _linear_preprocessing(X)), ("model", lin)]), type(lin).__name__
        raise EvaluationError(
            f"unknown model {model!r}; use 'auto' (HistGradientBoosting), 'linear' or a scikit-learn estimator"
        )
    if not hasattr(model, "fit") or not hasattr(model, "predict"):
        raise EvaluationError(
            f"model must be 'auto', 'linear' or a scikit-learn estimator, not {type(model).__name__}"
        )
    if task == "classification" and is_regressor(model) or task == "regression" and is_classifier(model):
        raise EvaluationError(
            f"model {type(model).__name__} does not fit a {task} label; pass a "
            f"{'classifier' if task == 'classification' else 'regressor'} or task='{'regression' if task == 'classification' else 'classification'}'"
        )
    name = type(model).__name__ if not isinstance(model, Pipeline) else type(model.steps[-1][1]).__name__
    if isinstance(model, Pipeline):
        return clone(model), name
    return Pipeline([("prepare", _linear_preprocessing(X)), ("model", clone(model))]), name


def infer_task(y: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "classification"
    values = y.dropna().unique()
    if pd.api.types.is_integer_dtype(y) and len(values) <= 20:
        return "classification"
    if set(np.asarray(values, dtype=float).tolist()) <= {0.0, 1.0}:
        return "classification"
    return "regression"


def pick_features(
    frame: pd.DataFrame, label: str, time_column: str | None, features: Sequence[str] | None
) -> tuple[list[str], dict[str, str]]:
    columns = [str(c) for c in frame.columns]
    dropped: dict[str, str] = {}
    if features is not None:
        features = [features] if isinstance(features, str) else list(features)
        for f in features:
            if f not in columns:
                raise EvaluationError(f"feature column '{f}' is not in the frame{did_you_mean(f, columns)}")
            if f == label:
                raise EvaluationError(
                    f"the label '{label}' cannot also be a feature; remove it from features"
                )
        return features, dropped
    chosen = []
    for c in columns:
        s = frame[c]
        if c == label:
            continue
        if c == time_column:
            dropped[c] = "the time column"
        elif pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
            dropped[c] = "a timestamp"
        elif c.lower() == "id" or c.lower().endswith("_id"):
            dropped[c] = "an identifier"
        elif s.isna().all():
            dropped[c] = "all null"
        elif s.dtype == object and s.dropna().map(lambda v: isinstance(v, (list, dict, np.ndarray))).any():
            dropped[c] = "not a scalar"
        else:
            chosen.append(c)
    if not chosen:
        raise EvaluationError(f"no feature columns left besides the label '{label}'; pass features=[...]")
    return chosen, dropped


def feature_frame(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    out: dict[str, Any] = {}
    for c in features:
        s = frame[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[c] = (s - pd.Timestamp(0, tz=getattr(s.dt, "tz", None))).dt.total_seconds()
        elif pd.api.types.is_timedelta64_dtype(s):
            out[c] = s.dt.total_seconds()
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            out[c] = s.astype("float64")
        else:
            out[c] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(out, index=frame.index)


def make_splits(
    split: str, y: pd.Series, times: pd.Series | None, task: str, test_size: float, folds: int, seed: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    n = len(y)
    if split == "time":
        assert times is not None
        order = np.argsort(times.to_numpy(), kind="stable")
        cut = times.to_numpy()[order][min(n - 1, int(n * (1 - test_size)))]
        train = np.flatnonzero(times.to_numpy() < cut)
        test = np.flatnonzero(times.to_numpy() >= cut)
        if len(train) == 0:
            raise EvaluationError(
                f"time split: every row is at or after {cut}, so nothing is earlier to train on; use split='random'"
            )
        desc = f"time split on '{times.name}': train before {pd.Timestamp(cut).floor('s')}, test from then on"
        return [(train, test)], desc
    if split == "random":
        from sklearn.model_selection import train_test_split

        stratify = y if task == "classification" and y.value_counts().min() >= 2 else None
        train, test = train_test_split(
            np.arange(n), test_size=test_size, random_state=seed, stratify=stratify
        )
        return [(np.sort(train), np.sort(test))], f"random split, {test_size:.0%} test"
    from sklearn.model_selection import KFold, StratifiedKFold

    kf: Any = (
        StratifiedKFold(folds, shuffle=True, random_state=seed)
        if task == "classification" and y.value_counts().min() >= folds
        else KFold(folds, shuffle=True, random_state=seed)
    )
    return [(tr, te) for tr, te in kf.split(np.zeros(n), y)], f"{folds}-fold cross-validation"


def score(
    task: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray | None
) -> dict[str, float]:
    from sklearn import metrics as m

    if task == "regression":
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y, pred))),
            "mae": float(m.mean_absolute_error(y, pred)),
            "r2": float(m.r2_score(y, pred)) if len(y) > 1 else float("nan"),
        }
    assert proba is not None and classes is not None
    out = {
        "auc": float("nan"),
        "log_loss": float(m.log_loss(y, proba, labels=classes)),
        "accuracy": float(m.accuracy_score(y, pred)),
    }
    if len(np.unique(y)) > 1:
        if len(classes) == 2:
            out["auc"] = float(m.roc_auc_score(y == classes[1], proba[:, 1]))
            out["average_precision"] = float(m.average_precision_score(y == classes[1], proba[:, 1]))
        elif set(np.unique(y)) == set(classes):
            out["auc"] = float(m.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    return out


def importance(
    model: Any, X: pd.DataFrame, y: np.ndarray, task: str, classes: np.ndarray | None, seed: int, rows: int
) -> pd.DataFrame:
    from sklearn.inspection import permutation_importance

    if len(X) > rows:
        idx = np.random.default_rng(seed).choice(len(X), rows, replace=False)
        X, y = X.iloc[idx], y[idx]
    if task == "regression":
        scoring = "neg_root_mean_squared_error"
    elif classes is not None and len(classes) == 2 and len(np.unique(y)) == 2:
        scoring = "roc_auc"
    else:
        scoring = "accuracy"
    result = permutation_importance(model, X, y, scoring=scoring, n_repeats=3, random_state=seed, n_jobs=1)
    out = pd.DataFrame(
        {"feature": list(X.columns), "importance": result.importances_mean, "std": result.importances_std}
    )
    return out.sort_values("importance", ascending=False, ignore_index=True)
