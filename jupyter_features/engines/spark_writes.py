"""Materialization from Spark: the executors compute the latest rows and write them.

The store's own ``write()`` runs on the driver — it allocates the new version, and
switches readers to it only when it is complete — but where it would insert the rows,
a Spark job has every partition turn its rows into the canonical columns
(``materialize.canonical_rows``) and write them into that version itself: pipelined
``HSET``s for Redis, batched ``INSERT`` transactions for a SQLite file the executors can
reach (local mode), each renewing the run's lease. A failed job fails ``write()``, which
leaves the previous version served and removes the half-written one. Other stores (and
SQLite in memory or behind a cluster master) get the rows collected to the driver.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import MaterializationError
from ..pit import quote

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from ..featureview import FeatureView
    from ..materialize import MaterializationResult, Progress
    from ..online import Lease, OnlineStore, OnlineTable
    from .spark import SparkEngine

__all__ = ["materialize_view", "PARTITION_CHUNK_ROWS"]

#: Rows a partition converts and writes at a time (bounds an executor's memory).
PARTITION_CHUNK_ROWS = 50_000
_RENEW_EVERY_S = 20.0


def materialize_view(
    engine: SparkEngine,
    view: FeatureView,
    store: OnlineStore,
    *,
    end: Any = None,
    incremental: bool = False,
    progress: bool = True,
    on_progress: Progress | None = None,
) -> MaterializationResult:
    """Materialize one view into ``store`` from Spark; same contract as ``materialize.materialize_view``."""
    from pyspark.sql import types as T

    from ..materialize import MaterializationResult, _now, _online_table, _plan_run
    from ..online.layout import key_type_of, micros_to_datetime, to_micros

    started = time.perf_counter()
    end_us = to_micros(end if end is not None else _now())
    with store.lock(view.name) as lease:
        previous, since_us, join = _plan_run(store, view, end_us, incremental)
        end_at = micros_to_datetime(end_us)
        frame = engine.latest_frame(
            join, end_at, micros_to_datetime(since_us) if since_us is not None else None
        )
        key_types = tuple(
            key_type_of("int64" if isinstance(frame.schema[k].dataType, T.IntegralType) else "string")
            for k in view.entity
        )
        if since_us is not None and previous is not None and previous.key_types != key_types:
            since_us = None  # keys changed type: start over with a full run
            frame = engine.latest_frame(join, end_at, None)
        table = _online_table(view, key_types, end_us)
        base = previous if since_us is not None else None
        if on_progress is not None:
            on_progress(view.name, 0, 0)
        writer = _writer_for(store, engine)
        with _keep_lease(store, lease):
            written, rows_written = writer(store, table, frame, lease, base)
        if on_progress is not None:
            on_progress(view.name, rows_written, rows_written)
    return MaterializationResult(
        view=view.name, store=store.url, version=written.version, rows_written=rows_written, rows=written.rows,
        mode="incremental" if since_us is not None else "full", end=end_at,
        since=micros_to_datetime(since_us) if since_us is not None else None,
        seconds=time.perf_counter() - started,
    )  # fmt: skip


Writer = Callable[[Any, "OnlineTable", "DataFrame", "Lease", "OnlineTable | None"], "tuple[OnlineTable, int]"]


def _writer_for(store: OnlineStore, engine: SparkEngine) -> Writer:
    from ..online.redis import RedisStore
    from ..online.sqlite import SQLiteStore

    local = str(engine.session.sparkContext.master).startswith("local")
    if isinstance(store, RedisStore):
        return _write_redis
    if isinstance(store, SQLiteStore) and local and not store.memory:
        return _write_sqlite
    return _write_collected


@contextmanager
def _keep_lease(store: Any, lease: Lease) -> Iterator[None]:
    """Renew the lease from the driver while Spark computes, before any executor writes."""
    from ..online.redis import RedisStore

    stop = threading.Event()
    failed: list[BaseException] = []

    def renew() -> None:
        con = None if isinstance(store, RedisStore) else getattr(store, "_connect", lambda: None)()
        try:
            while not stop.wait(_RENEW_EVERY_S):
                if isinstance(store, RedisStore):
                    store._renew(lease)
                elif con is not None:
                    store._renew(con, lease)
        except BaseException as exc:  # noqa: BLE001 - reported by the run, which then fails
            failed.append(exc)
        finally:
            if con is not None:
                con.close()

    thread = threading.Thread(target=renew, name=f"jf-lease-{lease.view}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if failed:
        raise MaterializationError(f"feature view '{lease.view}': {failed[0]}") from failed[0]


def _run_partitions(frame: DataFrame, write: Callable[[Iterator[pa.RecordBatch]], int], view: str) -> int:
    """Run ``write`` on every partition's Arrow batches on the executors; the rows written in all."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        yield pa.RecordBatch.from_pydict({"n": [write(batches)]}, schema=pa.schema([("n", pa.int64())]))

    try:
        total = frame.mapInArrow(task, "n long").agg(F.sum("n")).collect()[0][0]
    except (PySparkException, Py4JError) as exc:  # a failed task surfaces as a JVM error
        text = str(exc).strip().splitlines()
        reason = next(
            (ln for ln in text if "Error" in ln and "jupyter_features" not in ln), text[0] if text else ""
        )
        raise MaterializationError(
            f"feature view '{view}': the Spark job writing the online store failed ({reason[:500]}); "
            "readers still see the previous version"
        ) from exc
    return int(total or 0)


def _chunks(batches: Iterator[pa.RecordBatch], table: OnlineTable) -> Iterator[pa.Table]:
    """Canonical row tables of at most about PARTITION_CHUNK_ROWS rows from a partition's batches."""
    import pyarrow as pa

    from ..materialize import canonical_rows
    from .spark import _naive_utc

    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        pending.append(batch)
        size += batch.num_rows
        if size >= PARTITION_CHUNK_ROWS:
            yield canonical_rows(_naive_utc(pa.Table.from_batches(pending)), table)
            pending, size = [], 0
    if size:
        yield canonical_rows(_naive_utc(pa.Table.from_batches(pending)), table)


class _ExecutorRows:
    """Stands in for the rows a store's ``write()`` inserts: the executors write them instead.

    The store allocates the new version, then asks for the rows (SQLite: ``to_batches``;
    Redis: its ``_bulk_hset`` step, replaced on a copy of the store); at that moment the
    Spark job writes every partition into that version, and nothing is left to insert.
    Everything else — version numbers, incremental layering, the switch, the cleanup — is
    the store's own code.
    """

    num_rows = 0

    def __init__(self, run: Callable[[], int]) -> None:
        self._run = run
        self.written = 0

    def write_now(self) -> None:
        self.written = self._run()

    def to_batches(self, max_chunksize: int | None = None) -> list[pa.RecordBatch]:
        self.write_now()
        return []


# -- Redis -------------------------------------------------------------------------------------
def _write_redis(
    store: Any, table: OnlineTable, frame: DataFrame, lease: Lease, base: OnlineTable | None
) -> tuple[OnlineTable, int]:
    """RedisStore.write, with its bulk-HSET step done by the executors into the same hash."""
    url, view = store.url, table.view
    target: list[str] = []

    def write(batches: Iterator[pa.RecordBatch]) -> int:
        from ..online.redis import RedisStore

        worker = RedisStore(url)
        written = 0
        try:
            for rows in _chunks(batches, table):
                worker._bulk_hset(target[0], rows, table, lease, None)  # pipelined, renews the lease
                written += rows.num_rows
        finally:
            worker.close()
        return written

    rows = _ExecutorRows(lambda: _run_partitions(frame, write, view))

    def bulk_hset(key: str, _rows: Any, _table: Any, _lease: Any, _progress: Any) -> None:
        target.append(key)
        rows.write_now()

    driver = copy.copy(store)  # shares the client and caches; only this copy writes from Spark
    driver._bulk_hset = bulk_hset
    return driver.write(table, rows, lease=lease, base=base), rows.written


# -- SQLite --------------------------------------------------------------------------------------
def _write_sqlite(
    store: Any, table: OnlineTable, frame: DataFrame, lease: Lease, base: OnlineTable | None
) -> tuple[OnlineTable, int]:
    """SQLiteStore.write, with its batched inserts done by the executors into the new table."""
    from ..online.layout import TS_COLUMN

    url, view = store.url, table.view
    columns = [*table.entity, TS_COLUMN, *table.feature_names]
    verb = "INSERT OR REPLACE" if base is not None else "INSERT"
    types = [*table.key_types, "int64", *(f.type for f in table.features)]
    chunk_rows = store.chunk_rows

    def newest_version_table() -> str:  # the one write() has just created
        con = store._connect()
        try:
            tables: dict[int, str] = store._version_tables(con, view)
        finally:
            con.close()
        return tables[max(tables)]

    def run() -> int:
        insert = (
            f"{verb} INTO {quote(newest_version_table())} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )

        def write(batches: Iterator[pa.RecordBatch]) -> int:
            from ..online.sqlite import SQLiteStore
            from ..online.sqlite_rows import python_rows

            worker = SQLiteStore(url)
            con = worker._connect()
            written = 0
            try:
                for rows in _chunks(batches, table):
                    for batch in rows.to_batches(max_chunksize=chunk_rows):
                        with worker._txn(con):  # one writer at a time: SQLite serializes the partitions
                            worker._renew(con, lease)
                            con.executemany(insert, python_rows(batch, types))
                        written += batch.num_rows
            finally:
                con.close()
                worker.close()
            return written

        return _run_partitions(frame, write, view)

    rows = _ExecutorRows(run)
    return store.write(table, rows, lease=lease, base=base), rows.written


# -- anything else: rows collected to the driver -----------------------------------------------------
def _write_collected(
    store: Any, table: OnlineTable, frame: DataFrame, lease: Lease, base: OnlineTable | None
) -> tuple[OnlineTable, int]:
    from ..materialize import canonical_rows
    from .spark import _naive_utc

    rows = canonical_rows(_naive_utc(frame.toArrow()), table)
    return store.write(table, rows, lease=lease, base=base), rows.num_rows
