"""Health reports in the notebook: a badge, a summary per view, the first differences, a chart.

``ws.check_online`` returns an ``OnlineReport`` and ``ws.check_model`` a ``ModelReport``:
the core results (``online_checks``) that also render themselves. ``check`` runs both kinds
for a list of names — a model when the registry knows it as one, else a feature view — for
``%features check`` and ``jupyter-features check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from . import render
from .model_checks import ModelCheck
from .online_checks import OnlineCheck

if TYPE_CHECKING:
    import altair as alt

__all__ = ["OnlineReport", "ModelReport", "HealthReports", "check", "badge"]

_BADGE_STYLE = """<style>
.jf-out .jf-badge{display:inline-block;padding:2px 10px;margin:2px 0 6px 0;border-radius:10px;font-weight:600;
 border:1px solid currentColor}
</style>"""

#: First rows of each frame shown in a notebook (the frames hold more).
SHOWN = 10


def badge(ok: bool, text: str) -> str:
    """A one-line badge: green with a check mark when ``ok``, red with a cross when not."""
    cls = "good" if ok else "bad"
    return f'<div class="jf-badge {cls}">{"✓" if ok else "✗"} {render.esc(text)}</div>'


class OnlineReport(OnlineCheck):
    """``ws.check_online``'s answer: ``ok``, ``summary``, ``mismatches``, ``missing``, ``extra``;
    shows a badge, the summary per view and the first differences in a notebook."""

    @classmethod
    def of(cls, check: OnlineCheck) -> OnlineReport:
        return cls(**{f.name: getattr(check, f.name) for f in fields(check)})

    def headline(self) -> str:
        views = len(self.checks)
        if self.ok:
            entities = sum(c.entities for c in self.checks)
            return (
                f"{self.store} serves what the offline recompute expects: {entities:,} entities in "
                f"{views} view{'s' if views != 1 else ''}"
            )
        values = sum(c.values for c in self.checks)
        missing = sum(c.missing for c in self.checks)
        extra = sum(c.extra for c in self.checks)
        problems = [c.view for c in self.checks if c.problem]
        parts = [f"{values:,} values differ", f"{missing:,} entities missing", f"{extra:,} extra"]
        if problems:
            parts.append(f"not compared: {', '.join(problems)}")
        bad = [c.view for c in self.checks if not c.ok]
        return f"{self.store} differs from the offline recompute in {', '.join(bad)}: " + ", ".join(parts)

    def chart(self) -> alt.Chart | None:
        """Differing values per feature (None when nothing differs)."""
        import pandas as pd

        rows = [
            {"feature": f"{c.view}:{f}", "values": n} for c in self.checks for f, n in c.per_feature.items()
        ]
        if not rows:
            return None
        import altair as alt

        data = pd.DataFrame(rows)
        return (
            alt.Chart(data, title="differing values per feature")
            .mark_bar(opacity=0.85, color="#c62828")
            .encode(
                y=alt.Y("feature:N", sort="-x", title=None),
                x=alt.X("values:Q", title=None, axis=alt.Axis(tickCount=3)),
                tooltip=["feature", "values"],
            )
            .properties(width=220, height=max(40, 16 * len(data)))
        )

    def html(self) -> str:
        rows = []
        for c in self.checks:
            state = badge(True, "ok") if c.ok else badge(False, "not ok")
            end = render.fmt_value(c.end) if c.end else ""
            served = (
                ""
                if c.version is None
                else f"v{c.version}" + (f" (view v{c.view_version})" if c.view_version is not None else "")
            )
            counts: list[Any] = (
                ["", "", "", "", ""]
                if c.problem
                else [c.entities, c.mismatched, c.values, c.missing, c.extra]
            )
            rows.append([c.view, state, served, end, *counts, c.problem])
        header = ["view", "", "online version", "end", "entities", "entities differing", "values differing",
                  "missing", "extra", "note"]  # fmt: skip
        out = badge(self.ok, self.headline()) + render.table(header, rows, raw=(1,))
        sampled = {c.sample for c in self.checks if c.sample is not None}
        if sampled:
            out += f"<div class='meta'>a random sample of {', '.join(f'{n:,}' for n in sampled)} entities per view</div>"
        for name, title in (("mismatches", "first differing values"), ("missing", "first missing entities"),
                            ("extra", "first extra entities")):  # fmt: skip
            frame = getattr(self, name)
            if len(frame):
                frame = frame.dropna(axis=1, how="all") if name != "mismatches" else frame
                out += f"<h4>{title}</h4>" + render.frame_table(frame.head(SHOWN), head=SHOWN, tail=0)
        return out

    def _repr_html_(self) -> str:
        return render.wrap(_BADGE_STYLE, self.html())

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._repr_html_()))
        chart = self.chart()
        if chart is not None:
            from .charts import show

            show(chart)


class ModelReport(ModelCheck):
    """``ws.check_model``'s answer: ``ok`` and ``table``; shows a badge and the table in a notebook."""

    @classmethod
    def of(cls, check: ModelCheck) -> ModelReport:
        return cls(**{f.name: getattr(check, f.name) for f in fields(check)})

    def headline(self) -> str:
        if self.ok:
            return f"{self.model}: every feature it uses is online in {self.store}, at the version it used, fresh"
        bad = [v.view for v in self.views if not v.ok]
        return f"{self.model} is not ready in {self.store}: {', '.join(bad)}"

    def html(self) -> str:
        rows = []
        for v in self.views:
            state = badge(True, "ok") if v.ok else badge(False, "not ok")
            fresh = "" if v.fresh is None else ("yes" if v.fresh else "no")
            online = (
                f"v{v.online_version}"
                if v.online and v.online_version is not None
                else ("yes" if v.online else "no")
            )
            rows.append([
                v.view, state, ", ".join(v.features), v.version_used, v.latest_version, online,
                render.fmt_value(v.end) if v.end else "", v.ttl or "no TTL", fresh,
                ", ".join(v.missing_features), v.note(),
            ])  # fmt: skip
        header = ["view", "", "features used", "version used", "latest version", "online", "end of last run",
                  "ttl", "fresh", "missing features", "note"]  # fmt: skip
        return badge(self.ok, self.headline()) + render.table(header, rows, raw=(1,))

    def _repr_html_(self) -> str:
        return render.wrap(_BADGE_STYLE, self.html())


class HealthReports(list[Any]):
    """The reports of ``check``: one per model, one for the feature views; ``ok`` when all are."""

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self)

    def lines(self) -> list[str]:
        return [line for report in self for line in report.lines()]

    def _repr_html_(self) -> str:
        return render.wrap(_BADGE_STYLE, "".join(report.html() for report in self))

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._repr_html_()))
        for report in self:
            chart = report.chart() if isinstance(report, OnlineReport) else None
            if chart is not None:
                from .charts import show

                show(chart)


def check(
    ws: Any,
    names: Sequence[str],
    *,
    store: str | None = None,
    sample: int | None = None,
    progress: bool = True,
) -> HealthReports:
    """Check each name of ``names`` against the online store of ``ws``: a model the registry knows
    (``ws.check_model``), else a feature view (``ws.check_online``, all views in one report)."""
    registry = ws.registry_or_none()
    reports: list[Any] = []
    views: list[str] = []
    for name in names:
        is_model = False
        if registry is not None and "@" not in name:
            try:
                is_model = bool(registry.usage(name))
            except Exception:  # noqa: BLE001 - a registry that cannot say makes it a view name
                is_model = False
        if is_model:
            reports.append(ws.check_model(name, store=store))
        else:
            views.append(name)
    if views:
        reports.append(ws.check_online(views, store=store, sample=sample, progress=progress))
    return HealthReports(reports)
