"""The feature browser: search and facet filters over the session's and the registry's
feature views, a table of matching features, and a detail pane for one view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import render
from ..featureview import FeatureView, format_ttl
from ..schema import Feature
from .export import ExportButton, message_of

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["CatalogEntry", "catalog", "search_catalog", "facets", "FeatureBrowser"]

ANY = "(any)"


@dataclass(frozen=True)
class CatalogEntry:
    """A feature view the browser can show; ``origin`` is 'session' or 'registry'."""

    view: FeatureView
    origin: str
    stats: Mapping[str, Any] | None = None  # per-feature statistics the export recorded

    @property
    def name(self) -> str:
        return self.view.name


def recorded_stats_html(entry: CatalogEntry) -> str:
    """The statistics recorded with a registry version, as the profile table shows them."""
    from ..profile import ColumnProfile, Profile, kind_of_feature_type

    columns = []
    for f in entry.view.features:
        s = (entry.stats or {}).get(f.name)
        if not isinstance(s, Mapping):
            continue
        try:
            columns.append(
                ColumnProfile(
                    name=f.name,
                    dtype=f.type,
                    kind=kind_of_feature_type(f.type),
                    count=int(s.get("count") or 0),
                    nulls=int(s.get("nulls") or 0),
                    distinct=s.get("distinct"),
                    min=s.get("min"),
                    max=s.get("max"),
                    mean=s.get("mean"),
                    top=[(v, int(n)) for v, n in s.get("top") or []],
                )
            )
        except (TypeError, ValueError):  # a hand-written or older record: skip what does not fit
            continue
    if not columns:
        return ""
    rows = max(c.count + c.nulls for c in columns)
    caption = (
        f"recorded with version {entry.view.version} at export, over {rows:,} rows (at most 100,000 sampled)"
    )
    return Profile(rows=rows, columns=columns).html(caption=caption)


def _registry_views(ws: Workspace) -> list[tuple[FeatureView, Mapping[str, Any] | None]]:
    """The registry's latest views with their recorded statistics, or [] when no registry
    answers (browsing never fails on it)."""
    registry = ws.registry_or_none()
    lister = getattr(registry, "list", None)
    if lister is None:
        return []
    try:
        records = list(lister())
    except Exception:  # noqa: BLE001 - an unreachable registry only hides its views
        return []
    views: list[tuple[FeatureView, Mapping[str, Any] | None]] = []
    for record in records:
        try:
            if isinstance(record, str):
                record = registry.get(record)
            spec = getattr(record, "spec", record)
            if isinstance(spec, FeatureView):
                views.append((spec, None))
            elif isinstance(spec, dict) and "sql" in spec:
                stats = spec.get("stats") if isinstance(spec.get("stats"), Mapping) else None
                views.append((FeatureView.from_spec(spec, version=getattr(record, "version", None)), stats))
        except Exception:  # noqa: BLE001 - skip a record this version cannot read
            continue
    return views


def catalog(ws: Workspace, *, registry: bool = True) -> list[CatalogEntry]:
    """Views defined in this session, then the registry's views not redefined here."""
    entries = [CatalogEntry(v, "session") for v in ws.views.values()]
    if registry:
        seen = {e.name for e in entries}
        entries += [CatalogEntry(v, "registry", st) for v, st in _registry_views(ws) if v.name not in seen]
    return sorted(entries, key=lambda e: e.name)


def facets(entries: Iterable[CatalogEntry]) -> dict[str, list[str]]:
    """The values each facet filter can take."""
    out: dict[str, set[str]] = {"entity": set(), "type": set(), "owner": set(), "tag": set()}
    for e in entries:
        out["entity"].add(", ".join(e.view.entity))
        out["type"].update(f.type for f in e.view.features)
        if e.view.owner:
            out["owner"].add(e.view.owner)
        out["tag"].update(e.view.tags)
    return {k: sorted(v) for k, v in out.items()}


def _matches_text(view: FeatureView, feature: Feature, words: list[str]) -> bool:
    hay = " ".join(
        [view.name, feature.name, view.description, feature.description, view.owner, " ".join(view.tags)]
    ).lower()
    return all(w in hay for w in words)


def search_catalog(
    entries: Iterable[CatalogEntry],
    text: str = "",
    *,
    entity: str | None = None,
    type: str | None = None,
    owner: str | None = None,
    tag: str | None = None,
) -> list[tuple[CatalogEntry, list[Feature]]]:
    """Entries matching every filter, each with its matching features (all words of ``text``)."""
    words = text.lower().split()
    out = []
    for e in entries:
        v = e.view
        if entity and ", ".join(v.entity) != entity:
            continue
        if owner and v.owner != owner:
            continue
        if tag and tag not in v.tags:
            continue
        feats = [f for f in v.features if (not type or f.type == type) and _matches_text(v, f, words)]
        if feats:
            out.append((e, feats))
    return out


def detail_html(entry: CatalogEntry, ws: Workspace, stats: str = "") -> str:
    """Schema, SQL, versions and lineage of one view."""
    v = entry.view
    facts = [
        f"entity <b>{render.esc(', '.join(v.entity))}</b>",
        f"timestamp <b>{render.esc(v.timestamp)}</b>",
    ]
    if v.ttl:
        facts.append(f"ttl <b>{format_ttl(v.ttl)}</b>")
    if v.windows:
        facts.append(f"windows <b>{render.esc(', '.join(v.windows))}</b>")
    if v.owner:
        facts.append(f"owner <b>{render.esc(v.owner)}</b>")
    tags = "".join(f'<span class="tag">{render.esc(t)}</span>' for t in v.tags)
    schema = render.table(
        ["feature", "type", "reads", "description"],
        [[f.name, f.type, ", ".join(v.lineage.get(f.name, [])), f.description] for f in v.features],
    )
    parts = [
        f"<h4>{render.esc(v.name)} <small>({entry.origin})</small></h4>",
        f"<div class='meta'>{' · '.join(facts)} {tags}</div>",
        f"<div>{render.esc(v.description)}</div>" if v.description else "",
        "<h4>schema</h4>" + schema,
        "<h4>SQL</h4><pre>" + render.esc(v.normalized_sql or v.sql) + "</pre>",
        "<h4>versions</h4>" + _versions_html(entry, ws),
        "<h4>lineage</h4><div>sources: " + render.esc(", ".join(v.sources) or "unknown") + "</div>",
    ]
    if stats:
        parts.append("<h4>statistics</h4>" + stats)
    return render.wrap(*parts)


def _versions_html(entry: CatalogEntry, ws: Workspace) -> str:
    lines = []
    history = ws.history(entry.name)
    if history:
        lines.append(f"{len(history)} definition(s) in this session")
    registry = ws.registry_or_none()
    versions = getattr(registry, "versions", None)
    if versions is not None:
        try:
            records = list(versions(entry.name))
        except Exception:  # noqa: BLE001 - no registry record yet is not an error here
            records = []
        rows = [
            [getattr(r, "version", None), getattr(r, "created_at", None), getattr(r, "created_by", None)]
            for r in records
        ]
        if rows:
            return "<div>" + "; ".join(lines) + "</div>" + render.table(["version", "created", "by"], rows)
    lines.append("not in the registry yet" if entry.origin == "session" else "")
    return "<div>" + render.esc("; ".join(x for x in lines if x)) + "</div>"


class FeatureBrowser:
    """Search box, facet filters, a table of matching features and a detail pane."""

    def __init__(self, ws: Workspace, *, registry: bool = True) -> None:
        import ipywidgets as widgets

        self.ws = ws
        self.entries = catalog(ws, registry=registry)
        values = facets(self.entries)
        self.search = widgets.Text(
            placeholder="search names, descriptions, tags…", layout=widgets.Layout(width="260px")
        )
        self.filters = {
            name: widgets.Dropdown(
                options=[ANY, *values[name]],
                value=ANY,
                description=name,
                layout=widgets.Layout(width="190px"),
            )
            for name in ("entity", "type", "owner", "tag")
        }
        for f in self.filters.values():
            f.style.description_width = "46px"
        self.views = widgets.Select(options=[], rows=10, layout=widgets.Layout(width="220px"))
        self.summary = widgets.HTML()
        self.table = widgets.HTML()
        self.detail = widgets.HTML()
        self.stats_button = widgets.Button(
            description="Compute statistics", icon="bar-chart", layout=widgets.Layout(width="auto")
        )
        self.export = widgets.Output()
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.search, *self.filters.values()]),
                self.summary,
                widgets.HBox(
                    [self.views, widgets.VBox([self.detail, widgets.HBox([self.stats_button, self.export])])]
                ),
                self.table,
            ]
        )
        self.search.observe(self._refresh, names="value")
        for f in self.filters.values():
            f.observe(self._refresh, names="value")
        self.views.observe(self._show, names="value")
        self.stats_button.on_click(self._stats)
        self.matches: list[tuple[CatalogEntry, list[Feature]]] = []
        self._refresh()

    # -- state --------------------------------------------------------------------------
    def _facet(self, name: str) -> str | None:
        value = self.filters[name].value
        return None if value == ANY else str(value)

    def _refresh(self, _change: Any = None) -> None:
        self.matches = search_catalog(
            self.entries, self.search.value, entity=self._facet("entity"), type=self._facet("type"),
            owner=self._facet("owner"), tag=self._facet("tag"),
        )  # fmt: skip
        names = [e.name for e, _ in self.matches]
        n_features = sum(len(f) for _, f in self.matches)
        self.summary.value = f"<small>{len(names)} view(s), {n_features} feature(s) match</small>"
        rows = [
            [
                e.name,
                f.name,
                f.type,
                ", ".join(e.view.entity),
                e.view.owner,
                ", ".join(e.view.tags),
                f.description,
            ]
            for e, feats in self.matches
            for f in feats
        ]
        self.table.value = render.wrap(
            render.table(["view", "feature", "type", "entity", "owner", "tags", "description"], rows)
        )
        current = self.views.value
        self.views.options = names
        self.views.value = current if current in names else (names[0] if names else None)
        if not names:
            self.detail.value = "<i>no feature view matches</i>"

    def entry(self, name: str) -> CatalogEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def select(self, name: str) -> None:
        self.views.value = name

    def _show(self, _change: Any = None) -> None:
        name = self.views.value
        self.export.clear_output()
        if not name:
            return
        entry = self.entry(name)
        self.detail.value = detail_html(entry, self.ws, stats=recorded_stats_html(entry))
        self.stats_button.disabled = entry.origin != "session"
        if entry.origin == "session":
            with self.export:
                from IPython.display import display

                display(ExportButton(self.ws, [name]))

    def _stats(self, _button: Any = None) -> None:
        name = self.views.value
        if not name:
            return
        entry = self.entry(name)
        try:
            from ..preview import preview

            result = preview(entry.view, self.ws, export_button=False)
            stats = result.profile.html()
        except Exception as exc:  # noqa: BLE001 - show it in the pane, not in the log
            stats = f"<span class='bad'>{render.esc(message_of(exc))}</span>"
        self.detail.value = detail_html(entry, self.ws, stats=stats)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"FeatureBrowser({len(self.entries)} views)"
