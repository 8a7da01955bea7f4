"""Nearline pushes: rows validated against a view, sent to an online store and logged offline.

The push log of a workspace is a folder of parquet files, ``.jupyter_features/pushes/<view>/``,
one per push, holding the view's output columns (keys, timestamp, created timestamp,
features) as the view types them, plus the store the push went to (``PUSH_STORE``: its
identity, null for an offline-only push) and its journal sequence number there
(``PUSH_SEQ``). Training frames and materialization read it together with the view's rows
(``union_sql``), so training sees what serving saw. It is registered with the engines as
an internal file source, so feature SQL's sandbox may read that folder and nothing else.

A run reads the push log as it stands when it starts: it lists the files of its store's
pushes (their sequence numbers are the entries its offline read covers), reads only those
of them (plus every other store's and the offline-only ones), and its switch replays every
journal entry it did not cover — so a push racing the run is neither lost nor counted twice.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotMaterializedError, PushError, UnknownColumnError, did_you_mean
from .sqltext import CREATED_TS, EVENT_TS, PUSH_SEQ, PUSH_STORE, RESERVED_PREFIX, quote, string_literal

if TYPE_CHECKING:
    import pyarrow as pa

    from .featureview import FeatureView, ViewJoin
    from .online import OnlineStore
    from .push_files import CompactionResult
    from .sources import Source
    from .windows import WindowPlan

__all__ = ["PushLog", "PushResult", "push_rows", "validate_rows", "arrow_type", "TARGETS"]

#: Where a push goes: the online store and the push log, or one of them.
TARGETS = ("both", "online", "offline")


@dataclass(frozen=True)
class PushResult:
    """What one ``ws.push`` did."""

    view: str
    rows: int
    to: str
    store: str | None  # the online store's URL, when the push went online
    version: int | None  # the online version it went into
    seq: int | None  # its number in that store's push journal
    log_file: str | None  # the push-log file, when it was logged offline


class PushLog:
    """The workspace's push log: one folder per view under ``folder``.

    ``register`` makes a push folder readable by the engines (called once per view, when its
    first file exists); ``columns`` gives a view's output columns and DuckDB types.
    """

    def __init__(
        self,
        folder: Path,
        register: Callable[[Source], None],
        columns: Callable[[FeatureView], Sequence[tuple[str, str]]],
    ) -> None:
        self.folder = folder
        self._register = register
        self._columns = columns
        self._registered: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def source_name(view: str) -> str:
        return f"{RESERVED_PREFIX}pushes_{view}"

    def view_folder(self, view: str) -> Path:
        return self.folder / view

    def files(self, view: str) -> list[Path]:
        """The view's live push-log files (``push_files.live_files``)."""
        from .push_files import live_files

        for attempt in range(5):
            try:
                return live_files(self.view_folder(view))
            except FileNotFoundError:  # a compaction removed a file while it was listed
                if attempt == 4:
                    raise
        return []

    def compact(self, view: str) -> CompactionResult:
        """Merge ``view``'s push-log files into one (``push_files.compact``)."""
        from .push_files import compact

        result = compact(self.view_folder(view), view)
        if result.file is not None:
            with self._lock:  # registered again on next use: an engine that lists files at
                self._registered.discard(view)  # registration (Spark) sees the new one
        return result

    def append(self, view: FeatureView, rows: pa.Table, store: str | None, seq: int | None) -> Path:
        """Write ``rows`` (the view's output columns) as one file, atomically (no reader sees half)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = self.view_folder(view.name)
        n = rows.num_rows
        table = rows.append_column(
            PUSH_STORE,
            pa.nulls(n, pa.string()) if store is None else pa.repeat(pa.scalar(store, pa.string()), n),
        ).append_column(
            PUSH_SEQ, pa.nulls(n, pa.int64()) if seq is None else pa.repeat(pa.scalar(seq, pa.int64()), n)
        )
        name = f"{time.time_ns()}-{store or 'offline'}-{seq or 0}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = folder / f".{name}.tmp"
        buffer = pa.BufferOutputStream()  # encoded in memory, then one write: fastest for small pushes
        if n > 1000:  # dictionary pages only for the constant store column: features rarely repeat
            pq.write_table(table, buffer, compression="zstd", use_dictionary=[PUSH_STORE])
        else:  # a small file is read whole: statistics and dictionaries cost more than they save
            pq.write_table(table, buffer, compression="none", use_dictionary=False, write_statistics=False)
        data = buffer.getvalue()
        try:
            out = open(tmp, "wb")
        except FileNotFoundError:  # the view's first push (or its folder was removed)
            folder.mkdir(parents=True, exist_ok=True)
            out = open(tmp, "wb")
        with out:
            out.write(data)
        os.replace(tmp, folder / name)
        self.ensure_registered(view.name)
        return folder / name

    def ensure_registered(self, view: str) -> bool:
        """Register ``view``'s push folder with the engines if it has files; whether it has."""
        with self._lock:
            if view in self._registered:
                return True
            if not self.files(view):
                return False
            from .sources import Source

            location = str(self.view_folder(view).resolve() / "*.parquet")
            self._register(
                Source(name=self.source_name(view), kind="file", location=location, format="parquet")
            )
            self._registered.add(view)
            return True

    def covered(self, view: str, store: str) -> frozenset[int]:
        """Journal sequence numbers of ``store`` whose pushes of ``view`` have a file here now."""
        from .push_files import covered_in, is_compacted

        out: set[int] = set()
        for path in self.files(view):
            parts = path.name.split("-")
            if len(parts) == 4 and parts[1] == store and parts[2].isdigit():
                out.add(int(parts[2]))
            elif is_compacted(path):  # a compacted file records each row's store and number
                out |= covered_in(path, store)
        return frozenset(out)

    def join(
        self,
        view: FeatureView,
        join: ViewJoin,
        *,
        store: str | None = None,
        covered: Collection[int] = (),
        typed: bool = True,
    ) -> ViewJoin:
        """``join`` reading the view's rows together with its push log (unchanged when the log is
        empty). With ``store``: only that store's pushes in ``covered`` (a run's snapshot), and
        every other push. ``typed``: DuckDB SQL (the log's columns cast to the view's types, its
        live files named); otherwise the registered source, as read by the engine (Spark)."""
        if not self.ensure_registered(view.name):
            return join
        log = self._scan(view.name, typed)
        if log is None:
            return join
        columns = self._columns(view)
        plan = join.window_plan()
        if plan is not None:  # a windowed view: the logged rows projected into its relation's rows
            from .windows import pushed_relation_sql

            casts = ", ".join(f"CAST({quote(c)} AS {t}) AS {quote(c)}" for c, t in columns)
            logged = f"(SELECT {casts} FROM {log}{self._filter(store, covered)}) AS __jf_logged"
            return replace(join, pushed=pushed_relation_sql(plan, logged))
        names = ", ".join(quote(c) for c, _ in columns)
        logged = ", ".join(
            f"CAST({quote(c)} AS {t}) AS {quote(c)}" if typed else quote(c) for c, t in columns
        )
        where = self._filter(store, covered)
        sql = f"SELECT {names} FROM ({join.sql}\n) AS __jf_rows UNION ALL SELECT {logged} FROM {log}{where}"
        return replace(join, sql=sql)

    def _scan(self, view: str, typed: bool) -> str | None:
        """The log's rows as a FROM item (None: no files): in DuckDB its live files, named, so a
        compaction racing the read cannot make it count a push twice; elsewhere the registered
        source."""
        if not typed:
            return quote(self.source_name(view))
        from .push_files import files_sql

        files = self.files(view)
        return f"{files_sql(files)} AS __jf_log" if files else None

    def _filter(self, store: str | None, covered: Collection[int]) -> str:
        if store is None:
            return ""
        return f" WHERE {PUSH_STORE} IS NULL OR {PUSH_STORE} <> {string_literal(store)} OR " + _seq_in(
            covered
        )

    def later_events(
        self,
        view: str,
        plan: WindowPlan,
        end_us: int,
        *,
        store: str,
        covered: Collection[int],
        project: Callable[[pa.Table], pa.Table],
    ) -> pa.Table | None:
        """``later_rows`` of a windowed view: its logged pushes dated after ``end`` as relation rows
        (``project``: push columns → keys, EVENT_TS, inputs, flags)."""
        from .windows import push_columns

        logged = self._later(view, plan.timestamp, end_us, store=store, covered=covered)
        if logged is None or not logged.num_rows:
            return None
        return project(logged.select(list(push_columns(plan))))

    def _later(
        self, view: str, timestamp: str, end_us: int, *, store: str, covered: Collection[int]
    ) -> pa.Table | None:
        import pyarrow as pa
        import pyarrow.compute as pc

        from .push_files import read_live

        logged = read_live(self.view_folder(view))
        if logged is None:
            return None
        ts = pc.cast(logged.column(timestamp), pa.timestamp("us"))
        mine = pc.and_(
            pc.equal(logged.column(PUSH_STORE), store),
            pc.invert(pc.is_in(logged.column(PUSH_SEQ), pa.array(sorted(covered), pa.int64()))),
        )
        keep = pc.and_(
            pc.greater(ts, pa.scalar(end_us, pa.timestamp("us"))), pc.invert(pc.fill_null(mine, False))
        )
        return logged.filter(keep)

    def later_rows(
        self, view: FeatureView, end_us: int, *, store: str, covered: Collection[int]
    ) -> pa.Table | None:
        """The logged pushes a run as of ``end_us`` must add to its version as pushed rows: those
        dated after ``end`` (its offline read stops there; reads at later times need them), as
        the run read the log (``store``'s pushes in ``covered`` and all others); keys, EVENT_TS,
        [CREATED_TS,] features."""
        rows = self._later(view.name, view.timestamp, end_us, store=store, covered=covered)
        if rows is None:
            return None
        names = {
            view.timestamp: EVENT_TS,
            **({view.created_timestamp: CREATED_TS} if view.created_timestamp else {}),
        }
        columns = [
            *view.entity,
            view.timestamp,
            *([view.created_timestamp] if view.created_timestamp else []),
            *view.feature_names,
        ]
        return rows.select(columns).rename_columns([names.get(c, c) for c in columns])


def _seq_in(seqs: Collection[int]) -> str:
    """SQL: ``PUSH_SEQ`` is one of ``seqs`` (as ranges of consecutive numbers)."""
    ordered = sorted(seqs)
    if not ordered:
        return "FALSE"
    ranges: list[tuple[int, int]] = []
    for s in ordered:
        if ranges and s == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], s)
        else:
            ranges.append((s, s))
    return "(" + " OR ".join(f"{PUSH_SEQ} BETWEEN {a} AND {b}" for a, b in ranges) + ")"


_ARROW_TYPES = {
    "BIGINT": "int64", "INTEGER": "int32", "SMALLINT": "int16", "TINYINT": "int8",
    "UBIGINT": "uint64", "UINTEGER": "uint32", "USMALLINT": "uint16", "UTINYINT": "uint8",
    "DOUBLE": "float64", "FLOAT": "float32", "VARCHAR": "string", "BOOLEAN": "bool",
    "TIMESTAMP": "timestamp[us]", "DATE": "date32", "DOUBLE[]": "list<float64>", "FLOAT[]": "list<float32>",
}  # fmt: skip


@lru_cache(maxsize=1024)
def arrow_type(duckdb_type: str) -> pa.DataType | None:
    """The Arrow type of a DuckDB column type, where a push can cast to it without DuckDB."""
    import pyarrow as pa

    name = _ARROW_TYPES.get(duckdb_type.upper())
    if duckdb_type.upper().startswith("ENUM("):
        name = "string"
    if name is None:
        return None
    if name.startswith("list<"):
        return pa.list_(pa.float64() if name == "list<float64>" else pa.float32())
    if name == "timestamp[us]":
        return pa.timestamp("us")
    return pa.type_for_alias(name)


def _arrow_rows(rows: Any, who: str, example: str) -> pa.Table:
    import pandas as pd
    import pyarrow as pa

    try:
        if isinstance(rows, pa.Table):
            return rows
        if isinstance(rows, pd.DataFrame):
            if rows.columns.is_unique and rows.columns.nlevels == 1:  # a column at a time: no pandas metadata
                names = [str(c) for c in rows.columns]
                return pa.Table.from_arrays(
                    [pa.array(s, from_pandas=True) for _, s in rows.items()], names=names
                )
            return pa.Table.from_pandas(rows, preserve_index=False)
        if isinstance(rows, Mapping):
            return pa.Table.from_pydict({str(k): list(v) for k, v in rows.items()})
        if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)):
            if all(isinstance(r, Mapping) for r in rows):
                return pa.Table.from_pylist([dict(r) for r in rows])
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise PushError(f"{who}: cannot read the rows ({exc}); give each column values of one type") from exc
    raise PushError(f"{who}: rows must be a DataFrame or a list of dicts, e.g. [{{{example}: 1, ...}}]")


def validate_rows(
    view: FeatureView,
    rows: Any,
    columns: Sequence[tuple[str, str]],
    *,
    carries: str = "the view's keys, timestamp and features",
) -> pa.Table:
    """``rows`` (a DataFrame, a list of dicts or a dict of lists) as an Arrow table of the view's
    push ``columns`` (its output columns; a windowed view's keys, timestamp and the columns its
    aggregates read), cast to their types; PushError for anything missing, unknown or wrong."""
    import pyarrow as pa
    import pyarrow.compute as pc

    who = f"push to feature view '{view.name}'"
    table = _arrow_rows(rows, who, repr(view.entity[0]))
    given = list(table.column_names)
    wanted = [c for c, _ in columns]
    missing = [c for c in wanted if c not in given]
    if missing:
        raise UnknownColumnError(
            f"{who}: the rows lack column(s) {', '.join(missing)}{did_you_mean(missing[0], given)}; "
            f"a push carries {carries}: {', '.join(wanted)}"
        )
    extra = [c for c in given if c not in wanted]
    if extra:
        raise UnknownColumnError(
            f"{who}: column(s) {', '.join(extra)} are not in the view{did_you_mean(extra[0], wanted)}; "
            f"push only its columns: {', '.join(wanted)}"
        )
    required = [*view.entity, view.timestamp, *([view.created_timestamp] if view.created_timestamp else [])]
    bad = [c for c in required if table.column(c).null_count]
    if bad:
        raise PushError(
            f"{who}: column(s) {', '.join(bad)} hold nulls; every pushed row needs its keys and times"
        )
    out = []
    for name, duckdb_type in columns:
        column = table.column(name)
        target = arrow_type(duckdb_type)
        if target is None:
            return _duckdb_cast(table, columns, who)
        times = pa.types.is_timestamp(target) or pa.types.is_date(target)
        if times and not (
            pa.types.is_timestamp(column.type)
            or pa.types.is_date(column.type)
            or pa.types.is_string(column.type)
            or pa.types.is_null(column.type)
        ):
            raise PushError(
                f"{who}: column '{name}' holds {column.type}, not times; expected {duckdb_type} "
                "(datetimes or ISO 8601 text)"
            )
        if column.type == target:  # already the view's type (the usual case): nothing to cast
            out.append(column)
            continue
        try:
            if pa.types.is_timestamp(column.type) and column.type.tz is not None:
                column = pc.cast(column, pa.timestamp(column.type.unit))  # the same instants, naive UTC
            out.append(pc.cast(column, target, safe=True))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise PushError(
                f"{who}: column '{name}' does not fit the view's type {duckdb_type} ({exc}); "
                f"the view's columns: {', '.join(f'{c} {t}' for c, t in columns)}"
            ) from exc
    return pa.Table.from_arrays(out, names=wanted)


def _duckdb_cast(table: pa.Table, columns: Sequence[tuple[str, str]], who: str) -> pa.Table:
    """Cast through DuckDB, for column types Arrow has no twin for (decimals, structs...)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__jf_push", table)
        casts = ", ".join(f"CAST({quote(c)} AS {t}) AS {quote(c)}" for c, t in columns)
        return con.sql(f"SELECT {casts} FROM __jf_push").fetch_arrow_table()
    except duckdb.Error as exc:
        detail = str(exc).splitlines()[0]
        types = ", ".join(f"{c} {t}" for c, t in columns)
        untyped = [c for c, t in columns if t.strip('"').upper() == "NULL"]
        hint = (
            f"; the view's column(s) {', '.join(untyped)} have no type because the source holds only "
            "nulls there: give them one in the view's SQL (e.g. CAST(c AS VARCHAR)) or in the source"
            if untyped
            else ""
        )
        raise PushError(
            f"{who}: the rows do not fit the view's types ({detail}); expected: {types}{hint}"
        ) from exc
    finally:
        con.close()


def push_rows(
    view: FeatureView,
    rows: Any,
    *,
    to: str,
    columns: Sequence[tuple[str, str]],
    store: OnlineStore | None,
    log: PushLog,
    project: Callable[[pa.Table], pa.Table] | None = None,
) -> PushResult:
    """Validate ``rows``, then push them to ``store`` (one atomic write) and/or the push log.

    ``project``: for a windowed view, turns the validated push columns into its relation's rows
    (keys, EVENT_TS, inputs, flags), which the store keeps as events; the log keeps the rows as
    pushed."""
    if to not in TARGETS:
        raise PushError(f"push to feature view '{view.name}': to={to!r} is not one of {', '.join(TARGETS)}")
    carries = "the view's keys, timestamp and the columns its aggregates read" if project else None
    table = validate_rows(view, rows, columns, **({"carries": carries} if carries else {}))
    version = seq = None
    if store is not None:
        renamed = {view.timestamp: EVENT_TS}
        if view.created_timestamp:
            renamed[view.created_timestamp] = CREATED_TS
        if project is not None:
            online = project(table)
        else:
            online = table.rename_columns([renamed.get(c, c) for c in table.column_names])
        try:
            receipt = store.push(view.name, online, definition=view.definition_hash)
        except NotMaterializedError as exc:
            raise NotMaterializedError(
                f"push to feature view '{view.name}': it is not materialized in {store.url}; "
                f"run ws.materialize(['{view.name}']) first, or push with to='offline'"
            ) from exc
        version, seq = receipt.version, receipt.seq
    path = None
    if to in ("both", "offline") and table.num_rows:
        # a push the store kept nothing of (a windowed view's events older than every window) is
        # logged as offline-only: every run reads it
        path = log.append(
            view, table, store.identity() if store is not None and seq is not None else None, seq
        )
    return PushResult(
        view=view.name, rows=table.num_rows, to=to, store=store.url if store is not None else None,
        version=version, seq=seq, log_file=str(path) if path is not None else None,
    )  # fmt: skip
