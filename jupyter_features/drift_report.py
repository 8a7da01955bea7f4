"""DriftReport: what a drift check found, as a table, Altair charts and a notebook badge.

``drift_detection`` computes the comparisons; this module orders them into a table (drifted
first, then by PSI), keeps each feature's two distributions, and renders them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import render
from .drift_stats import Comparison
from .errors import DriftError

if TYPE_CHECKING:
    import altair as alt

__all__ = ["DriftReport", "TABLE_COLUMNS", "build_report", "table_row"]

#: The columns of ``DriftReport.table``, in order.
TABLE_COLUMNS = [
    "feature", "kind", "psi", "ks", "ks_p_value", "chi2", "chi2_p_value",
    "null_rate_reference", "null_rate_current", "n_reference", "n_current", "drifted",
]  # fmt: skip
_CHARTS_SHOWN = 12  # charts drawn under the table: every drifted feature, then others up to this


@dataclass
class DriftReport:
    """What ``drift`` found: ``table`` (one row per feature, drifted first, then by PSI),
    ``drifted`` and ``ok``, ``charts`` (Altair), and per feature the two ``distributions``
    (bin, reference and current shares and counts). Shows a badge, the table and the charts
    in a notebook."""

    table: pd.DataFrame
    distributions: dict[str, pd.DataFrame]
    threshold: float
    reference: str  # what the reference is, in words
    current: str
    method: str  # how the bins were made
    skipped: dict[str, str] = field(default_factory=dict)  # feature → why it was not compared

    @property
    def drifted(self) -> list[str]:
        """The drifted features, most drifted first."""
        return [str(f) for f in self.table.loc[self.table["drifted"], "feature"]]

    @property
    def ok(self) -> bool:
        """True when no feature drifted."""
        return not bool(self.table["drifted"].any())

    @property
    def charts(self) -> dict[str, alt.Chart]:
        """One Altair chart per feature, in table order: both distributions overlaid
        (shares per quantile bin of the reference for numbers, per category otherwise)."""
        table = self.table
        return {
            str(f): _distribution_chart(str(f), self.distributions[str(f)], float(psi), bool(drifted))
            for f, psi, drifted in zip(table["feature"], table["psi"], table["drifted"], strict=True)
        }

    def html(self) -> str:
        n, k = len(self.table), len(self.drifted)
        cls, mark = ("bad", "⚠") if k else ("good", "✓")
        badge = (
            f"<div class='{cls}' style='font-weight:600;font-size:13.5px;margin:2px 0'>"
            f"{mark} {k} of {n} feature{'' if n == 1 else 's'} drifted</div>"
        )
        meta = (
            f"<div class='meta'>reference: {render.esc(self.reference)} · current: {render.esc(self.current)}"
            f"<br>drifted when PSI &gt; {self.threshold:g} · {render.esc(self.method)}</div>"
        )
        rows = [_html_row(row, self.threshold) for row in self.table.itertuples(index=False)]
        header = [
            "feature",
            "kind",
            "PSI",
            "KS / χ²",
            "p-value",
            "null rate (ref → cur)",
            "values (ref / cur)",
            "",
        ]
        notes = ""
        if self.skipped:
            notes += "<div class='meta'>not compared: " + render.esc(
                "; ".join(f"{f} ({why})" for f, why in self.skipped.items())
            ) + "</div>"  # fmt: skip
        if n > max(k, _CHARTS_SHOWN):
            notes += (
                f"<div class='meta'>charts below: the drifted features, then the next ones up to "
                f"{max(k, _CHARTS_SHOWN)}; every feature's chart is in .charts</div>"
            )
        return badge + meta + render.table(header, rows, raw=range(len(header))) + notes

    def _repr_html_(self) -> str:
        return render.wrap(self.html())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._repr_html_()))
        charts = list(self.charts.values())[: max(len(self.drifted), _CHARTS_SHOWN)]
        if charts:
            from .charts import grid, show

            show(grid(charts, columns=3).resolve_scale(color="independent"))

    def __repr__(self) -> str:
        drifted = self.drifted
        shown = ", ".join(drifted[:5]) + (", …" if len(drifted) > 5 else "")
        return (
            f"DriftReport({len(drifted)} of {len(self.table)} features drifted"
            + (f": {shown}" if drifted else "")
            + f"; threshold PSI > {self.threshold:g})"
        )


def _fmt_stat(value: float, approximate: bool = False) -> str:
    if value != value:
        return "–"
    return ("≈" if approximate else "") + f"{value:.3f}"


def _fmt_p(value: float) -> str:
    if value != value:
        return "–"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _html_row(row: Any, threshold: float) -> list[str]:
    name = render.esc(row.feature)
    psi = float(row.psi)
    bar = render.bar(min(psi / (2 * threshold), 1.0) if psi == psi else 0.0, width=50, negative=row.drifted)
    if row.kind == "numeric":
        test = "KS " + _fmt_stat(
            float(row.ks), approximate=row.ks == row.ks and row.ks_p_value != row.ks_p_value
        )
        p = _fmt_p(float(row.ks_p_value))
    else:
        test, p = "χ² " + _fmt_stat(float(row.chi2)), _fmt_p(float(row.chi2_p_value))
    nulls = (
        f"{render.fmt_rate(float(row.null_rate_reference))} → {render.fmt_rate(float(row.null_rate_current))}"
    )
    if row.null_rate_reference != row.null_rate_reference:
        nulls = f"– → {render.fmt_rate(float(row.null_rate_current))}"
    shown_psi = _fmt_stat(psi)
    if psi != psi and row.n_reference != row.n_current:  # one side has no values
        shown_psi = "no current values" if row.n_current == 0 else "no reference values"
    return [
        f"<b class='bad'>{name}</b>" if row.drifted else name,
        render.esc(row.kind),
        f"{bar} {shown_psi}",
        test,
        p,
        nulls,
        f"{int(row.n_reference):,} / {int(row.n_current):,}",
        "<span class='bad'>drifted</span>" if row.drifted else "<span class='good'>ok</span>",
    ]


def _distribution_chart(feature: str, data: pd.DataFrame, psi: float, drifted: bool) -> alt.Chart:
    """Reference and current shares per bin, overlaid (bins empty on both sides left out)."""
    import altair as alt

    shown = data[(data["reference_count"] > 0) | (data["current_count"] > 0)]
    long = shown.melt(
        id_vars=["bin"], value_vars=["reference", "current"], var_name="frame", value_name="share"
    )
    title = f"{feature} · PSI {psi:.3f}" + (" · drifted" if drifted else "") if psi == psi else feature
    return (
        alt.Chart(long, title=title)
        .mark_bar(opacity=0.55)
        .encode(
            x=alt.X(
                "bin:N", sort=list(shown["bin"]), title=None, axis=alt.Axis(labelAngle=-40, labelLimit=90)
            ),
            y=alt.Y("share:Q", stack=None, title=None, axis=alt.Axis(format="%", tickCount=3)),
            color=alt.Color(
                "frame:N",
                scale=alt.Scale(
                    domain=["reference", "current"], range=["#9e9e9e", "#c62828" if drifted else "#1976d2"]
                ),
                legend=alt.Legend(title=None, orient="top"),
            ),
            tooltip=["bin", "frame", alt.Tooltip("share:Q", format=".2%")],
        )
        .properties(width=240, height=110)
    )


def build_report(
    rows: list[dict[str, Any]],
    comparisons: dict[str, Comparison],
    *,
    threshold: float,
    reference: str,
    current: str,
    method: str,
    skipped: dict[str, str],
) -> DriftReport:
    """The report of ``rows`` (``table_row``) and their comparisons; DriftError when there are none."""
    if not rows:
        notes = "; ".join(f"{f}: {why}" for f, why in skipped.items()) or "no features"
        raise DriftError(f"drift: no feature could be compared ({notes})")

    def order(row: dict[str, Any]) -> tuple[bool, float, str]:
        psi = row["psi"]
        return (not row["drifted"], -psi if psi == psi else math.inf, row["feature"])

    ordered = sorted(rows, key=order)
    table = pd.DataFrame(ordered, columns=TABLE_COLUMNS)
    table["drifted"] = table["drifted"].astype(bool)
    distributions = {}
    for name, comp in comparisons.items():
        nr, nc = comp.n_reference, comp.n_current
        distributions[name] = pd.DataFrame(
            {
                "bin": comp.bins,
                "reference": comp.reference / nr if nr else np.zeros(len(comp.bins)),
                "current": comp.current / nc if nc else np.zeros(len(comp.bins)),
                "reference_count": comp.reference,
                "current_count": comp.current,
            }
        )
    return DriftReport(
        table=table, distributions=distributions, threshold=threshold, reference=reference,
        current=current, method=method, skipped=skipped,
    )  # fmt: skip


def table_row(
    feature: str, comp: Comparison, null_reference: float, null_current: float, threshold: float
) -> dict[str, Any]:
    """One row of ``DriftReport.table``."""
    nr, nc = comp.n_reference, comp.n_current
    return {
        "feature": feature, "kind": comp.kind, "psi": comp.psi, "ks": comp.ks, "ks_p_value": comp.ks_p_value,
        "chi2": comp.chi2, "chi2_p_value": comp.chi2_p_value, "null_rate_reference": null_reference,
        "null_rate_current": null_current, "n_reference": nr, "n_current": nc,
        # A feature that has values on one side only (e.g. all null now) drifted, whatever PSI says.
        "drifted": bool(comp.psi > threshold) or ((nr == 0) != (nc == 0)),
    }  # fmt: skip
