"""The one interface every registry backend offers (embedded SQL database or HTTP server)."""

from __future__ import annotations

import builtins
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .record import VersionRecord

__all__ = ["Registry"]


@runtime_checkable
class Registry(Protocol):
    """A shared, versioned store of feature view definitions.

    A view gets version n+1 when its definition hash changes and nothing when it does
    not; a metadata-only change (description, owner, tags, feature doc strings, SQL
    formatting) refreshes the latest version's spec in place. Versions are never
    deleted and their definitions never change.
    """

    url: str

    def apply(self, spec: dict[str, Any], *, created_by: str | None = None) -> VersionRecord:
        """Store ``spec`` (``FeatureView.to_spec()``); returns the new or unchanged latest version."""
        ...

    def get(self, name: str, version: int | None = None) -> VersionRecord:
        """Version ``version`` (default: latest) of ``name``; NotFoundError if missing."""
        ...

    def versions(self, name: str) -> builtins.list[VersionRecord]:
        """Every version of ``name``, oldest first."""
        ...

    def list(self) -> builtins.list[VersionRecord]:
        """The latest version of every view, by name."""
        ...

    def search(
        self,
        text: str | None = None,
        *,
        entity: str | None = None,
        type: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
        used_by: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[VersionRecord]:
        """Latest versions matching all given filters (text: every word, case-insensitive), by name."""
        ...

    def lineage(self, name: str) -> dict[str, Any]:
        """Sources, per-feature source columns and the models using ``name``'s latest version."""
        ...

    def record_usage(self, model_name: str, feature_refs: Sequence[str]) -> None:
        """Record that ``model_name`` uses ``feature_refs`` (replacing what it used before)."""
        ...

    def usage(self, model_name: str | None = None) -> builtins.list[dict[str, Any]]:
        """Recorded usage rows: model, view, feature, version, recorded_at."""
        ...

    def record_activity(self, kind: str, detail: dict[str, Any] | None = None) -> None:
        """Audit an export or materialization: who, when, from which notebook and host."""
        ...

    def activity(self, kind: str | None = None, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The most recent activity entries, newest first."""
        ...

    def import_versions(self, records: Sequence[VersionRecord]) -> builtins.list[VersionRecord]:
        """Add versions with their own numbers and provenance (the YAML import path)."""
        ...

    def export_yaml(self, folder: str | os.PathLike[str]) -> builtins.list[str]:
        """Write one YAML file per view (every version) into ``folder``; returns the paths."""
        ...

    def import_yaml(self, folder: str | os.PathLike[str]) -> builtins.list[VersionRecord]:
        """Load a folder written by export_yaml (or hand-written specs); returns the latest records."""
        ...

    def close(self) -> None: ...
