"""Materialization from Spark: the executors compute the latest rows and write them.

The run (``materialize``) begins a new version in the store, then asks for the rows to
be written into it: every partition opens the store's writer for that version from the
writer's handle (``VersionWriter.handle`` → ``WriterHandle.resume``) and writes its rows
in chunks, each renewing the run's lease — pipelined ``HSET``s for Redis, batched
``INSERT`` transactions for a SQLite file the executors can reach. The run switches
readers to the version only when every partition has succeeded; a failed job aborts it,
leaving the previous version served. A writer without a handle gets the rows collected to
the driver instead: SQLite in memory, and a SQLite file unless the executors share this
machine (``executors.on_this_host``: local masters only). A Redis writer resumed on an
executor first finds the run's lock on its server, so an executor that reaches another
Redis (``127.0.0.1`` on another machine) fails the run before writing anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ...errors import MaterializationError
from ...times import naive_utc_table
from .executors import on_this_host

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from ...online import VersionWriter, WriterHandle
    from . import SparkEngine

__all__ = ["SparkLatestRows", "PARTITION_CHUNK_ROWS", "failure_reason"]

#: Rows a partition converts and writes at a time (bounds an executor's memory).
PARTITION_CHUNK_ROWS = 50_000
_RENEW_EVERY_S = 20.0


class SparkLatestRows:
    """The rows a run writes (the latest row per entity, or a windowed view's events) as a lazy
    Spark DataFrame, written by the executors."""

    count: int | None = None  # known only once written

    def __init__(self, engine: SparkEngine, frame: DataFrame, entity: tuple[str, ...], owner: str) -> None:
        from pyspark.sql import types as T

        self.engine = engine
        self.frame = frame
        self.owner = owner  # names the view in messages: "feature view 'v'"
        self.key_types = tuple(
            "int64" if isinstance(frame.schema[k].dataType, T.IntegralType) else "string" for k in entity
        )

    def write_to(self, writer: VersionWriter, progress: Callable[[int], None] | None = None) -> int:
        handle = writer.handle(other_host=not on_this_host(self.engine.master))
        if handle is None:  # the executors cannot reach the store's writer: collect to the driver
            with _keep_lease(writer, self.owner), _job_failure(self.owner):
                rows = naive_utc_table(self.frame.toArrow())
            return writer.write_batch(rows, progress)
        with _keep_lease(writer, self.owner), _job_failure(self.owner):
            written = _run_partitions(self.frame, handle)
        if progress is not None:
            progress(written)
        return written


@contextmanager
def _keep_lease(writer: VersionWriter, owner: str) -> Iterator[None]:
    """Renew the lease from the driver while Spark computes, before any executor writes."""
    stop = threading.Event()
    failed: list[BaseException] = []

    def renew() -> None:
        try:
            while not stop.wait(_RENEW_EVERY_S):
                writer.renew()
        except BaseException as exc:  # noqa: BLE001 - reported by the run, which then fails
            failed.append(exc)

    thread = threading.Thread(target=renew, name=f"jf-lease {owner}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if failed:
        raise MaterializationError(f"{owner}: {failed[0]}") from failed[0]


@contextmanager
def _job_failure(owner: str) -> Iterator[None]:
    """A failed Spark job (it surfaces as a JVM error) as a MaterializationError saying why."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    try:
        yield
    except (PySparkException, Py4JError) as exc:
        raise MaterializationError(
            f"{owner}: the Spark job computing the rows for the online store failed "
            f"({failure_reason(str(exc))}); readers still see the previous version"
        ) from exc


def _run_partitions(frame: DataFrame, handle: WriterHandle) -> int:
    """Every partition writes its rows through ``handle`` on the executors; the rows written in all."""
    from pyspark.sql import functions as F

    def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        writer = handle.resume()
        written = 0
        try:
            for rows in _chunks(batches):
                written += writer.write_batch(rows)  # renews the lease as it goes
        finally:
            writer.close()
        yield pa.RecordBatch.from_pydict({"n": [written]}, schema=pa.schema([("n", pa.int64())]))

    total = frame.mapInArrow(task, "n long").agg(F.sum("n")).collect()[0][0]
    return int(total or 0)


def failure_reason(text: str) -> str:
    """The line of a failed Spark job's error that says why: our own error raised on an executor
    if there is one, else the first error line that is not a traceback's."""
    lines = text.strip().splitlines()
    ours = [ln.split("jupyter_features.errors.", 1)[1] for ln in lines if "jupyter_features.errors." in ln]
    if ours:
        return ours[-1].strip()[:1000]
    return next(
        (ln for ln in lines if "Error" in ln and "jupyter_features" not in ln), lines[0] if lines else ""
    )[:500]


def _chunks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.Table]:
    """Tables of at most about PARTITION_CHUNK_ROWS rows from a partition's batches."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        pending.append(batch)
        size += batch.num_rows
        if size >= PARTITION_CHUNK_ROWS:
            yield naive_utc_table(pa.Table.from_batches(pending))
            pending, size = [], 0
    if size:
        yield naive_utc_table(pa.Table.from_batches(pending))
