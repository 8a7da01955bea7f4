"""Online stores: the latest feature values per entity, read by key in microseconds.

One small Protocol, one module per implementation, picked by URL scheme from ``STORES``.
Each materialization writes a new *version* of a view's online table and switches
readers to it atomically when complete (see ``sqlite.py`` and ``redis.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from .canonical import canonical_rows
from .layout import Lease, OnlineTable, PushReceipt, Snapshot, WriterHandle
from .reads import read_features
from .result import OnlineResult
from .stores import STORES, open_store
from .window_values import WindowPush, WindowSpec, window_spec

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "OnlineStore",
    "VersionWriter",
    "OnlineTable",
    "OnlineResult",
    "Lease",
    "WriterHandle",
    "PushReceipt",
    "Snapshot",
    "canonical_rows",
    "open_store",
    "read_features",
    "STORES",
    "WindowSpec",
    "WindowPush",
    "window_spec",
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

    def write_pushed(self, rows: pa.Table) -> int:
        """Add ``rows`` (keys, ``EVENT_TS``, [``CREATED_TS``,] features) to the version as pushed
        rows — logged pushes dated after the run's end, which reads at later times need."""
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
        self,
        view: str,
        features: Sequence[str] | None,
        entity_rows: Sequence[Mapping[str, Any]],
        at: int | None = None,
    ) -> tuple[OnlineTable, list[list[Any]]]:
        """One list of values per requested feature (all when None), in ``entity_rows`` order, as
        of ``at`` (µs since the epoch; default now): each entity's best row at or before it, null
        when that row is older than ``at`` - TTL."""
        ...

    def scan(self, view: str) -> tuple[OnlineTable, pa.RecordBatchReader]:
        """Every row readers are served now — keys, ``EVENT_TS`` (µs), features — in the canonical
        form ``canonical_rows`` gives, read from one version; the version read."""
        ...

    def lock(self, view: str) -> AbstractContextManager[Lease]:
        """Hold the one materialization of ``view``; raise MaterializationBusyError if taken."""
        ...

    def begin(
        self,
        table: OnlineTable,
        *,
        lease: Lease,
        base: OnlineTable | None = None,
        covered: Collection[int] = (),
        rows: int | None = None,
    ) -> VersionWriter:
        """Start a new version of ``table.view`` (upserted over ``base``, the served version, for an
        incremental run); needs the view's lock (``lease``). ``covered``: the push-journal entries
        whose rows the run's offline read holds; the switch replays every other one. ``rows``: how many
        entities the run expects, when known (a store may size the version's layout by it)."""
        ...

    def identity(self) -> str:
        """The store's identity, kept in the store (push logs record where a push went)."""
        ...

    def push(self, view: str, rows: pa.Table, *, definition: str | None = None) -> PushReceipt:
        """Add ``rows`` (keys, ``EVENT_TS``, [``CREATED_TS``,] features) to the served version and
        the push journal, atomically: the next read sees all of them. ``definition``: the view's
        definition hash the served version must have (else a PushError, nothing written)."""
        ...

    def push_state(self, view: str) -> tuple[int, int] | None:
        """(version served, last push journaled), or None when ``view`` is not served here."""
        ...

    def snapshot(self, view: str) -> Snapshot:
        """Every row of the version served now and the last push journaled before reading it."""
        ...

    def pushes_since(self, view: str, table: OnlineTable, seq: int) -> list[tuple[int, dict[str, list[Any]]]]:
        """Pushes journaled after ``seq`` in ``table``'s layout: (seq, rows by encoded key)."""
        ...

    def resume(self, handle: WriterHandle) -> VersionWriter:
        """Write more rows into the version ``handle`` names, from another process."""
        ...

    def close(self) -> None: ...
