"""The files of a view's push log: which of them are live, and compacting them into one.

Each push appends one parquet file, ``<time_ns>-<store>-<seq>-<id>.parquet``: many small pushes
make many small files. ``compact`` merges a view's files into one,
``<time_ns>-compacted-<id>.parquet``, whose rows carry the name of the file each came from
(``PUSH_FROM``; also listed in the file's metadata) and keep their store and journal number, so
a run still knows which journal entries the log covers. It writes the new file first (synced,
then renamed into place), then removes the files it merged: a crash in between leaves both, and
a file whose every origin is held by a later compacted file is not live — readers skip it
(``live_files``), and SQL reads keep each origin's rows from the latest file holding them
(``dedup_sql``), so no reader ever counts a push twice or misses one. One compaction of a view
runs at a time (a lock file beside the folder).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import PushError
from .sqltext import PUSH_SEQ, PUSH_STORE, RESERVED_PREFIX, string_literal

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["PUSH_FROM", "CompactionResult", "compact", "covered_in", "dedup_sql", "live_files", "read_live"]

#: The column of a compacted file naming the push-log file each row came from.
PUSH_FROM = f"{RESERVED_PREFIX}push_from"
_FILE = f"{RESERVED_PREFIX}push_file"  # the physical file a SQL read took a row from
_META_KEY = b"jupyter_features.compacted_from"
_MARK = "compacted"
_origins_cache: dict[Path, frozenset[str]] = {}
_pairs_cache: dict[Path, frozenset[tuple[str, int]]] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction of a view's push log did."""

    view: str
    files_before: int
    files_after: int
    rows: int
    file: str | None  # the compacted file (None: nothing to compact)


def is_compacted(path: Path) -> bool:
    parts = path.name.split("-")
    return len(parts) == 3 and parts[1] == _MARK


def _origins(path: Path) -> frozenset[str]:
    """The names of the files compacted file ``path`` holds the rows of (files are immutable)."""
    import pyarrow.parquet as pq

    with _cache_lock:
        found = _origins_cache.get(path)
    if found is None:
        meta = pq.read_schema(path).metadata or {}
        found = frozenset(json.loads(meta.get(_META_KEY, b"[]")))
        with _cache_lock:
            _origins_cache[path] = found
    return found


def live_files(folder: Path) -> list[Path]:
    """The files of a view's push log a reader reads, in name (time) order: every file except
    one whose every origin is held by a later compacted file (left by a compaction that stopped
    before removing what it merged). Raises FileNotFoundError when a file goes while listed."""
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.parquet"))
    compacted = [f for f in files if is_compacted(f)]
    if not compacted:
        return files
    held: dict[str, str] = {}  # origin → the latest compacted file holding it
    for f in compacted:
        for origin in _origins(f):
            held[origin] = f.name
    out = []
    for f in files:
        origins = _origins(f) if is_compacted(f) else frozenset([f.name])
        if not origins or any(held.get(o, f.name) <= f.name for o in origins):
            out.append(f)
    return out


def read_live(folder: Path) -> pa.Table | None:
    """Every live file's rows in one table (None: no files); listed again if a concurrent
    compaction removes a file between the listing and the read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for attempt in range(5):
        try:
            files = live_files(folder)
            if not files:
                return None
            tables = [pq.read_table(f) for f in files]
        except FileNotFoundError:
            if attempt == 4:
                raise
            time.sleep(0.01 * (attempt + 1))
            continue
        tables = [t.drop_columns([PUSH_FROM]) if PUSH_FROM in t.column_names else t for t in tables]
        return pa.concat_tables(tables, promote_options="permissive")
    return None


def covered_in(path: Path, store: str) -> frozenset[int]:
    """Journal numbers of ``store`` whose pushes compacted file ``path`` holds."""
    import pyarrow.parquet as pq

    with _cache_lock:
        pairs = _pairs_cache.get(path)
    if pairs is None:
        table = pq.read_table(path, columns=[PUSH_STORE, PUSH_SEQ])
        pairs = frozenset(
            (s, q)
            for s, q in zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)
            if s is not None and q is not None
        )
        with _cache_lock:
            _pairs_cache[path] = pairs
    return frozenset(q for s, q in pairs if s == store)


def dedup_sql(location: str) -> str:
    """SQL (DuckDB) of a FROM item reading every file at ``location`` (the log's glob) in one scan,
    keeping each origin's rows from the latest file holding them: a push merged into a compacted
    file whose original is not removed yet is read once."""
    origin = f"coalesce({PUSH_FROM}, parse_filename({_FILE}))"
    scan = (
        f"SELECT * FROM read_parquet({string_literal(location)}, union_by_name = true, "
        f"filename = {string_literal(_FILE)}) UNION ALL BY NAME "  # PUSH_FROM even before any compaction
        f"SELECT CAST(NULL AS VARCHAR) AS {PUSH_FROM}, CAST(NULL AS VARCHAR) AS {_FILE} WHERE FALSE"
    )
    return (
        f"(SELECT * EXCLUDE ({_FILE}) FROM ({scan}) QUALIFY parse_filename({_FILE}) = "
        f"max(parse_filename({_FILE})) OVER (PARTITION BY {origin}))"
    )


@contextmanager
def _compaction_lock(folder: Path, view: str) -> Iterator[None]:
    import fcntl

    lock_path = folder.parent / f".{folder.name}.compact.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PushError(
                f"push log of feature view '{view}': another compaction of it is running; try again when it ends"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compact(folder: Path, view: str) -> CompactionResult:
    """Merge the live files of ``folder`` (a view's push log) into one; remove what it merged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not folder.is_dir():
        return CompactionResult(view, 0, 0, 0, None)
    with _compaction_lock(folder, view):
        every = sorted(folder.glob("*.parquet"))
        files = live_files(folder)
        stale = [f for f in every if f not in set(files)]  # merged by a compaction that stopped
        if len(files) <= 1:
            for f in stale:
                f.unlink(missing_ok=True)
            return CompactionResult(view, len(files), len(files), 0, None)
        tables, origins = [], []
        for f in files:
            table = pq.read_table(f)
            if PUSH_FROM in table.column_names:
                origins += sorted(_origins(f))
            else:
                table = table.append_column(PUSH_FROM, pa.array([f.name] * table.num_rows, pa.string()))
                origins.append(f.name)
            tables.append(table)
        merged = pa.concat_tables(tables, promote_options="permissive")
        meta = dict(merged.schema.metadata or {})
        meta[_META_KEY] = json.dumps(origins).encode()
        merged = merged.replace_schema_metadata(meta)
        name = f"{time.time_ns()}-{_MARK}-{uuid.uuid4().hex[:8]}.parquet"
        if name <= files[-1].name:  # names order the files: the new one comes after what it merged
            name = f"{int(files[-1].name.split('-')[0]) + 1}-{_MARK}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(merged, tmp, compression="zstd")
        _sync(tmp)
        os.replace(tmp, folder / name)
        _sync(folder)
        for f in [*files, *stale]:  # the merged files go only once the new one is durable
            f.unlink(missing_ok=True)
        return CompactionResult(view, len(files), 1, merged.num_rows, str(folder / name))


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
