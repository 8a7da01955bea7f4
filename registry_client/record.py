"""VersionRecord: one immutable version of a feature view, as the registry holds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_features.featureview import FeatureView

__all__ = ["VersionRecord", "utc_now", "parse_time", "format_time"]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds: the one text form of a time in stores, JSON and YAML."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_time(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


@dataclass(frozen=True)
class VersionRecord:
    """Version ``version`` of feature view ``name``: its spec (``FeatureView.to_spec()``) and provenance.

    ``hash`` is the definition hash (normalized SQL, schema, keys, timestamps, TTL): two
    versions of one view never share it back to back.
    """

    name: str
    version: int
    created_at: datetime
    created_by: str
    hash: str
    spec: dict[str, Any] = field(compare=True)

    @property
    def ref(self) -> str:
        """The pinned reference prefix, e.g. 'user_spend@3'."""
        return f"{self.name}@{self.version}"

    @property
    def description(self) -> str:
        return str(self.spec.get("description") or "")

    @property
    def owner(self) -> str:
        return str(self.spec.get("owner") or "")

    @property
    def tags(self) -> list[str]:
        return [str(t) for t in self.spec.get("tags") or []]

    @property
    def entity(self) -> list[str]:
        return [str(k) for k in self.spec.get("entity") or []]

    @property
    def features(self) -> list[dict[str, Any]]:
        """The typed features: dicts with name, type, duckdb_type, description (and vocabulary)."""
        return [dict(f) for f in self.spec.get("features") or []]

    @property
    def feature_names(self) -> list[str]:
        return [str(f["name"]) for f in self.spec.get("features") or []]

    @property
    def schema(self) -> dict[str, str]:
        """Feature name → feature type."""
        return {str(f["name"]): str(f["type"]) for f in self.spec.get("features") or []}

    def to_feature_view(self) -> FeatureView:
        """The definition as a FeatureView pinned at this version (not bound to a workspace)."""
        from jupyter_features.featureview import FeatureView

        return FeatureView.from_spec(self.spec, version=self.version)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the HTTP API's and the YAML files' form)."""
        return {
            "name": self.name,
            "version": self.version,
            "created_at": format_time(self.created_at),
            "created_by": self.created_by,
            "hash": self.hash,
            "spec": self.spec,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VersionRecord:
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            created_at=parse_time(data["created_at"]),
            created_by=str(data.get("created_by") or ""),
            hash=str(data["hash"]),
            spec=dict(data["spec"]),
        )

    def __repr__(self) -> str:
        return (
            f"VersionRecord({self.ref}, created_at={format_time(self.created_at)!r}, "
            f"created_by={self.created_by!r}, hash={self.hash[:12]!r}, features={self.feature_names})"
        )
