"""The DuckDB engine: the default, embedded in the kernel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb

from ...errors import EngineError, LabelFrameError, SourceError
from ...featureview import ViewJoin
from ...sqltext import (
    EVENT_TS,
    LABEL_STREAM,
    LABEL_TS,
    LABELS,
    RESERVED_PREFIX,
    RESULT,
    ROW,
    WINDOWED,
    quote,
    timestamp_literal,
)
from ...times import naive_utc_column
from .pit import dedupe_sql, fetch_sql, label_keys, label_time_sql, latest_sql, pit_sql
from .sandbox import READERS, open_sandbox, sandbox_describe, sandbox_project, settings_sql

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    import pyarrow as pa

    from ...online import VersionWriter
    from ...sources import Source
    from ...windows import WindowPlan

__all__ = ["DuckDBEngine", "ArrowLatestRows", "sandbox_describe", "sandbox_project"]


def _numeric(t: str) -> bool:
    t = t.upper()
    return any(x in t for x in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC"))


class DuckDBEngine:
    """Sources become views of two DuckDB databases: ``con``, the notebook owner's full DuckDB
    for exploration SQL, and a sandbox where every feature SQL runs (see ``sandbox``);
    joins are ASOF JOINs.

    ``memory_limit`` (e.g. "3GB"), ``threads`` and ``temp_directory`` (where DuckDB spills
    past the memory limit) apply to both.
    """

    name = "duckdb"

    def __init__(
        self,
        database: str = ":memory:",
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        temp_directory: str | None = None,
    ) -> None:
        self.options: dict[str, Any] = {
            "threads": threads, "memory_limit": memory_limit, "temp_directory": temp_directory,
        }  # fmt: skip
        self.con = duckdb.connect(database)
        try:
            for statement in settings_sql(self.options):
                self.con.execute(statement)
        except duckdb.Error as exc:
            raise EngineError(f"DuckDB refuses the engine settings {self.options}: {exc}") from exc
        #: Hold it while using ``con`` directly: the connection is shared by every thread.
        self.lock = threading.RLock()
        self._sources: dict[str, Source] = {}
        self._sandbox: duckdb.DuckDBPyConnection | None = None
        # per (projection, name, schema of the rows): the statement taking a few rows as
        # parameters and the result's schema, or None when their types need the Arrow path
        self._projections: dict[tuple[str, str, pa.Schema], tuple[str, pa.Schema] | None] = {}

    @contextmanager
    def feature_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The sandbox connection feature SQL runs on, held under ``lock`` for the block.

        External access off, file access limited to the registered sources' files,
        configuration locked; rebuilt when sources change.
        """
        with self.lock:
            if self._sandbox is None:
                try:
                    self._sandbox = open_sandbox(
                        self._sources.values(), table_data=self._table_data, options=self.options
                    )
                except duckdb.Error as exc:
                    raise EngineError(f"cannot open the sandbox for feature SQL: {exc}") from exc
            yield self._sandbox

    def _table_data(self, table: str) -> pa.Table:
        return self.con.sql(f"SELECT * FROM {quote(table)}").to_arrow_table()

    def _forget_sandbox(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    # -- sources -----------------------------------------------------------------------
    def tables(self) -> set[str]:
        rows = self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        return {r[0] for r in rows}

    def _create(self, name: str, source: Source) -> None:
        if source.kind == "file":
            reader = READERS[source.format or "parquet"]
            loc = str(source.location).replace("'", "''")
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS SELECT * FROM {reader}('{loc}')")
        elif source.kind == "dataframe":
            self.con.register(name, source.data)
        else:
            self.con.execute(
                f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS SELECT * FROM {quote(str(source.location))}"
            )

    def probe_source(self, source: Source) -> tuple[tuple[str, str], ...]:
        """Read the columns of ``source`` through a throwaway name; changes nothing."""
        with self.lock:
            tmp = f"__jf_tmp_{source.name}"
            try:
                self._create(tmp, source)
                rel = self.con.sql(f"SELECT * FROM {quote(tmp)} LIMIT 0")
                return tuple((c, str(t)) for c, t in zip(rel.columns, rel.types, strict=True))
            except duckdb.Error as exc:
                raise SourceError(f"source '{source.name}': DuckDB cannot read it: {exc}") from exc
            finally:
                self._drop(tmp, source.kind)

    def register_source(self, source: Source) -> Source:
        with self.lock:
            columns = source.columns or self.probe_source(source)
            # Only now replace what was there: a refused source changes nothing.
            self._drop(source.name, source.kind)
            self._create(source.name, source)
            registered = replace(source, columns=columns)
            self._sources[source.name] = registered
            self._forget_sandbox()
            return registered

    def _drop(self, name: str, kind: str) -> None:
        try:
            self.con.unregister(name)
        except duckdb.Error:
            pass
        try:
            self.con.execute(f"DROP VIEW IF EXISTS {quote(name)}")
        except duckdb.Error:
            pass

    # -- queries -----------------------------------------------------------------------
    def sql(self, query: str) -> pd.DataFrame:
        with self.lock:
            rel = self.con.sql(query)
            if rel is None:
                import pandas as pd

                return pd.DataFrame()
            return rel.df()

    def columns(self, query: str) -> list[str]:
        """The column names of an exploration query, without running it."""
        with self.lock:
            try:
                rel = self.con.sql(query)
            except duckdb.Error as exc:
                raise EngineError(f"DuckDB cannot run the query: {str(exc).splitlines()[0]}") from exc
            if rel is None:
                raise EngineError("the statement returns no rows")
            return list(rel.columns)

    def arrow(self, query: str) -> pa.Table:
        with self.lock:
            rel = self.con.sql(query)
            if rel is None:
                raise EngineError("the statement returns no rows")
            return rel.to_arrow_table()

    def feature_arrow(self, query: str) -> pa.Table:
        """Run ``query`` (built from feature SQL) on the sandbox; the result as Arrow."""
        with self.feature_connection() as con:
            try:
                return con.sql(query).to_arrow_table()
            except duckdb.Error as exc:
                raise EngineError(f"DuckDB failed running feature SQL: {str(exc).splitlines()[0]}") from exc

    # -- point-in-time -------------------------------------------------------------------
    def training_frame(self, labels: pd.DataFrame, timestamp: str, joins: list[ViewJoin]) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        data: dict[str, Any] = {k: labels[k].array for k in label_keys(joins)}
        data[LABEL_TS] = naive_utc_column(labels, timestamp).to_numpy()
        data[ROW] = np.arange(len(labels), dtype=np.int64)
        frame = pd.DataFrame(data)
        plain = [j for j in joins if not j.windows]
        outputs = ", ".join(quote(out) for j in plain for out in j.output)
        columns: dict[str, Any] = {}
        with self.feature_connection() as con:
            try:
                con.register(LABELS, frame.head(0))
                try:
                    self._check_key_types(con, self._types(con, LABELS), joins)
                finally:
                    con.unregister(LABELS)
                con.register(LABELS, frame)
                try:
                    if plain:
                        self._join(con, plain, LABELS)
                        result = con.sql(f"SELECT {ROW}, {outputs} FROM {RESULT}").df()
                        # back into label order by ROW: a scatter, cheaper than an ORDER BY
                        order = np.empty(len(result), dtype=np.int64)
                        order[result[ROW].to_numpy()] = np.arange(len(result), dtype=np.int64)
                        result = result.take(order).reset_index(drop=True)
                        columns.update({c: result[c] for c in result.columns if c != ROW})
                    for j, windowed in self._windows(con, joins, LABELS):
                        columns.update({c: windowed[c] for c in j.output})
                finally:
                    con.unregister(LABELS)
                    con.execute(f"DROP TABLE IF EXISTS {RESULT}")
            except duckdb.Error as exc:
                raise EngineError(f"point-in-time join failed: {str(exc).splitlines()[0]}") from exc
        names = [out for j in joins for out in j.output]
        return pd.DataFrame({c: columns[c] for c in names}, index=pd.RangeIndex(len(labels)))

    @staticmethod
    def _windows(
        con: duckdb.DuckDBPyConnection, joins: list[ViewJoin], labels: str
    ) -> Iterator[tuple[ViewJoin, pd.DataFrame]]:
        """Each windowed join's features for every row of ``labels`` (ROW 0..n-1, LABEL_TS, keys),
        in ROW order, computed by the window engine on ``con`` (the sandbox)."""
        from .windows import window_features

        for j in joins:
            plan = j.window_plan()
            if plan is not None:
                yield j, window_features(con, plan, features=j.features, output=j.output, labels=labels)

    def training_frame_arrow(
        self, labels: pd.DataFrame | str, timestamp: str, joins: list[ViewJoin], *, batch_rows: int = 100_000
    ) -> pa.RecordBatchReader:
        """The whole training frame — every label column as it is, then the feature columns, in
        label order — as a stream of Arrow record batches, never held in Python at once.

        ``labels`` is a DataFrame or exploration SQL (e.g. over ``read_parquet``); it streams
        from the exploration connection into a sandbox of its own that the returned reader
        owns: the join and its ORDER BY run there under ``memory_limit``, spilling to
        ``temp_directory``, and the reader closes it when drained or dropped.
        """
        with self.lock:
            source = self._label_stream(labels, batch_rows)
            label_columns = source.schema.names[:-1]  # the last is ROW
            reserved = [c for c in label_columns if c.startswith(RESERVED_PREFIX)]
            if reserved:
                raise LabelFrameError(
                    f"label frame: column '{reserved[0]}' uses the reserved prefix {RESERVED_PREFIX}; rename it"
                )
            try:
                con = open_sandbox(self._sources.values(), table_data=self._table_data, options=self.options)
            except duckdb.Error as exc:
                raise EngineError(f"cannot open the sandbox for feature SQL: {exc}") from exc
            try:
                import pyarrow as pa

                con.register(LABELS, pa.Table.from_batches([], schema=source.schema))
                types = self._types(con, LABELS)
                con.unregister(LABELS)
                if timestamp not in types:
                    raise LabelFrameError(f"label frame: timestamp column '{timestamp}' is not in it")
                to_time = label_time_sql(timestamp, types[timestamp])
                if to_time is None:
                    raise LabelFrameError(
                        f"label frame: timestamp column '{timestamp}' has type {types[timestamp]}, not a time; "
                        "cast it to TIMESTAMP"
                    )
                self._check_key_types(con, types, joins)
                # a table first: DuckDB's ASOF JOIN does not take an Arrow stream on its probe side
                con.register(LABEL_STREAM, source)
                con.execute(
                    f"CREATE TEMP TABLE {LABELS} AS SELECT *, {to_time} AS {LABEL_TS} FROM {LABEL_STREAM}"
                )
                con.unregister(LABEL_STREAM)
                # the label columns stay out of the joins (narrower rows to sort and hash: on 120M feature
                # rows a fifth less CPU) and come back from LABELS by ROW at the end
                self._join_all(con, joins, LABELS)
                columns = ", ".join(
                    [
                        *(f"l.{quote(c)}" for c in label_columns),
                        *(f"r.{quote(o)}" for j in joins for o in j.output),
                    ]
                )
                reader = con.sql(
                    f"SELECT {columns} FROM {LABELS} l JOIN {RESULT} r ON l.{ROW} = r.{ROW} ORDER BY l.{ROW}"
                ).to_arrow_reader(batch_rows)
                # label columns back in their own Arrow types (a zone, nanoseconds) where DuckDB changed them
                label_fields = [source.schema.field(c) for c in label_columns]
                schema = pa.schema(label_fields + list(reader.schema)[len(label_columns) :])
            except duckdb.Error as exc:
                con.close()
                raise EngineError(f"point-in-time join failed: {str(exc).splitlines()[0]}") from exc
            except BaseException:
                con.close()
                raise
        return _closing_reader(reader, con, schema)

    def _label_stream(self, labels: pd.DataFrame | str, batch_rows: int) -> pa.RecordBatchReader:
        """``labels`` as Arrow batches with a ROW column numbering them in order."""
        import numpy as np
        import pyarrow as pa

        if isinstance(labels, str):
            try:
                rel = self.con.sql(labels)
            except duckdb.Error as exc:
                raise LabelFrameError(f"label frame: DuckDB cannot run its SQL: {exc}") from exc
            if rel is None:
                raise LabelFrameError("label frame: its SQL is not a query that returns rows")
            batches = rel.to_arrow_reader(batch_rows)
        else:
            batches = pa.Table.from_pandas(labels, preserve_index=False).to_reader(batch_rows)

        def numbered() -> Iterator[pa.RecordBatch]:
            start = 0
            for batch in batches:
                n = batch.num_rows
                yield batch.append_column(ROW, pa.array(np.arange(start, start + n, dtype=np.int64)))
                start += n

        schema = batches.schema.append(pa.field(ROW, pa.int64()))
        return pa.RecordBatchReader.from_batches(schema, numbered())

    @classmethod
    def _join_all(cls, con: duckdb.DuckDBPyConnection, joins: list[ViewJoin], labels: str) -> None:
        """RESULT: ROW, LABEL_TS and every join's features for the rows of ``labels``.

        Plain views go through ``_join``; each windowed view's features are computed by the window
        engine (in memory, in ROW order) and joined on by ROW.
        """
        import numpy as np
        import pyarrow as pa

        plain = [j for j in joins if not j.windows]
        if plain:
            cls._join(con, plain, labels)
        else:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {RESULT} AS SELECT {ROW}, {LABEL_TS} FROM {labels}")
        for j, windowed in cls._windows(con, joins, labels):
            table = pa.Table.from_pandas(windowed, preserve_index=False)
            table = table.append_column(ROW, pa.array(np.arange(len(windowed), dtype=np.int64)))
            con.register(WINDOWED, table)
            try:
                picked = ", ".join(f"w.{quote(o)}" for o in j.output)
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {RESULT} AS SELECT r.*, {picked} FROM {RESULT} r "
                    f"JOIN {WINDOWED} w ON r.{ROW} = w.{ROW}"
                )
            finally:
                con.unregister(WINDOWED)

    @staticmethod
    def _join(con: duckdb.DuckDBPyConnection, joins: list[ViewJoin], labels: str) -> None:
        """RESULT: ``pit_sql``'s rows for ``labels``, with every view's features, ties decided.

        One plain ASOF JOIN per view over its keys and event times finds each label row's
        match; then, per view with features, one hash join fetches the features at the matched
        (keys, event time). Only when that adds rows (a match with several rows: a tie) does a
        second pass keep each label row's tie-break winner.
        """
        con.execute(f"CREATE OR REPLACE TEMP TABLE {RESULT} AS {pit_sql(joins, labels=labels)}")
        rows = _count(con, RESULT)
        for i, j in enumerate(joins):
            if not j.features:
                continue
            # tables, not CTEs: DuckDB spills them past memory_limit
            con.execute(f"CREATE OR REPLACE TEMP TABLE {RESULT} AS {fetch_sql(j, i, RESULT)}")
            if _count(con, RESULT) != rows:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {RESULT} AS {dedupe_sql(j, i, RESULT)}")

    @staticmethod
    def _types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        rel = con.sql(f"SELECT * FROM {table} LIMIT 0")
        return {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}

    @staticmethod
    def _check_key_types(
        con: duckdb.DuckDBPyConnection, label_types: dict[str, str], joins: list[ViewJoin]
    ) -> None:
        for j in joins:
            rel = con.sql(f"SELECT * FROM ({j.sql}\n) LIMIT 0")
            view_types = {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}
            for k in j.entity:
                lt, vt = label_types.get(k, "NULL"), view_types.get(k, "")
                if lt == "NULL" or lt == vt:
                    continue
                if _numeric(lt) != _numeric(vt):
                    raise LabelFrameError(
                        f"label frame: key '{k}' is {lt} but feature view '{j.name}' has it as {vt}; "
                        "cast one to the other's type"
                    )

    def latest(self, join: ViewJoin, end: Any, since: Any = None) -> pa.Table:
        if join.windows:
            return self.windows_at_end(join, end)
        query = latest_sql(
            join, end_literal=_literal(end), since_literal=_literal(since) if since is not None else None
        )
        return self.feature_arrow(query)

    def windows_at_end(self, join: ViewJoin, end: Any) -> pa.Table:
        """A windowed view's values as of ``end`` per entity with a row in its longest window:
        keys, EVENT_TS (the entity's last event time), the join's features. What materialization
        writes for a windowed view until windows are evaluated online at read time."""
        from .windows import latest_windows_sql, relation_types

        plan = join.window_plan()
        assert plan is not None
        with self.feature_connection() as con:
            types = relation_types(con, plan)
        query = latest_windows_sql(plan, end_literal=_literal(end), input_types=types, event_time=True)
        columns = [*map(quote, join.entity), EVENT_TS, *map(quote, join.features)]
        return self.feature_arrow(f"SELECT {', '.join(columns)} FROM ({query})")

    def latest_rows(self, join: ViewJoin, end: Any, since: Any = None) -> ArrowLatestRows:
        return ArrowLatestRows(self.latest(join, end, since), join.entity)

    # -- windowed views ----------------------------------------------------------------------
    def window_types(self, plan: WindowPlan) -> dict[str, str]:
        """The DuckDB types of ``plan``'s relation columns (binds its SQL in the sandbox)."""
        from .windows import relation_types

        with self.feature_connection() as con:
            return relation_types(con, plan)

    def window_events(self, plan: WindowPlan, end: Any) -> ArrowLatestRows:
        """The events of ``plan``'s relation an online store keeps for reads at or after ``end``
        (``window_events_sql``), for a materialization run to write."""
        from .windows import window_events_sql

        literal = timestamp_literal(end.isoformat(sep=" ") if isinstance(end, datetime) else str(end))
        return ArrowLatestRows(self.feature_arrow(window_events_sql(plan, end_literal=literal)), plan.entity)

    def window_values(self, plan: WindowPlan, at: Any) -> pa.Table:
        """Every entity's features at ``at`` (keys, then the features; entities with an event in the
        longest window before ``at``), with ``EVENT_TS`` = ``at``: what a read at ``at`` serves."""
        import pyarrow as pa

        from ...sqltext import EVENT_TS
        from .windows import latest_windows_sql

        literal = timestamp_literal(at.isoformat(sep=" ") if isinstance(at, datetime) else str(at))
        sql = latest_windows_sql(plan, end_literal=literal, input_types=self.window_types(plan))
        values = self.feature_arrow(sql)
        stamp = pa.array([at] * values.num_rows, pa.timestamp("us"))
        return values.add_column(len(plan.entity), EVENT_TS, stamp)

    def project(self, sql: str, name: str, rows: pa.Table) -> pa.Table:
        """Run ``sql`` (built from feature SQL) over ``rows`` registered as ``name``, in the sandbox.

        A few rows of plain types go to DuckDB as parameters of a statement made once per
        (``sql``, ``rows``' schema) and come back as Python values: registering a table and
        reading the result as Arrow cost more than the projection itself."""
        import pyarrow as pa

        key = (sql, name, rows.schema)
        small = 0 < rows.num_rows <= _FEW_ROWS
        with self.feature_connection() as con:
            fast = self._projections.get(key) if small else None
            try:
                if fast is not None:
                    found = con.execute(fast[0], [c.to_pylist() for c in rows.columns]).fetchall()
                    columns: list[Any] = list(zip(*found, strict=True)) if found else [[] for _ in fast[1]]
                    return pa.Table.from_arrays(
                        [pa.array(c, type=f.type) for c, f in zip(columns, fast[1], strict=True)],
                        schema=fast[1],
                    )
                con.register(name, rows)
                try:
                    out = con.sql(sql).to_arrow_table()
                    if small and key not in self._projections:
                        if len(self._projections) > 256:
                            self._projections.clear()
                        self._projections[key] = _parameter_projection(con, sql, name, out.schema)
                    return out
                finally:
                    con.unregister(name)
            except duckdb.Error as exc:
                raise EngineError(f"DuckDB failed running feature SQL: {str(exc).splitlines()[0]}") from exc


_FEW_ROWS = 64  # rows a projection takes as parameters
_PLAIN = frozenset({"BIGINT", "INTEGER", "SMALLINT", "DOUBLE", "FLOAT", "BOOLEAN", "VARCHAR", "TIMESTAMP"})


def _parameter_projection(
    con: duckdb.DuckDBPyConnection, sql: str, name: str, result: pa.Schema
) -> tuple[str, pa.Schema] | None:
    """``sql`` over rows given as one list parameter per column of ``name`` (registered), with
    the schema of its result; None unless every column in and out is of a type whose Python
    values DuckDB and Arrow take back unchanged."""
    import pyarrow as pa

    described = con.execute(f"DESCRIBE SELECT * FROM {quote(name)}").fetchall()
    if any(str(t) not in _PLAIN for _, t, *_ in described):
        return None
    plain = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string)
    for f in result:
        timestamp = pa.types.is_timestamp(f.type) and f.type.unit == "us" and f.type.tz is None
        if not timestamp and not any(is_type(f.type) for is_type in plain):
            return None
    unnest = ", ".join(
        f"unnest(${i + 1}::{t}[]) AS {quote(str(c))}" for i, (c, t, *_) in enumerate(described)
    )
    return f"WITH {quote(name)} AS (SELECT {unnest}) {sql}", result


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def _literal(value: Any) -> str:
    return timestamp_literal(value.isoformat(sep=" ") if isinstance(value, datetime) else str(value))


def _closing_reader(
    reader: pa.RecordBatchReader, con: duckdb.DuckDBPyConnection, schema: pa.Schema
) -> pa.RecordBatchReader:
    """``reader``'s batches cast to ``schema`` (as they are if it cannot be), closing ``con``
    once drained, failed or dropped."""
    import pyarrow as pa

    try:
        reader.schema.empty_table().cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        schema = reader.schema

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in reader:
                yield batch if schema is reader.schema else batch.cast(schema)
        finally:
            con.close()

    return pa.RecordBatchReader.from_batches(schema, batches())


class ArrowLatestRows:
    """Latest rows computed in this process, as one Arrow table, written from here."""

    def __init__(self, rows: pa.Table, entity: tuple[str, ...]) -> None:
        import pyarrow as pa

        self.rows = rows
        self.count: int | None = rows.num_rows
        self.key_types = tuple(
            "int64" if pa.types.is_integer(rows.schema.field(k).type) else "string" for k in entity
        )

    def write_to(self, writer: VersionWriter, progress: Callable[[int], None] | None = None) -> int:
        return writer.write_batch(self.rows, progress)
