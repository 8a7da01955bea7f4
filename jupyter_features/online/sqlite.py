"""SQLite online store: one typed table per view version, behind a SQL view readers query.

Layout in the database file (WAL mode, so reads never wait for a materialization):

- ``"<view>__v<N>"``: version N, one row per entity: key columns (INTEGER PRIMARY KEY
  for a single integer key), ``__jf_ts`` (event time, µs) and one typed column per feature.
- ``"<view>"``: a SQL view ``SELECT N AS __jf_v, * FROM "<view>__v<N>"``. Readers only
  ever query this name, so the switch to a new version is replacing this view and the
  metadata row in one transaction; prepared statements re-prepare themselves.
- ``"<view>__v<N>__tiles"``: a windowed version's partial aggregates per entity, hour and
  day (``sqlite_tiles``), which its reads combine with the raw events at the windows' edges;
  ``"<view>__v<N>__pushed_tiles"``: the same, per hour, of the events pushed into it.
- ``__jf_online``: view → current version and its metadata (features, types, TTL, end).
- ``__jf_online_locks``: one row per running materialization (owner, lease expiry).

A run that dies leaves its half-written ``__v<N>`` table unreferenced; the next run of
that view drops it.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..errors import MaterializationBusyError, NotMaterializedError, OnlineStoreError
from ..sqlite_files import use_wal
from ..sqltext import EVENT_TS, quote
from .canonical import canonical_rows
from .layout import Lease, OnlineTable, PushReceipt, Snapshot, WriterHandle, encode_key
from .rows import best_row, push_columns_of, push_rows_of
from .scan import canonical_schema, sqlite_batches
from .sqlite_push import (
    JOURNAL,
    create_rows_sql,
    ensure_push_schema,
    has_pushed,
    insert_push,
    insert_pushed,
    journal_push,
    journal_since,
    point_pushed_view,
    pushed_name,
    read_snapshot,
    replay_journal,
    rows_name,
    served_sql,
    store_identity,
)
from .sqlite_rows import DECODERS, as_int, as_text, create_sql, group_by_entity, python_rows
from .sqlite_tiles import build_tiles, create_tiles_sql, pushed_tiles_of, served_tiles, tiles_name
from .sqlite_windows import WindowReadPlan, read_windows

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SQLiteStore"]

_META = "__jf_online"
_LOCKS = "__jf_online_locks"
_VERSION = "__jf_v"
LEASE_SECONDS = 120.0
_MAX_PARAMS = 30_000  # bound parameters per query (SQLite allows 32,766)


class _Plan:
    """A prepared read: SQL text (cached by sqlite3 as a prepared statement) and decoding.

    One statement reads the entity's materialized row and the rows pushed since, from the
    same version; the read picks the best row at T in Python (``rows.best_row``).
    """

    __slots__ = (
        "sql", "table", "version", "decoders", "normalize", "nkeys", "entity", "plain", "positions",
        "width", "ttl", "lists",
    )  # fmt: skip

    def __init__(self, table: OnlineTable, features: Sequence[str] | None, n: int) -> None:
        idx = table.feature_index(features)
        feats = [table.features[i] for i in idx]
        keys = table.entity
        cols = ", ".join([_VERSION, *(quote(k) for k in keys), *(quote(c) for c in table.row_columns)])
        if len(keys) == 1:
            where = f"{quote(keys[0])} = ?" if n == 1 else f"{quote(keys[0])} IN ({', '.join('?' * n)})"
        else:
            tup = "(" + ", ".join("?" * len(keys)) + ")"
            where = f"({', '.join(quote(k) for k in keys)}) IN (VALUES {', '.join([tup] * n)})"
        self.sql = (
            f"SELECT {cols} FROM {quote(table.view)} WHERE {where} "
            f"UNION ALL SELECT {cols} FROM {quote(pushed_name(table.view))} WHERE {where}"
        )
        self.table = table
        self.version = table.version
        self.decoders = [DECODERS.get(f.type) for f in feats]
        self.plain = all(d is None for d in self.decoders)
        self.normalize = [as_int if t == "int64" else as_text for t in table.key_types]
        self.nkeys = len(keys)
        self.entity = keys
        first = 1 + table.created  # after the event time (and created)
        self.positions = [first + i for i in idx]  # in a stored row
        self.width = len(table.row_columns)
        self.ttl = table.ttl_us
        #: stored columns holding float lists as BLOBs: decoded before breaking ties
        self.lists = [first + i for i, f in enumerate(table.features) if f.type == "list<float>"]


class SQLiteStore:
    """Online store in one SQLite file: ``sqlite:///path.db`` (``?chunk_rows=N`` rows per
    write transaction, ``?max_size_mb=N`` a size cap, ``?mode=ro`` to only read)."""

    chunk_rows = 100_000

    def __init__(self, url: str) -> None:
        self.url = url
        rest = url.split("://", 1)[1] if "://" in url else url
        rest = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
        path, _, query = rest.partition("?")
        options = parse_qs(query)
        if "chunk_rows" in options:
            self.chunk_rows = max(1, int(options["chunk_rows"][0]))
        #: ``?max_size_mb=N`` caps the file: a run that would grow past it fails cleanly.
        self.max_size_mb = float(options["max_size_mb"][0]) if "max_size_mb" in options else None
        if not path:
            raise OnlineStoreError(f"online store URL {url!r} names no file; use sqlite:///path/online.db")
        self.memory = path == ":memory:"
        #: ``?mode=ro``: open the file read-only (a server's reads); writes fail cleanly.
        self.read_only = options.get("mode", [""])[0] == "ro" and not self.memory
        if self.memory:
            self.path = f"file:jf_online_{id(self)}?mode=memory&cache=shared"
        else:
            self.path = str(Path(path).expanduser())
            if not self.read_only:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._tables: dict[str, OnlineTable] = {}
        self._parsed: dict[str, tuple[str, OnlineTable]] = {}  # view -> (meta text, its table)
        self._plans: dict[Any, _Plan | WindowReadPlan] = {}
        self._push_schema = False  # the journal's tables exist
        self._identity: str | None = None
        self._keepalive = self._connect() if self.memory else None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    # -- connections -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                if not Path(self.path).is_file():
                    raise OnlineStoreError(
                        f"online store {self.url}: no file {self.path} to read; materialize a view first"
                    )
                target = Path(self.path).resolve().as_uri() + "?mode=ro"
            else:
                target = self.path
            con = sqlite3.connect(
                target, isolation_level=None, check_same_thread=False, cached_statements=512,
                timeout=30.0, uri=self.memory or self.read_only,
            )  # fmt: skip
            if not self.memory and not self.read_only:
                use_wal(con)
                con.execute("PRAGMA synchronous=NORMAL")
            if self.max_size_mb is not None:
                page = con.execute("PRAGMA page_size").fetchone()[0]
                con.execute(f"PRAGMA max_page_count = {max(1, int(self.max_size_mb * 1e6 / page))}")
        except sqlite3.Error as exc:
            raise OnlineStoreError(f"online store {self.url}: SQLite cannot open {self.path}: {exc}") from exc
        return con

    def _con(self) -> sqlite3.Connection:
        try:
            con: sqlite3.Connection = self._local.con
        except AttributeError:
            con = self._local.con = self._connect()
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            del self._local.con
        if self._keepalive is not None:
            self._keepalive.close()
            self._keepalive = None

    def _ensure_schema(self, con: sqlite3.Connection) -> None:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_META} (view TEXT PRIMARY KEY, version INTEGER NOT NULL, meta TEXT NOT NULL)"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_LOCKS} (view TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)"
        )

    def _failed(self, what: str, exc: sqlite3.Error) -> OnlineStoreError:
        return OnlineStoreError(f"online store {self.url}: {what} failed: {exc}")

    # -- metadata ----------------------------------------------------------------------
    def _meta(self, con: sqlite3.Connection, view: str) -> OnlineTable | None:
        try:
            row = con.execute(f"SELECT meta FROM {_META} WHERE view = ?", (view,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise self._failed(f"reading the metadata of '{view}'", exc) from exc
        if not row:
            return None
        text = row[0]
        parsed = self._parsed.get(view)
        if parsed is not None and parsed[0] == text:  # unchanged since last read: parsed once
            return parsed[1]
        table = OnlineTable.from_json(text)
        self._parsed[view] = (text, table)
        return table

    def current(self, view: str) -> OnlineTable | None:
        table = self._meta(self._con(), view)
        if table is None:
            self._tables.pop(view, None)
        else:
            self._tables[view] = table
        return table

    def views(self) -> dict[str, OnlineTable]:
        """Every view this store serves, with the version readers see now."""
        try:
            found = self._con().execute(f"SELECT meta FROM {_META} ORDER BY view").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise self._failed("listing the views", exc) from exc
        tables = [OnlineTable.from_json(meta) for (meta,) in found]
        return {t.view: t for t in tables}

    def _table(self, view: str, refresh: bool = False) -> OnlineTable:
        table = None if refresh else self._tables.get(view)
        if table is None:
            table = self.current(view)
            if table is None:
                raise self._not_materialized(view)
        return table

    def _not_materialized(self, view: str) -> NotMaterializedError:
        return NotMaterializedError(
            f"feature view '{view}' is not materialized in {self.url}; "
            f"run ws.materialize(['{view}']) or `jupyter-features materialize {view}`"
        )

    # -- reads (the hot path) ------------------------------------------------------------
    def read(
        self,
        view: str,
        features: Sequence[str] | None,
        entity_rows: Sequence[Mapping[str, Any]],
        at: int | None = None,
    ) -> tuple[OnlineTable, list[list[Any]]]:
        n = len(entity_rows)
        at_us = time.time_ns() // 1000 if at is None else at
        if type(features) is list:
            features = tuple(features)
        plan = self._plans.get((view, features, n))
        if plan is None:
            plan = self._plan(view, features, n, refresh=False)
        if n == 0 or 2 * n * plan.nkeys + 4 > _MAX_PARAMS:
            return self._read_in_slices(view, features, entity_rows, plan, at_us)
        for attempt in (0, 1):
            try:
                return self._run(plan, entity_rows, n, at_us)
            except _Stale:
                plan = self._plan(view, features, n, refresh=True)
            except (KeyError, TypeError):
                plan.table.keys_of(entity_rows)  # raises the clear error
                raise
            except sqlite3.Error as exc:
                if attempt:
                    raise self._failed(f"reading '{view}'", exc) from exc
                plan = self._plan(view, features, n, refresh=True)
        raise OnlineStoreError(f"online store {self.url}: '{view}' changed twice during one read; retry")

    def _read_in_slices(
        self,
        view: str,
        features: Sequence[str] | None,
        entity_rows: Sequence[Mapping[str, Any]],
        plan: _Plan | WindowReadPlan,
        at_us: int,
    ) -> tuple[OnlineTable, list[list[Any]]]:
        """Batches past SQLite's limit of bound parameters, one query per slice (none for 0 rows)."""
        step = max(1, (_MAX_PARAMS - 4) // (2 * plan.nkeys))
        table = plan.table
        width = len(plan.decoders) if isinstance(plan, _Plan) else len(plan.evaluator.features)
        columns: list[list[Any]] = [[] for _ in range(width)]
        for i in range(0, len(entity_rows), step):
            table, part = self.read(view, features, entity_rows[i : i + step], at_us)
            for column, values in zip(columns, part, strict=True):
                column += values
        return table, columns

    def _plan(
        self, view: str, features: Sequence[str] | None, n: int, refresh: bool
    ) -> _Plan | WindowReadPlan:
        table = self._table(view, refresh)
        if table.window is None:
            plan: _Plan | WindowReadPlan = _Plan(table, features, n)
        else:
            con = self._con()
            plan = WindowReadPlan(table, features, n, _META, served_tiles(con, table), has_pushed(con, table))
        if len(self._plans) > 4096:
            self._plans.clear()
        key = (view, tuple(features) if features is not None else None, n)
        self._plans[key] = plan
        return plan

    def _run(
        self, plan: _Plan | WindowReadPlan, entity_rows: Sequence[Mapping[str, Any]], n: int, at_us: int
    ) -> tuple[OnlineTable, list[list[Any]]]:
        con = self._con()
        if not isinstance(plan, _Plan):  # a windowed view: evaluated over the events at T
            values = read_windows(con, plan, entity_rows, at_us)
            if values is None:
                raise _Stale
            return plan.table, values
        entity = plan.entity
        skip = 1 + plan.nkeys
        if plan.nkeys == 1:
            k, norm = entity[0], plan.normalize[0]
            keys: list[Any] = [norm(row[k]) for row in entity_rows]
            params: list[Any] = keys
        else:
            keys = [
                tuple(f(row[k]) for f, k in zip(plan.normalize, entity, strict=True)) for row in entity_rows
            ]
            params = [v for key in keys for v in key]
        found = con.execute(plan.sql, params + params).fetchall()
        version = plan.version
        for r in found:
            if r[0] != version:
                raise _Stale
        if n == 1:
            best = self._best(plan, [r[skip:] for r in found], at_us) if found else None
            if best is None:
                return plan.table, [[None] for _ in plan.decoders]
            if plan.plain:
                return plan.table, [[best[p]] for p in plan.positions]
            return plan.table, [
                [v if d is None or v is None else d(v)]
                for v, d in ((best[p], d) for p, d in zip(plan.positions, plan.decoders, strict=True))
            ]
        grouped = group_by_entity(found, plan.nkeys, skip)
        empty = (None,) * len(plan.decoders)
        ordered = []
        for key in keys:
            rows = grouped.get(key)
            best = self._best(plan, rows, at_us) if rows else None
            ordered.append(empty if best is None else tuple(best[p] for p in plan.positions))
        columns = [list(c) for c in zip(*ordered, strict=True)] if ordered else [[] for _ in plan.decoders]
        if not plan.plain:
            for i, d in enumerate(plan.decoders):
                if d is not None:
                    columns[i] = [None if v is None else d(v) for v in columns[i]]
        return plan.table, columns

    @staticmethod
    def _best(plan: _Plan, rows: list[Any], at_us: int) -> Any:
        if len(rows) > 1 and plan.lists:  # float lists compare element by element, not as bytes
            decode = DECODERS["list<float>"]
            assert decode is not None
            rows = [list(r) for r in rows]
            for r in rows:
                for p in plan.lists:
                    if r[p] is not None:
                        r[p] = decode(r[p])
            best = best_row(rows, at_us, plan.ttl, plan.width)
            if best is not None:  # back to the stored form the plan decodes
                best = list(best)
                for p in plan.lists:
                    if best[p] is not None:
                        best[p] = _blob_of(best[p])
            return best
        return best_row(rows, at_us, plan.ttl, plan.width)

    def scan(self, view: str, *, batch_rows: int = 100_000) -> tuple[OnlineTable, pa.RecordBatchReader]:
        """Every row readers are served now, in the canonical form (see ``scan.py``), read in one
        snapshot of the file: a run switching versions meanwhile changes nothing of it."""
        import pyarrow as pa

        con = self._connect()
        try:
            con.execute("BEGIN")  # the first read below starts the snapshot the whole scan sees
            table = self._meta(con, view)
            if table is None:
                raise NotMaterializedError(
                    f"feature view '{view}' is not materialized in {self.url}; "
                    f"run ws.materialize(['{view}']) or `jupyter-features materialize {view}`"
                )
            columns = ", ".join(quote(c) for c in (*table.entity, EVENT_TS, *table.feature_names))
            rows = con.execute(f"SELECT {columns} FROM ({served_sql(con, table)})")
        except sqlite3.Error as exc:
            con.close()
            raise self._failed(f"scanning '{view}'", exc) from exc
        except BaseException:
            con.close()
            raise

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from sqlite_batches(rows, table, batch_rows)
            except sqlite3.Error as exc:
                raise self._failed(f"scanning '{view}'", exc) from exc
            finally:
                con.close()

        return table, pa.RecordBatchReader.from_batches(canonical_schema(table), batches())

    # -- materialization -----------------------------------------------------------------
    @contextmanager
    def lock(self, view: str) -> Iterator[Lease]:
        lease = Lease(view)
        con = self._connect()
        try:
            try:
                self._ensure_schema(con)
                with _transaction(con):
                    row = con.execute(
                        f"SELECT owner, expires FROM {_LOCKS} WHERE view = ?", (view,)
                    ).fetchone()
                    if row is not None and row[1] > time.time() and not Lease.stale(row[0]):
                        host, pid, _ = row[0].split("|", 2)
                        raise MaterializationBusyError(
                            f"feature view '{view}' is already being materialized to {self.url} "
                            f"(process {pid} on {host}); wait for that run to finish, then retry"
                        )
                    con.execute(
                        f"INSERT OR REPLACE INTO {_LOCKS} (view, owner, expires) VALUES (?, ?, ?)",
                        (view, lease.token, time.time() + LEASE_SECONDS),
                    )
            except sqlite3.Error as exc:
                raise self._failed(f"locking '{view}'", exc) from exc
            lease.hold()
            try:
                yield lease
            finally:
                lease.drop()
                try:
                    con.execute(f"DELETE FROM {_LOCKS} WHERE view = ? AND owner = ?", (view, lease.token))
                except sqlite3.Error:
                    pass  # the lease expires by itself
        finally:
            con.close()

    def _version_tables(self, con: sqlite3.Connection, view: str) -> dict[int, str]:
        """Version → its table (of materialized rows), for every version in the file."""
        pattern = re.compile(rf"^{re.escape(view)}__v(\d+)(?:__rows|__tiles|__pushed_tiles)?$")
        out = {}
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            m = pattern.match(name)
            if m:
                out[int(m.group(1))] = f"{view}__v{m.group(1)}"
        return out

    def begin(
        self,
        table: OnlineTable,
        *,
        lease: Lease,
        base: OnlineTable | None = None,
        covered: Collection[int] = (),
        rows: int | None = None,
    ) -> SQLiteWriter:
        """Start writing a new version of ``table.view``: an empty table (or a copy of ``base``'s
        rows within the TTL, for an incremental run) that readers do not see until ``switch()``,
        and an empty table for the rows pushed into it. ``covered``: the push-journal entries
        the run's offline read holds (the switch replays the others)."""
        view = table.view
        if view.startswith(("__jf_", "sqlite_")):
            raise OnlineStoreError(
                f"feature view name '{view}' is reserved in the SQLite online store; rename it"
            )
        con = self._connect()
        new = None
        try:
            self._ensure_schema(con)
            current = self._meta(con, view)
            existing = self._version_tables(con, view)
            version = max([current.version if current else 0, *existing]) + 1
            new = f"{view}__v{version}"
            upsert = base is not None and current is not None and current.version == base.version
            with _transaction(con):
                _renew(con, lease, self.url)
                for v, name in existing.items():  # garbage of runs that died
                    if current is None or v != current.version:
                        con.execute(f"DROP TABLE IF EXISTS {quote(name)}")
                        con.execute(f"DROP TABLE IF EXISTS {quote(rows_name(view, v))}")
                        con.execute(f"DROP TABLE IF EXISTS {quote(tiles_name(view, v))}")
                        con.execute(f"DROP TABLE IF EXISTS {quote(pushed_tiles_of(tiles_name(view, v)))}")
                for statement in create_sql(new, table):
                    con.execute(statement)
                for statement in create_rows_sql(rows_name(view, version), table):
                    con.execute(statement)
                for statement in create_tiles_sql(tiles_name(view, version), table):
                    con.execute(statement)
                if upsert and current is not None:
                    where = (
                        f" WHERE {EVENT_TS} >= {int(table.cutoff_us)}" if table.cutoff_us is not None else ""
                    )
                    con.execute(
                        f"INSERT INTO {quote(new)} SELECT * FROM {quote(existing[current.version])}{where}"
                    )
        except BaseException as exc:
            _drop_quietly(con, new)
            _drop_quietly(con, new and new + "__rows")
            _drop_quietly(con, new and new + "__tiles")
            _drop_quietly(con, new and new + "__pushed_tiles")
            con.close()
            if isinstance(exc, sqlite3.Error):
                raise self.write_error(view, exc) from exc
            raise
        previous = existing.get(current.version) if current is not None else None
        writer = SQLiteWriter(
            self, con, table.with_version(version, 0), lease, new, upsert=upsert, previous=previous
        )
        writer.covered = frozenset(covered)
        writer.since_us = base.end_us if upsert and base is not None else None
        return writer

    def resume(self, handle: WriterHandle) -> SQLiteWriter:
        """A writer of more rows into the version ``handle`` names, in another process."""
        return SQLiteWriter(
            self,
            self._connect(),
            handle.table,
            handle.lease,
            handle.target,
            upsert=handle.upsert,
            owner=False,
        )

    # -- pushes ----------------------------------------------------------------------------
    def identity(self) -> str:
        """This store's identity (kept in the file), which push logs record."""
        if self._identity is not None:
            return self._identity
        con = self._con()
        try:
            with _transaction(con):
                ensure_push_schema(con)
                self._identity = store_identity(con)
                return self._identity
        except sqlite3.Error as exc:
            raise self._failed("reading the store's identity", exc) from exc

    def push(self, view: str, rows: pa.Table, *, definition: str | None = None) -> PushReceipt:
        """Add ``rows`` (keys, event time, [created,] features, as a view computes them) to the
        version readers see now, and to the push journal, in one transaction: the next read
        sees all of them or, if it fails, none."""
        con = self._con()
        if getattr(self._local, "pushing", None) is not con:
            # pushes insert rows at random keys, rewriting many index pages per commit: a larger
            # cache and fewer, larger checkpoints copy each hot page back less often (set on the
            # connection that pushes only: readers' connections keep SQLite's defaults)
            con.execute("PRAGMA cache_size=-32768")
            con.execute("PRAGMA wal_autocheckpoint=8000")
            self._local.pushing = con
        table = self._table(view)
        push = push_columns_of(rows, table)
        if not len(push):
            return PushReceipt(view, table.version, None, 0)
        try:
            with _transaction(con):  # holds the write lock: no switch until it commits
                if not self._push_schema:
                    ensure_push_schema(con)
                current = self._meta(con, view)
                if current is None:
                    raise self._not_materialized(view)
                current.check_definition(definition, self.url)
                if current.version != table.version:  # switched since: encode for the version served
                    if current.layout != table.layout:
                        push = push_columns_of(rows, current)
                    table = self._tables[view] = current
                seq = journal_push(con, view, table, push)
                insert_push(con, rows_name(view, table.version), table, push, seq)
        except sqlite3.Error as exc:
            raise self.write_error(view, exc, what="pushing to") from exc
        self._push_schema = True
        return PushReceipt(view, table.version, seq, len(push))

    def change_token(self) -> int | None:
        """A number that stays the same while no other connection commits to the file
        (``PRAGMA data_version``): a replica polls it, and reads ``push_state`` only when it
        moved. None: this store cannot tell (an in-memory store shares one cache)."""
        if self.memory:
            return None
        try:
            return int(self._con().execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    def push_state(self, view: str) -> tuple[int, int] | None:
        """(version served, last push journaled) for ``view``, or None if it is not served: a
        replica polls it to see switches and pushes."""
        con = self._con()
        try:
            row = con.execute(f"SELECT version FROM {_META} WHERE view = ?", (view,)).fetchone()
            if row is None:
                return None
            last = con.execute(f"SELECT max(seq) FROM {JOURNAL} WHERE view = ?", (view,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return (int(row[0]), 0) if row is not None else None
            raise self._failed(f"reading the state of '{view}'", exc) from exc
        return int(row[0]), int(last[0] or 0)

    def snapshot(self, view: str) -> Snapshot:
        """Every row of the version served now (materialized and pushed) with the last push
        journaled, read in one transaction: what a replica loads."""
        con = self._connect()
        try:
            con.execute("BEGIN")
            table = self._meta(con, view)
            if table is None:
                raise self._not_materialized(view)
            rows = read_snapshot(con, table)
            try:
                last = con.execute(f"SELECT max(seq) FROM {JOURNAL} WHERE view = ?", (view,)).fetchone()[0]
            except sqlite3.OperationalError:
                last = None
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._failed(f"reading '{view}'", exc) from exc
        finally:
            con.close()
        return Snapshot(table, {encode_key(k, table.key_types): v for k, v in rows.items()}, int(last or 0))

    def pushes_since(self, view: str, table: OnlineTable, seq: int) -> list[tuple[int, dict[str, list[Any]]]]:
        """The pushes of ``view`` journaled after ``seq`` (in ``table``'s layout), rows by encoded key."""
        try:
            return journal_since(self._con(), table, seq, _journal_key(table.key_types))
        except sqlite3.Error as exc:
            raise self._failed(f"reading the pushes of '{view}'", exc) from exc

    def write_error(self, view: str, exc: sqlite3.Error, what: str = "materializing") -> OnlineStoreError:
        hint = " (free disk space, then run again)" if "full" in str(exc) else ""
        return OnlineStoreError(
            f"online store {self.url}: {what} '{view}' failed: {exc}{hint}; "
            + ("readers still see the previous version" if what == "materializing" else "nothing was written")
        )

    def switch_version(self, con: sqlite3.Connection, writer: SQLiteWriter) -> OnlineTable:
        """Point readers at ``writer``'s version (the store's part of ``SQLiteWriter.switch``)."""
        view, lease = writer.table.view, writer.lease
        pushed = rows_name(view, writer.table.version)
        if writer.table.window is not None:  # the events' tiles, before readers see them
            with _transaction(con):
                _renew(con, lease, self.url)
                build_tiles(con, writer.target, tiles_name(view, writer.table.version), writer.table)
        with _transaction(con):
            _renew(con, lease, self.url)
            counted = quote(writer.target)
            if writer.table.window is not None:  # events: count the entities
                counted = (
                    f"(SELECT DISTINCT {', '.join(quote(k) for k in writer.table.entity)} FROM {counted})"
                )
            count = con.execute(f"SELECT count(*) FROM {counted}").fetchone()[0]
            written = writer.table.with_version(writer.table.version, count)
            # Pushes that reached the store while the run read its rows, and any the run's
            # offline read does not hold, go into the new version before readers see it.
            ensure_push_schema(con)
            replay_journal(con, written, pushed, writer.covered, writer.since_us)
            con.execute(f"DROP VIEW IF EXISTS {quote(view)}")
            con.execute(
                f"CREATE VIEW {quote(view)} AS SELECT {written.version} AS {_VERSION}, * FROM {quote(writer.target)}"
            )
            point_pushed_view(con, written, pushed)
            con.execute(
                f"INSERT OR REPLACE INTO {_META} (view, version, meta) VALUES (?, ?, ?)",
                (view, written.version, written.to_json()),
            )
        if writer.previous is not None:
            try:
                con.execute(f"DROP TABLE IF EXISTS {quote(writer.previous)}")
                con.execute(f"DROP TABLE IF EXISTS {quote(writer.previous + '__rows')}")
                con.execute(f"DROP TABLE IF EXISTS {quote(writer.previous + '__tiles')}")
                con.execute(f"DROP TABLE IF EXISTS {quote(writer.previous + '__pushed_tiles')}")
            except sqlite3.Error:
                pass  # dropped by the next run
        self._tables[view] = written
        return written


class SQLiteWriter:
    """One version of a view being written into a SQLite store (see ``OnlineStore.begin``)."""

    def __init__(
        self,
        store: SQLiteStore,
        con: sqlite3.Connection,
        table: OnlineTable,
        lease: Lease,
        target: str,
        *,
        upsert: bool,
        previous: str | None = None,
        owner: bool = True,
    ) -> None:
        self.store = store
        self.table = table
        self.lease = lease
        self.target = target
        self.upsert = upsert
        self.previous = previous
        self.owner = owner  # began the version here: may switch or abort it
        self.covered: frozenset[int] = frozenset()  # push-journal entries the run's rows hold
        self.since_us: int | None = None  # an incremental run's watermark
        self._con: sqlite3.Connection | None = con
        columns = [*table.entity, *table.row_columns]
        verb = "INSERT OR REPLACE" if upsert else "INSERT"
        self._insert = (
            f"{verb} INTO {quote(target)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        self._types = [
            *table.key_types,
            "int64",
            *(["int64"] if table.created else []),
            *(f.type for f in table.stored),
        ]

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            raise OnlineStoreError(
                f"online store {self.store.url}: the write of '{self.table.view}' version "
                f"{self.table.version} is already finished"
            )
        return self._con

    def write_batch(self, rows: pa.Table, progress: Callable[[int], None] | None = None) -> int:
        """Insert ``rows`` (keys, event time, features as an engine computed them), one
        transaction per ``chunk_rows`` rows, renewing the lease each time."""
        con = self._connection()
        canonical = canonical_rows(rows, self.table)
        try:
            for batch in canonical.to_batches(max_chunksize=self.store.chunk_rows):
                data = python_rows(batch, self._types)
                with _transaction(con):
                    _renew(con, self.lease, self.store.url)
                    con.executemany(self._insert, data)
                if progress is not None:
                    progress(batch.num_rows)
        except sqlite3.Error as exc:
            raise self.store.write_error(self.table.view, exc) from exc
        return canonical.num_rows

    def write_pushed(self, rows: pa.Table) -> int:
        """Insert ``rows`` into the version's table of pushed rows (see ``VersionWriter``)."""
        con = self._connection()
        pairs = push_rows_of(rows, self.table)
        try:
            with _transaction(con):
                _renew(con, self.lease, self.store.url)
                insert_pushed(con, self.target + "__rows", self.table, pairs, 0)
        except sqlite3.Error as exc:
            raise self.store.write_error(self.table.view, exc) from exc
        return len(pairs)

    def renew(self) -> None:
        try:
            with _transaction(self._connection()):
                _renew(self._connection(), self.lease, self.store.url)
        except sqlite3.Error as exc:
            raise self.store.write_error(self.table.view, exc) from exc

    def handle(self, *, other_host: bool = False) -> WriterHandle | None:
        """For writing from other processes; None when they cannot reach this file."""
        if self.store.memory or other_host:
            return None
        return WriterHandle(
            url=self.store.url, table=self.table, lease=self.lease, target=self.target, upsert=self.upsert
        )

    def switch(self) -> OnlineTable:
        """Point readers at this version in one transaction; the previous one is dropped."""
        if not self.owner:
            raise OnlineStoreError("only the run that began a version switches readers to it")
        con = self._connection()
        try:
            written = self.store.switch_version(con, self)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, sqlite3.Error):
                raise self.store.write_error(self.table.view, exc) from exc
            raise
        self._close()
        return written

    def abort(self) -> None:
        """Drop the half-written version; readers keep the previous one."""
        if self._con is not None and self.owner:
            _drop_quietly(self._con, self.target)
            _drop_quietly(self._con, self.target + "__rows")
            _drop_quietly(self._con, self.target + "__tiles")
            _drop_quietly(self._con, self.target + "__pushed_tiles")
        self._close()

    def close(self) -> None:
        """Stop writing from this process (a resumed writer, whose store it closes too); the
        version stays for the run that began it."""
        self._close()
        if not self.owner:
            self.store.close()

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _journal_key(types: Sequence[str]) -> Callable[[list[Any]], str]:
    """The encoded entity key of a journal row (its keys first), made the cheapest way."""
    n = len(types)
    if tuple(types) == ("int64",):

        def single(row: list[Any]) -> str:
            value = row[0]
            return str(value) if type(value) is int else encode_key((value,), types)

        return single

    def several(row: list[Any]) -> str:
        return encode_key(row[:n], types)

    return several


@contextmanager
def _transaction(con: sqlite3.Connection) -> Iterator[None]:
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _renew(con: sqlite3.Connection, lease: Lease, url: str) -> None:
    """Extend ``lease`` (inside a transaction); the run has lost its lock if it is not there."""
    cur = con.execute(
        f"UPDATE {_LOCKS} SET expires = ? WHERE view = ? AND owner = ?",
        (time.time() + LEASE_SECONDS, lease.view, lease.token),
    )
    if cur.rowcount != 1:
        raise lease.lost(url)


def _drop_quietly(con: sqlite3.Connection, table: str | None) -> None:
    if table is None:
        return
    try:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.execute(f"DROP TABLE IF EXISTS {quote(table)}")
    except sqlite3.Error:
        pass  # left unreferenced; the next run drops it


def _blob_of(values: list[float]) -> bytes:
    from array import array

    data = array("d", [float("nan") if v is None else v for v in values])
    if sys.byteorder == "big":
        data.byteswap()
    return data.tobytes()


class _Stale(Exception):
    """The version read is not the one the plan was made for."""
