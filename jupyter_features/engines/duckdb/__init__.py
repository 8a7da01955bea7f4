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
from ...sqltext import LABEL_TS, LABELS, RESULT, ROW, quote, timestamp_literal
from ...times import naive_utc_column
from .pit import key_column, label_keys, latest_sql, matched_column, pit_sql, tie_fix_sql, ties_sql
from .sandbox import READERS, open_sandbox, sandbox_describe, settings_sql

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    import pyarrow as pa

    from ...online import VersionWriter
    from ...sources import Source

__all__ = ["DuckDBEngine", "ArrowLatestRows", "sandbox_describe"]


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
        with self.feature_connection() as con:
            try:
                self._check_key_types(con, frame, joins)
                con.register(LABELS, frame)
                try:
                    result = self._pit(con, joins)
                finally:
                    con.unregister(LABELS)
            except duckdb.Error as exc:
                raise EngineError(f"point-in-time join failed: {str(exc).splitlines()[0]}") from exc
        return result.drop(columns=[ROW, *(matched_column(i) for i in range(len(joins)))])

    @staticmethod
    def _pit(con: duckdb.DuckDBPyConnection, joins: list[ViewJoin]) -> pd.DataFrame:
        """One plain ASOF JOIN; the tie-break is recomputed only for views with ties at a match.

        The join's rows stay in DuckDB (RESULT) while the tie check reads them, then come
        out once, put back in label order by ROW (a scatter, cheaper than an ORDER BY).
        """
        import numpy as np

        con.execute(f"CREATE OR REPLACE TEMP TABLE {RESULT} AS {pit_sql(joins)}")
        try:
            counts = con.execute(ties_sql(joins)).fetchall()[0]
            tied = [i for i, extra in enumerate(counts) if extra]
            keys = ", ".join(key_column(k) for k in label_keys(joins))
            result = con.sql(f"SELECT * EXCLUDE ({keys}) FROM {RESULT}").df()
            order = np.empty(len(result), dtype=np.int64)
            order[result[ROW].to_numpy()] = np.arange(len(result), dtype=np.int64)
            result = result.take(order).reset_index(drop=True)
            if tied:
                fixed = con.sql(tie_fix_sql(joins, tied)).df()
                for col in fixed.columns:
                    result[col] = fixed[col].array
        finally:
            con.execute(f"DROP TABLE IF EXISTS {RESULT}")
        return result

    @staticmethod
    def _check_key_types(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, joins: list[ViewJoin]) -> None:
        def columns_types(query: str) -> dict[str, str]:
            rel = con.sql(query)
            return {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}

        con.register(LABELS, frame.head(0))
        try:
            label_types = columns_types(f"SELECT * FROM {LABELS}")
        finally:
            con.unregister(LABELS)
        for j in joins:
            view_types = columns_types(f"SELECT * FROM ({j.sql}\n) LIMIT 0")
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
        def literal(value: Any) -> str:
            return timestamp_literal(value.isoformat(sep=" ") if isinstance(value, datetime) else str(value))

        query = latest_sql(
            join, end_literal=literal(end), since_literal=literal(since) if since is not None else None
        )
        return self.feature_arrow(query)

    def latest_rows(self, join: ViewJoin, end: Any, since: Any = None) -> ArrowLatestRows:
        return ArrowLatestRows(self.latest(join, end, since), join.entity)


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
