"""Online stores: the latest feature values per entity, read by key in microseconds.

One small Protocol, one module per implementation, picked by URL scheme from ``STORES``.
Each materialization writes a new *version* of a view's online table and switches
readers to it atomically when complete (see ``sqlite.py`` and ``redis.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from .canonical import canonical_rows
from .layout import Lease, OnlineTable, WriterHandle
from .reads import read_features
from .result import OnlineResult
from .stores import STORES, open_store

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "OnlineStore",
    "VersionWriter",
    "OnlineTable",
    "OnlineResult",
    "Lease",
    "WriterHandle",
    "canonical_rows",
    "open_store",
    "read_features",
    "STORES",
]


class VersionWriter(Protocol):
    """One new version of a view being written; readers see it only after ``switch()``.

    Rows arrive as an engine computed them (entity keys, ``EVENT_TS`` as a timestamp, the
    features) and the writer casts them to the canonical form (``canonical_rows``).
    """

    table: OnlineTable  # the version being written

    def write_batch(self, rows: pa.Table, progress: Callable[[int], None] | None = None) -> int:
        """Write ``rows``; return how many were written (``progress`` hears of each chunk)."""
        ...

    def renew(self) -> None:
        """Extend the run's lease; raise MaterializationError if another run took it over."""
        ...

    def switch(self) -> OnlineTable:
        """Point readers at this version atomically, free older ones; the version written."""
        ...

    def abort(self) -> None:
        """Remove what was written; readers keep the previous version."""
        ...

    def handle(self, *, other_host: bool = False) -> WriterHandle | None:
        """What another process needs to ``resume`` writing rows here (None: it cannot;
        ``other_host``: that process runs on another machine)."""
        ...

    def close(self) -> None:
        """Stop writing from this process without switching or aborting (a resumed writer)."""
        ...


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

    def scan(self, view: str) -> tuple[OnlineTable, pa.RecordBatchReader]:
        """Every row readers are served now — keys, ``EVENT_TS`` (µs), features — in the canonical
        form ``canonical_rows`` gives, read from one version; the version read."""
        ...

    def lock(self, view: str) -> AbstractContextManager[Lease]:
        """Hold the one materialization of ``view``; raise MaterializationBusyError if taken."""
        ...

    def begin(self, table: OnlineTable, *, lease: Lease, base: OnlineTable | None = None) -> VersionWriter:
        """Start a new version of ``table.view`` (upserted over ``base``, the served version, for an
        incremental run); needs the view's lock (``lease``)."""
        ...

    def resume(self, handle: WriterHandle) -> VersionWriter:
        """Write more rows into the version ``handle`` names, from another process."""
        ...

    def close(self) -> None: ...
