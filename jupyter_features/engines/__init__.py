"""Offline engines: where feature SQL and point-in-time joins run.

One small Protocol and one module per engine, picked by name from one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import EngineError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ..featureview import FeatureView
    from ..sources import Source

__all__ = ["OfflineEngine", "ViewJoin", "open_engine", "ENGINES"]


@dataclass(frozen=True)
class ViewJoin:
    """One feature view's part of a point-in-time join."""

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


class OfflineEngine(Protocol):
    """What the workspace needs from an engine. Sources are validated before they arrive."""

    name: str

    def register_source(self, source: Source) -> Source:
        """Make ``source`` queryable by name; return it with its columns filled in."""
        ...

    def sql(self, query: str) -> pd.DataFrame: ...

    def training_frame(self, labels: pd.DataFrame, timestamp: str, joins: list[ViewJoin]) -> pd.DataFrame:
        """Feature columns only, one row per label row, in label order."""
        ...

    def latest(self, join: ViewJoin, end: Any, since: Any = None) -> pa.Table:
        """Latest row per entity with event time <= end (and > since), TTL applied at end."""
        ...


#: engine name → "module:Class"; adding an engine is adding a module and a line here.
ENGINES = {
    "duckdb": "jupyter_features.engines.duckdb:DuckDBEngine",
    "spark": "jupyter_features.engines.spark:SparkEngine",
}


def open_engine(name_or_session: Any, **options: Any) -> OfflineEngine:
    import importlib

    if not isinstance(name_or_session, str):  # a SparkSession
        from .spark import SparkEngine

        return SparkEngine(session=name_or_session, **options)
    target = ENGINES.get(name_or_session)
    if target is None:
        raise EngineError(f"unknown engine {name_or_session!r}; choose one of: {', '.join(ENGINES)}")
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(f"engine {name_or_session!r} is not available: {exc}") from exc
    engine: OfflineEngine = getattr(module, cls_name)(**options)
    return engine
