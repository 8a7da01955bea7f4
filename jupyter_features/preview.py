"""Feature view previews: sample rows, per-feature statistics and histograms, lineage,
and what changed since the previous definition of the same name.

``FeatureView.preview()`` and ``%%feature`` show one. The view's SQL runs once into a
temporary DuckDB table; statistics come from a sample of it when it is large.
"""

from __future__ import annotations

import difflib
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import render
from .errors import FeatureViewError
from .featureview import FeatureView, format_ttl
from .profile import Profile, first_row, profile_table
from .sqltext import quote

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

    from .workspace import Workspace

__all__ = ["FeatureViewPreview", "ViewDiff", "diff_views", "preview"]


@dataclass(frozen=True)
class ViewDiff:
    """What changed between two definitions of a feature view."""

    changes: list[str]
    sql_diff: list[str]
    same_definition: bool  # the same version would be kept by the registry

    def __bool__(self) -> bool:
        return bool(self.changes)


def diff_views(old: FeatureView, new: FeatureView) -> ViewDiff:
    """Describe, in words, how ``new`` differs from ``old``."""
    changes: list[str] = []
    old_types, new_types = old.schema, new.schema
    added = [f for f in new_types if f not in old_types]
    removed = [f for f in old_types if f not in new_types]
    retyped = [
        f"{f} ({old_types[f]} → {new_types[f]})"
        for f in new_types
        if f in old_types and old_types[f] != new_types[f]
    ]
    if added:
        changes.append("added feature(s): " + ", ".join(added))
    if removed:
        changes.append("removed feature(s): " + ", ".join(removed))
    if retyped:
        changes.append("changed type: " + ", ".join(retyped))
    for label, a, b in (
        ("entity", ", ".join(old.entity), ", ".join(new.entity)),
        ("timestamp", old.timestamp, new.timestamp),
        ("created timestamp", old.created_timestamp or "none", new.created_timestamp or "none"),
        ("ttl", format_ttl(old.ttl) or "none", format_ttl(new.ttl) or "none"),
        ("windows", ", ".join(old.windows) or "none", ", ".join(new.windows) or "none"),
        ("owner", old.owner or "none", new.owner or "none"),
        ("tags", ", ".join(old.tags) or "none", ", ".join(new.tags) or "none"),
    ):
        if a != b:
            changes.append(f"{label}: {a} → {b}")
    if old.description != new.description:
        changes.append("description changed")
    old_sql, new_sql = old.normalized_sql or old.sql, new.normalized_sql or new.sql
    sql_diff: list[str] = []
    if old_sql != new_sql:
        changes.append("SQL changed")
        sql_diff = list(
            difflib.unified_diff(
                old_sql.splitlines(), new_sql.splitlines(), "previous", "now", n=1, lineterm=""
            )
        )[2:]
    return ViewDiff(
        changes=changes, sql_diff=sql_diff, same_definition=old.definition_hash == new.definition_hash
    )


def _previous(view: FeatureView, ws: Workspace) -> FeatureView | None:
    history = ws.history(view.name)
    for i in range(len(history) - 1, -1, -1):  # the view itself, or its copy pinned to a version
        if history[i] is view or history[i].with_version(view.version) == view:
            return history[i - 1] if i > 0 else None
    return history[-1] if history else None


@dataclass
class FeatureViewPreview:
    """A rendered look at a feature view's data; shows itself in a notebook."""

    view: FeatureView
    rows: int
    entities: int
    first: Any
    last: Any
    sample: pd.DataFrame
    profile: Profile
    previous: FeatureView | None
    diff: ViewDiff | None
    seconds: float
    export_button: bool = True
    workspace: Workspace | None = field(default=None, repr=False, compare=False)
    #: A windowed view's slide: keys, "at" and every feature for a few entities at a few times.
    slide: pd.DataFrame | None = None
    #: The slide as a line chart (windowed views with numeric aggregates).
    slide_chart: alt.FacetChart | None = field(default=None, repr=False)
    _charts: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def stats(self) -> pd.DataFrame:
        """Per-feature type, null rate, distinct count, min, max and mean."""
        frame = self.profile.to_frame()
        types = self.view.schema
        frame["type"] = [types.get(c, t) for c, t in zip(frame["column"], frame["type"], strict=True)]
        return frame.rename(columns={"column": "feature"})

    @property
    def charts(self) -> dict[str, alt.Chart]:
        """An Altair histogram (or top-values chart) per feature."""
        if self._charts is None:
            self._charts = self.profile.charts
        return self._charts

    def chart(self, columns: int = 4) -> alt.ConcatChart | None:
        from .charts import grid

        charts = list(self.charts.values())
        return grid(charts, columns=columns) if charts else None

    def html(self) -> str:
        v = self.view
        tags = "".join(f'<span class="tag">{render.esc(t)}</span>' for t in v.tags)
        facts = [
            f"entity <b>{render.esc(', '.join(v.entity))}</b>",
            f"timestamp <b>{render.esc(v.timestamp)}</b>",
        ]
        if v.created_timestamp:
            facts.append(f"created <b>{render.esc(v.created_timestamp)}</b>")
        if v.ttl:
            facts.append(f"ttl <b>{format_ttl(v.ttl)}</b>")
        if v.windows:
            facts.append(f"windows <b>{render.esc(', '.join(v.windows))}</b>")
        if v.owner:
            facts.append(f"owner <b>{render.esc(v.owner)}</b>")
        head = f"<h4>feature view {render.esc(v.name)}</h4><div class='meta'>{' · '.join(facts)} {tags}</div>"
        if v.description:
            head += f"<div>{render.esc(v.description)}</div>"
        span = (
            f" · {render.fmt_value(self.first)} → {render.fmt_value(self.last)}"
            if self.first is not None
            else ""
        )
        head += (
            f"<div class='meta'>{self.rows:,} rows · {self.entities:,} entities{span} · "
            f"computed in {render.fmt_seconds(self.seconds)}"
            + (f" · statistics over a sample of {self.profile.sample:,}" if self.profile.sample else "")
            + (" · statistics of each entity's windows at the last event time" if v.windows else "")
            + "</div>"
        )
        return head + self._changes_html() + self._features_html() + self._sample_html()

    def _changes_html(self) -> str:
        if self.previous is None:
            return "<div class='meta'>first definition in this session</div>"
        assert self.diff is not None
        if not self.diff.changes:
            return "<div class='meta'>unchanged since the previous definition</div>"
        items = "".join(f"<li>{render.esc(c)}</li>" for c in self.diff.changes)
        out = f"<h4>changed since the previous definition</h4><ul style='margin:2px 0'>{items}</ul>"
        if self.diff.sql_diff:
            lines = []
            for line in self.diff.sql_diff:
                cls = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
                lines.append(f"<span class='{cls}'>{render.esc(line)}</span>" if cls else render.esc(line))
            out += "<pre>" + "\n".join(lines) + "</pre>"
        return out

    def _features_html(self) -> str:
        header = ["feature", "type", "nulls", "distinct", "min", "max", "mean", "reads", "description"]
        rows = []
        for f in self.view.features:
            try:
                c = self.profile.column(f.name)
            except KeyError:
                continue
            nulls = f"{render.bar(c.null_rate, width=40)} {render.fmt_rate(c.null_rate)}" if c.nulls else "0"
            reads = ", ".join(self.view.lineage.get(f.name, []))
            mean = "" if c.mean is None else c.mean
            rows.append([f.name, f.type, nulls, c.distinct, c.min, c.max, mean, reads, f.description])
        if not any(f.description for f in self.view.features):
            header, rows = header[:-1], [r[:-1] for r in rows]
        return "<h4>features</h4>" + render.table(header, rows, raw=(2,))

    def _sample_html(self) -> str:
        if self.slide is not None:
            entities = self.slide[list(self.view.entity)].drop_duplicates()
            title = (
                f"the windows sliding: {len(entities)} entities with the most rows, each window's value "
                f"at {self.slide['at'].nunique()} times over the data (rows in (at - window, at])"
            )
            return f"<h4>{render.esc(title)}</h4>" + render.frame_table(
                self.slide, head=len(self.slide), tail=0
            )
        return "<h4>sample rows</h4>" + render.frame_table(self.sample, head=len(self.sample), tail=0)

    def _repr_html_(self) -> str:
        return render.wrap(self.html())

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._repr_html_()))
        from .charts import show

        if self.slide_chart is not None:
            show(self.slide_chart)
        chart = self.chart()
        if chart is not None:
            show(chart)
        if self.export_button and self.workspace is not None:
            from .widgets.export import ExportButton

            display(ExportButton(self.workspace, [self.view.name]))

    def __repr__(self) -> str:
        return f"FeatureViewPreview({self.view.name}, rows={self.rows}, features={self.view.feature_names})"


def preview(
    view: FeatureView,
    ws: Workspace,
    *,
    rows: int = 8,
    max_rows: int | None = 200_000,
    export_button: bool = True,
) -> FeatureViewPreview:
    """Run the view's SQL on ``ws``'s DuckDB and summarise it: ``rows`` sample rows, statistics,
    what changed since the previous definition in ``ws``."""
    import duckdb

    if view.windows:
        return _windowed_preview(view, ws, export_button=export_button, max_rows=max_rows)
    table = f"__jf_preview_{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    with ws.duckdb.feature_connection() as con:
        try:
            con.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM ({view.sql}\n) AS __jf_v")
        except duckdb.Error as exc:
            raise FeatureViewError(
                f"feature view '{view.name}': DuckDB failed running its SQL: {str(exc).splitlines()[0]}"
            ) from exc
        try:
            keys = ", ".join(quote(k) for k in view.entity)
            ts = quote(view.timestamp)
            count, entities, first, last = first_row(
                con, f"SELECT count(*), count(DISTINCT ({keys})), min({ts}), max({ts}) FROM {table}"
            ) or (0, 0, None, None)
            sample = con.execute(
                f"SELECT * FROM {table} USING SAMPLE reservoir({int(rows)} ROWS) REPEATABLE (7) ORDER BY {ts}"
            ).df()
            stats = profile_table(con, table, columns=view.feature_names, max_rows=max_rows)
        finally:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    previous = _previous(view, ws)
    return FeatureViewPreview(
        view=view, rows=int(count), entities=int(entities), first=first, last=last, sample=sample,
        profile=stats, previous=previous, diff=diff_views(previous, view) if previous is not None else None,
        seconds=time.perf_counter() - started, export_button=export_button, workspace=ws,
    )  # fmt: skip


def _windowed_preview(
    view: FeatureView, ws: Workspace, *, export_button: bool, max_rows: int | None
) -> FeatureViewPreview:
    """A windowed view's preview: its rows (count, entities, time span) from the relation its
    windows aggregate, the statistics of each entity's windows at the last event time, and the
    slide (``window_preview``): a few entities' windows at a few times, as a table and a chart."""
    import duckdb

    from .engines.duckdb.windows import relation_types, windows_at_last_event_sql
    from .sqltext import EVENT_TS
    from .window_preview import slide_chart, window_slide

    plan = view.window_plan()
    assert plan is not None
    table = f"__jf_preview_{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    with ws.duckdb.feature_connection() as con:
        try:
            types = relation_types(con, plan)
            keys = ", ".join(quote(k) for k in view.entity)
            count, entities, first, last = first_row(
                con,
                f"SELECT count(*), count(DISTINCT ({keys})), min({EVENT_TS}), max({EVENT_TS}) "
                f"FROM ({plan.relation_sql})",
            ) or (0, 0, None, None)
            con.execute(f"CREATE TEMP TABLE {table} AS {windows_at_last_event_sql(plan, types)}")
            try:
                stats = profile_table(con, table, columns=view.feature_names, max_rows=max_rows)
            finally:
                con.execute(f"DROP TABLE IF EXISTS {table}")
            slide = window_slide(con, plan)
        except duckdb.Error as exc:
            raise FeatureViewError(
                f"feature view '{view.name}': DuckDB failed running its SQL: {str(exc).splitlines()[0]}"
            ) from exc
    previous = _previous(view, ws)
    return FeatureViewPreview(
        view=view, rows=int(count), entities=int(entities), first=first, last=last, sample=slide,
        profile=stats, previous=previous, diff=diff_views(previous, view) if previous is not None else None,
        seconds=time.perf_counter() - started, export_button=export_button, workspace=ws, slide=slide,
        slide_chart=slide_chart(slide, plan, types),
    )  # fmt: skip
