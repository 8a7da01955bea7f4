"""Altair charts for profiles, previews and evaluation reports.

Every chart is built from small, pre-aggregated data (histogram bins, curve points,
a capped sample), so the notebook never embeds a large frame in a chart spec.
Altair is imported here only, on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

    from .profile import ColumnProfile

__all__ = ["column_chart", "grid", "roc_chart", "residuals_chart", "importance_chart", "show"]

_SMALL = {"width": 170, "height": 70}


def show(chart: Any) -> None:
    """Display a chart as Vega-Lite JSON, which JupyterLab renders with its bundled Vega:
    no script from a CDN, so charts show offline too. Elsewhere the HTML renderer is used."""
    from IPython.display import display

    alt = _alt()
    schema = str(chart.to_dict().get("$schema", ""))
    version = schema.rsplit("/v", 1)[-1].split(".")[0] if "/v" in schema else ""
    bundle = {
        f"application/vnd.vegalite.v{version}+json": chart.to_dict(),
        "text/plain": f"<{type(chart).__name__}>",
    }
    if version != "5":
        bundle = dict(alt.renderers.get()(chart.to_dict()))
    display(bundle, raw=True)


def _alt() -> Any:
    import altair as alt

    return alt


def column_chart(col: ColumnProfile) -> alt.Chart | None:
    """A small histogram (numbers, times) or top-values bar chart (text, bool) of one column."""
    import pandas as pd

    alt = _alt()
    if col.bins:
        data = pd.DataFrame(col.bins, columns=["start", "end", "count"])
        if col.kind == "timestamp":
            data["start"] = pd.to_datetime(data["start"], unit="s")
            data["end"] = pd.to_datetime(data["end"], unit="s")
            x = alt.X("start:T", title=None)
            x2 = alt.X2("end:T")
        else:
            x = alt.X("start:Q", title=None, bin="binned")
            x2 = alt.X2("end:Q")
        return (
            alt.Chart(data, title=col.name)
            .mark_bar(opacity=0.85)
            .encode(
                x=x,
                x2=x2,
                y=alt.Y("count:Q", title=None, axis=alt.Axis(tickCount=3)),
                tooltip=["start", "end", "count"],
            )
            .properties(**_SMALL)
        )
    if col.top:
        data = pd.DataFrame(col.top, columns=["value", "count"])
        return (
            alt.Chart(data, title=col.name)
            .mark_bar(opacity=0.85)
            .encode(
                y=alt.Y("value:N", sort="-x", title=None),
                x=alt.X("count:Q", title=None, axis=alt.Axis(tickCount=3)),
                tooltip=["value", "count"],
            )
            .properties(**_SMALL)
        )
    return None


def grid(charts: Sequence[Any], columns: int = 4) -> alt.ConcatChart:
    """Charts side by side, ``columns`` per row, each keeping its own scales."""
    alt = _alt()
    return alt.concat(*charts, columns=columns).resolve_scale(x="independent", y="independent")


def roc_chart(
    fpr: Sequence[float], tpr: Sequence[float], auc: float, *, title: str = "ROC"
) -> alt.LayerChart:
    import numpy as np
    import pandas as pd

    alt = _alt()
    fpr_a, tpr_a = np.asarray(fpr), np.asarray(tpr)
    if len(fpr_a) > 400:  # thin the curve; keep its ends
        keep = np.unique(np.linspace(0, len(fpr_a) - 1, 400).round().astype(int))
        fpr_a, tpr_a = fpr_a[keep], tpr_a[keep]
    curve = pd.DataFrame({"false positive rate": fpr_a, "true positive rate": tpr_a})
    diagonal = pd.DataFrame({"false positive rate": [0.0, 1.0], "true positive rate": [0.0, 1.0]})
    line = alt.Chart(curve).mark_line().encode(x="false positive rate:Q", y="true positive rate:Q")
    chance = (
        alt.Chart(diagonal)
        .mark_line(strokeDash=[4, 4], color="gray", opacity=0.6)
        .encode(x="false positive rate:Q", y="true positive rate:Q")
    )
    return (chance + line).properties(title=f"{title} (AUC {auc:.3f})", width=240, height=220)


def residuals_chart(y_true: Any, y_pred: Any, *, max_points: int = 2000, seed: int = 0) -> alt.HConcatChart:
    """Predicted against actual, and the residual distribution."""
    import numpy as np
    import pandas as pd

    alt = _alt()
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if len(y_true) > max_points:
        idx = np.random.default_rng(seed).choice(len(y_true), max_points, replace=False)
        y_true, y_pred = y_true[idx], y_pred[idx]
    data = pd.DataFrame({"actual": y_true, "predicted": y_pred, "residual": y_true - y_pred})
    lo, hi = float(np.nanmin([y_true.min(), y_pred.min()])), float(np.nanmax([y_true.max(), y_pred.max()]))
    diagonal = pd.DataFrame({"actual": [lo, hi], "predicted": [lo, hi]})
    scatter = alt.Chart(data).mark_circle(size=12, opacity=0.4).encode(x="predicted:Q", y="actual:Q")
    ideal = (
        alt.Chart(diagonal).mark_line(strokeDash=[4, 4], color="gray").encode(x="predicted:Q", y="actual:Q")
    )
    hist = (
        alt.Chart(data)
        .mark_bar(opacity=0.85)
        .encode(x=alt.X("residual:Q", bin=alt.Bin(maxbins=40)), y=alt.Y("count():Q", title=None))
    )
    return alt.hconcat(
        (ideal + scatter).properties(title="predicted vs actual", width=240, height=220),
        hist.properties(title="residuals", width=240, height=220),
    )


def importance_chart(importance: pd.DataFrame, *, top: int = 20) -> alt.Chart:
    """Horizontal bars of permutation importance with its spread across repeats."""
    alt = _alt()
    data = importance.head(top).copy()
    data["low"] = data["importance"] - data["std"]
    data["high"] = data["importance"] + data["std"]
    bars = (
        alt.Chart(data)
        .mark_bar(opacity=0.85)
        .encode(
            y=alt.Y("feature:N", sort="-x", title=None),
            x=alt.X("importance:Q", title="drop in score when shuffled"),
            tooltip=[
                "feature",
                alt.Tooltip("importance:Q", format=".4f"),
                alt.Tooltip("std:Q", format=".4f"),
            ],
        )
    )
    errors = alt.Chart(data).mark_rule().encode(y=alt.Y("feature:N", sort="-x"), x="low:Q", x2="high:Q")
    height = max(60, 18 * len(data))
    return (bars + errors).properties(title="permutation importance", width=300, height=height)
