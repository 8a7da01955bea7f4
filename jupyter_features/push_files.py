"""The files of a view's push log: which of them are live, and compacting them into one.

Each push appends one parquet file, ``<time_ns>-<store>-<seq>-<id>.parquet``: many small pushes
make many small files. ``compact`` merges a view's files into one,
``<time_ns>-compacted-<id>.parquet``, which lists the files it merged in its metadata; its rows
keep their store and journal number, so a run still knows which journal entries the log covers. It writes the new file first (synced,
then renamed into place), then removes the files it merged: a crash in between leaves both, and
a file whose every origin is held by a later compacted file is not live. Readers read the live
files (``live_files``; SQL reads name them, ``files_sql``), so no reader counts a push twice or
misses one. One compaction of a view runs at a time (a lock file beside the folder).
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
from .sqltext import PUSH_SEQ, PUSH_STORE, string_literal

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CompactionResult",
    "compact",
    "covered_in",
    "files_sql",
    "is_compacted",
    "live_files",
    "read_live",
]

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


def _generation(folder: Path) -> str:
    try:
        return (folder.parent / f".{folder.name}.generation").read_text()
    except FileNotFoundError:
        return ""


def _next_generation(folder: Path) -> None:
    """Mark that a compaction put its file in place and starts removing what it merged."""
    path = folder.parent / f".{folder.name}.generation"
    tmp = folder.parent / f".{folder.name}.generation.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(uuid.uuid4().hex)
    os.replace(tmp, path)


def live_files(folder: Path) -> list[Path]:
    """The files of a view's push log a reader reads, in name (time) order: every file except
    one whose every origin is held by a later compacted file (left by a compaction that stopped
    before removing what it merged).

    A directory listing racing a compaction could miss both the new file (renamed in) and the
    merged ones (removed): a compaction changes the folder's generation between the two, and a
    listing that saw it change is taken again. Raises FileNotFoundError when a file goes while
    its metadata is read (the caller lists again)."""
    for _ in range(100):
        before = _generation(folder)
        files = _live(folder)
        if _generation(folder) == before:
            return files
    raise PushError(f"push log {folder}: compactions kept changing it while it was listed; try again")


def _live(folder: Path) -> list[Path]:
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


def files_sql(files: list[Path]) -> str:
    """SQL (DuckDB) of a FROM item reading exactly ``files`` (a listing of ``live_files``)."""
    folders = {f.parent: str(f.parent.resolve()) for f in files}  # resolved once per folder, not per file
    listed = ", ".join(string_literal(os.path.join(folders[f.parent], f.name)) for f in files)
    return f"read_parquet([{listed}])"


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
            tables.append(pq.read_table(f))
            origins += sorted(_origins(f)) if is_compacted(f) else [f.name]
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
        _next_generation(folder)  # a listing that missed the new file sees this and lists again
        for f in [*files, *stale]:  # the merged files go only once the new one is durable
            f.unlink(missing_ok=True)
        return CompactionResult(view, len(files), 1, merged.num_rows, str(folder / name))


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
