"""Offline engines: where feature SQL and point-in-time joins run.

One small Protocol and one module per engine, picked by name from one table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .. import errors
from ..featureview import ViewJoin

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ..online import VersionWriter
    from ..sources import Source

__all__ = ["OfflineEngine", "LatestRows", "ViewJoin", "open_engine", "ENGINES"]


class LatestRows(Protocol):
    """The latest row per entity that a materialization run writes, as an engine computes it.

    ``key_types`` is known before any row is written (it shapes the online table); then
    ``write_to`` puts every row into a store's new version — from this process or, for a
    distributed engine, from its workers through ``writer.handle()``.
    """

    key_types: tuple[str, ...]  # "int64" or "string" per entity key
    count: int | None  # how many rows, when known before writing

    def write_to(self, writer: VersionWriter, progress: Callable[[int], None] | None = None) -> int:
        """Write every row into ``writer``'s version (not switching it); the rows written."""
        ...


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

    def latest_rows(self, join: ViewJoin, end: Any, since: Any = None) -> LatestRows:
        """The same rows, for a materialization run to write into an online store."""
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
        raise errors.EngineError(f"unknown engine {name_or_session!r}; choose one of: {', '.join(ENGINES)}")
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.EngineError(f"engine {name_or_session!r} is not available: {exc}") from exc
    engine: OfflineEngine = getattr(module, cls_name)(**options)
    return engine
