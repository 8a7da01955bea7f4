"""Feature views: a named SELECT with entity keys, event time, TTL and typed features."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from .errors import FeatureViewError, TTLError
from .schema import Feature

__all__ = ["FeatureView", "ViewJoin", "definition_hash", "parse_ttl", "format_ttl", "set_previewer"]

_TTL_UNITS = {
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 0.001,
}  # fmt: skip
_TTL_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")


def parse_ttl(value: str | timedelta | int | float | None, *, owner: str = "ttl") -> timedelta | None:
    """Parse '30d', '12h', '1d12h', '90 minutes', a timedelta or seconds; None means no TTL."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TTLError(f"{owner}: TTL {value!r} is not a duration; use e.g. '30d', '12h' or '90m'")
    if isinstance(value, timedelta):
        ttl = value
    elif isinstance(value, (int, float)):
        ttl = _seconds(float(value), value, owner)
    elif isinstance(value, str):
        text = value.strip().lower()
        pos, seconds = 0, 0.0
        for m in _TTL_PART.finditer(text):
            if m.start() != pos or m.group(2) not in _TTL_UNITS:
                break
            seconds += float(m.group(1)) * _TTL_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise TTLError(
                f"{owner}: cannot read TTL {value!r}; write a number and a unit, "
                "e.g. '30d', '12h', '90m', '45s' or '1d12h'"
            )
        ttl = _seconds(seconds, value, owner)
    else:
        raise TTLError(f"{owner}: TTL must be a string like '30d' or a timedelta, not {type(value).__name__}")
    if ttl <= timedelta(0):
        raise TTLError(f"{owner}: TTL must be positive, got {value!r}; omit it for no TTL")
    return ttl


def _seconds(seconds: float, value: object, owner: str) -> timedelta:
    """A timedelta of ``seconds``: NaN, infinite or past timedelta's range (~2.7 million years) is refused."""
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError) as exc:
        raise TTLError(
            f"{owner}: TTL {value!r} is not a usable duration; use e.g. '30d', '12h' or '90m'"
        ) from exc


def format_ttl(ttl: timedelta | None) -> str | None:
    """The canonical compact text of a TTL ('30d', '1d12h', '1500ms')."""
    if ttl is None:
        return None
    micros = ttl // timedelta(microseconds=1)
    if micros % 1000:
        return f"{micros}us"
    ms = micros // 1000
    if ms % 1000:
        return f"{ms}ms"
    secs = ms // 1000
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, secs = divmod(secs, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


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

    def sql_for(self, dialect: str) -> str:
        """The view's SQL transpiled to ``dialect`` ('spark', 'snowflake', 'bigquery') for review.

        Raises TranspileError naming any construct that would not keep its meaning there.
        """
        from .transpile import transpile

        schema = {name: dict(columns) for name, columns in self.schemas.items()} or None
        return transpile(self.sql, dialect, schema=schema, owner=f"feature view '{self.name}'", pretty=True)

    @property
    def definition_hash(self) -> str:
        """Hash of what makes a new version: normalized SQL, schema, keys, timestamps, TTL."""
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
        ver = f"@{self.version}" if self.version is not None else ""
        feats = ", ".join(f"{f.name}: {f.type}" for f in self.features)
        return f"FeatureView({self.name}{ver}, entity={list(self.entity)}, timestamp={self.timestamp!r}{ttl}, features=[{feats}])"


#: Renders a view's preview; installed by the workspace layer (definitions never import it).
_previewer: Callable[..., Any] | None = None


def set_previewer(previewer: Callable[..., Any] | None) -> None:
    """Install the function ``FeatureView.preview()`` calls (the workspace installs its own)."""
    global _previewer
    _previewer = previewer


def definition_hash(spec: Mapping[str, Any], *, normalized_sql: str | None = None) -> str:
    """Hash of what makes a new version of the view ``spec`` describes: normalized SQL, feature
    schema, keys, timestamps and TTL (never its name, description, owner or tags).

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

    @classmethod
    def of(
        cls, view: FeatureView, features: Sequence[str] | None = None, output: Sequence[str] | None = None
    ) -> ViewJoin:
        """``view``'s join: ``features`` (all by default) named ``output`` (the feature names by default)."""
        names = tuple(view.feature_names if features is None else features)
        return cls(
            name=view.name, sql=view.sql, entity=view.entity, timestamp=view.timestamp,
            created_timestamp=view.created_timestamp, ttl=view.ttl,
            features=names, output=names if output is None else tuple(output),
        )  # fmt: skip
