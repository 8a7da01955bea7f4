"""Online stores: the latest feature values per entity, read by key in microseconds.

One small Protocol, one module per implementation, picked by URL scheme from ``STORES``.
Each materialization writes a new *version* of a view's online table and switches
readers to it atomically when complete (see ``sqlite.py`` and ``redis.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from .layout import Lease, OnlineTable
from .reads import read_features
from .result import OnlineResult

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["OnlineStore", "OnlineTable", "OnlineResult", "Lease", "open_store", "read_features", "STORES"]


class OnlineStore(Protocol):
    """What materialization and online reads need from a store."""

    url: str

    def current(self, view: str) -> OnlineTable | None:
        """The version readers see now, or None if ``view`` was never materialized here."""
        ...

    def views(self) -> dict[str, OnlineTable]:
        """Every view served here, with the version readers see now (a server's health)."""
        ...

    def read(
        self, view: str, features: Sequence[str] | None, entity_rows: Sequence[Mapping[str, Any]]
    ) -> tuple[OnlineTable, list[list[Any]]]:
        """One list of values per requested feature (all when None), in ``entity_rows`` order."""
        ...

    def lock(self, view: str) -> AbstractContextManager[Lease]:
        """Hold the one materialization of ``view``; raise MaterializationBusyError if taken."""
        ...

    def write(
        self,
        table: OnlineTable,
        rows: pa.Table,
        *,
        lease: Lease,
        base: OnlineTable | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> OnlineTable:
        """Write ``rows`` (canonical columns) as a new version, upserted over a copy of
        ``base`` when given, and switch readers to it; return the version written."""
        ...

    def close(self) -> None: ...


#: URL scheme → "module:Class"; adding a store is adding a module and a line here.
STORES = {
    "sqlite": "jupyter_features.online.sqlite:SQLiteStore",
    "redis": "jupyter_features.online.redis:RedisStore",
    "rediss": "jupyter_features.online.redis:RedisStore",
    "unix": "jupyter_features.online.redis:RedisStore",
}


def open_store(url: str) -> OnlineStore:
    """Open the online store at ``url`` (``sqlite:///path.db`` or ``redis://host:port/db``)."""
    from ..errors import OnlineStoreError

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    target = STORES.get(scheme)
    if target is None:
        raise OnlineStoreError(
            f"online store URL {url!r} has an unknown scheme; use sqlite:///path.db or redis://host:port/db"
        )
    module_name, cls_name = target.split(":")
    store: OnlineStore = getattr(importlib.import_module(module_name), cls_name)(url)
    return store
