"""Feature views: a named SELECT with entity keys, event time, TTL and typed features."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .errors import FeatureViewError
from .schema import Feature
from .times import format_ttl, parse_ttl

if TYPE_CHECKING:
    from .windows import WindowPlan

__all__ = ["FeatureView", "ViewJoin", "definition_hash", "parse_ttl", "format_ttl", "set_previewer"]


@dataclass(frozen=True)
class FeatureView:
    """An analysed, typed feature view definition. Immutable: redefining makes a new one."""

    name: str
    sql: str
    entity: tuple[str, ...]
    timestamp: str
    features: tuple[Feature, ...]
    created_timestamp: str | None = None
    ttl: timedelta | None = None
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    lineage: dict[str, list[str]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    normalized_sql: str = ""
    version: int | None = None
    #: The windows as written ('1h', '24h', '7d'); empty for a plain view. A windowed view's SQL is
    #: one SELECT keys, aggregates FROM ... GROUP BY keys, and each aggregate × window is a feature.
    windows: tuple[str, ...] = ()
    #: The sources' columns the view was analysed against (source → column → DuckDB type).
    schemas: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def schema(self) -> dict[str, str]:
        """Feature name → feature type (int64, float64, string, bool, timestamp, list<float>, categorical)."""
        return {f.name: f.type for f in self.features}

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        from .errors import UnknownFeatureError, did_you_mean

        raise UnknownFeatureError(
            f"feature view '{self.name}' has no feature '{name}'"
            f"{did_you_mean(name, self.feature_names)}; it has: {', '.join(self.feature_names)}"
        )

    def window_plan(self, sources: Mapping[str, object] | None = None) -> WindowPlan | None:
        """The checked plan the engines compute a windowed view from (None for a plain view);
        ``sources`` (registered names) also refuses SQL reading anything else."""
        if not self.windows:
            return None
        from .windows import window_plan

        return window_plan(
            self.sql, self.entity, self.timestamp, list(self.windows), owner=f"feature view '{self.name}'",
            sources=sources, ttl=self.ttl, created_timestamp=self.created_timestamp,
        )  # fmt: skip

    def sql_for(self, dialect: str) -> str:
        """The view's SQL transpiled to ``dialect`` ('spark', 'snowflake', 'bigquery') for review.

        For a windowed view: the relation its windows aggregate (the rows with their keys, event
        time, aggregate inputs and filters), under a comment listing each feature's aggregate and
        window; the windows themselves are computed by the engine, not by SQL.
        Raises TranspileError naming any construct that would not keep its meaning there.
        """
        from .transpile import transpile

        schema = {name: dict(columns) for name, columns in self.schemas.items()} or None
        owner = f"feature view '{self.name}'"
        plan = self.window_plan()
        if plan is None:
            return transpile(self.sql, dialect, schema=schema, owner=owner, pretty=True)
        body = transpile(plan.relation_sql, dialect, schema=schema, owner=owner, pretty=True)
        lines = [
            f"-- {self.name}: windowed view; each feature aggregates the rows below with the label's keys",
            "-- and event time (__jf_ts) in (t - window, t], at each label's own time t:",
        ]
        for a in plan.aggregates:
            x = "*" if a.argument is None else ("DISTINCT " if a.distinct else "") + a.argument
            where = f" FILTER (WHERE {a.filter})" if a.filter else ""
            names = ", ".join(f"{a.alias}_{w.text}" for w in plan.windows)
            lines.append(f"--   {a.function}({x}){where} -> {names}")
        return "\n".join(lines) + "\n" + body

    @cached_property
    def definition_hash(self) -> str:
        """Hash of what makes a new version: normalized SQL, schema, keys, timestamps, TTL
        (computed once per view object: its fields never change)."""
        return definition_hash(self.to_spec(), normalized_sql=self.normalized_sql or self.sql)

    def to_spec(self) -> dict[str, Any]:
        """The plain-data form the registry stores and YAML files hold."""
        return {
            "name": self.name,
            "sql": self.sql,
            "entity": list(self.entity),
            "timestamp": self.timestamp,
            "created_timestamp": self.created_timestamp,
            "ttl": format_ttl(self.ttl),
            "description": self.description,
            "owner": self.owner,
            "tags": list(self.tags),
            "features": [f.to_dict() for f in self.features],
            "lineage": {k: list(v) for k, v in self.lineage.items()},
            "sources": list(self.sources),
            **({"windows": list(self.windows)} if self.windows else {}),
        }

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], *, version: int | None = None, normalized_sql: str | None = None
    ) -> FeatureView:
        """The view a spec describes; ``normalized_sql`` saves parsing its SQL again when known."""
        from .analysis import normalize_sql

        ttl = parse_ttl(spec.get("ttl"), owner=f"feature view '{spec.get('name')}'")
        return cls(
            name=str(spec["name"]),
            sql=str(spec["sql"]),
            entity=tuple(spec["entity"]),
            timestamp=str(spec["timestamp"]),
            created_timestamp=spec.get("created_timestamp"),
            ttl=ttl,
            description=str(spec.get("description") or ""),
            owner=str(spec.get("owner") or ""),
            tags=tuple(spec.get("tags") or ()),
            features=tuple(Feature.from_dict(f) for f in spec.get("features", [])),
            lineage={k: list(v) for k, v in (spec.get("lineage") or {}).items()},
            sources=tuple(spec.get("sources") or ()),
            normalized_sql=normalized_sql if normalized_sql is not None else normalize_sql(str(spec["sql"])),
            version=version if version is not None else spec.get("version"),
            windows=_windows_of(spec.get("windows")),
        )

    def with_version(self, version: int | None) -> FeatureView:
        return replace(self, version=version)

    def preview(self, **options: Any) -> Any:
        """Sample rows, per-feature statistics and histograms, lineage and what changed
        since the previous definition; shows itself in a notebook (``Workspace.preview``)."""
        if _previewer is None:
            raise FeatureViewError(
                f"feature view '{self.name}': previews need a workspace; use ws.preview('{self.name}')"
            )
        return _previewer(self, **options)

    def __repr__(self) -> str:
        ttl = f", ttl={format_ttl(self.ttl)!r}" if self.ttl else ""
        ttl += f", windows={list(self.windows)}" if self.windows else ""
        ver = f"@{self.version}" if self.version is not None else ""
        feats = ", ".join(f"{f.name}: {f.type}" for f in self.features)
        return f"FeatureView({self.name}{ver}, entity={list(self.entity)}, timestamp={self.timestamp!r}{ttl}, features=[{feats}])"


def _windows_of(value: Any) -> tuple[str, ...]:
    """A spec's windows as texts: a list, or one comma-separated string."""
    if isinstance(value, str):
        return tuple(w.strip() for w in value.split(",") if w.strip())
    return tuple(str(w) for w in value or ())


#: Renders a view's preview; installed by the workspace layer (definitions never import it).
_previewer: Callable[..., Any] | None = None


def set_previewer(previewer: Callable[..., Any] | None) -> None:
    """Install the function ``FeatureView.preview()`` calls (the workspace installs its own)."""
    global _previewer
    _previewer = previewer


def definition_hash(spec: Mapping[str, Any], *, normalized_sql: str | None = None) -> str:
    """Hash of what makes a new version of the view ``spec`` describes: normalized SQL, feature
    schema, keys, timestamps, TTL and windows (never its name, description, owner or tags).
    A plain view's spec has no windows, and its hash is what it was before windows existed.

    ``normalized_sql`` saves parsing the SQL again when it is known.
    """
    if normalized_sql is None:
        from .analysis import normalize_sql

        normalized_sql = normalize_sql(str(spec["sql"]))
    ttl = parse_ttl(spec.get("ttl"), owner=f"feature view '{spec.get('name')}'")
    payload = {
        "sql": normalized_sql,
        "entity": list(spec["entity"]),
        "timestamp": str(spec["timestamp"]),
        "created_timestamp": spec.get("created_timestamp"),
        "ttl": format_ttl(ttl),
        "features": [
            [f.name, f.type, f.duckdb_type] for f in map(Feature.from_dict, spec.get("features", []))
        ],
    }
    if spec.get("windows"):
        payload["windows"] = [str(w) for w in spec["windows"]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ViewJoin:
    """One feature view's part of a point-in-time join or a materialization: what an engine needs."""

    name: str
    sql: str
    entity: tuple[str, ...]
    timestamp: str
    created_timestamp: str | None
    ttl: timedelta | None
    features: tuple[str, ...]  # feature columns of the view to fetch
    output: tuple[str, ...]  # output column name for each feature
    windows: tuple[str, ...] = ()  # a windowed view's windows as written; empty for a plain view
    #: A windowed view's pushed rows: SQL of more rows of its relation (keys, event time, inputs,
    #: flags), aggregated together with the view's own (the push log; see ``pushes.py``).
    pushed: str | None = None

    def window_plan(self) -> WindowPlan | None:
        """The windowed view's plan (None for a plain view's join), its pushed rows included."""
        if not self.windows:
            return None
        from dataclasses import replace

        from .windows import window_plan

        plan = window_plan(
            self.sql, self.entity, self.timestamp, list(self.windows), owner=f"feature view '{self.name}'",
            ttl=self.ttl, created_timestamp=self.created_timestamp,
        )  # fmt: skip
        if self.pushed is None:
            return plan
        return replace(
            plan, relation_sql=f"SELECT * FROM ({plan.relation_sql}\n) AS __jf_rows UNION ALL {self.pushed}"
        )

    @classmethod
    def of(
        cls, view: FeatureView, features: Sequence[str] | None = None, output: Sequence[str] | None = None
    ) -> ViewJoin:
        """``view``'s join: ``features`` (all by default) named ``output`` (the feature names by default)."""
        names = tuple(view.feature_names if features is None else features)
        return cls(
            name=view.name, sql=view.sql, entity=view.entity, timestamp=view.timestamp,
            created_timestamp=view.created_timestamp, ttl=view.ttl,
            features=names, output=names if output is None else tuple(output), windows=view.windows,
        )  # fmt: skip
