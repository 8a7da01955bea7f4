"""The DuckDB engine: the default, embedded in the kernel."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb

from ...errors import EngineError, LabelFrameError, SourceError, UnsafeSQLError
from ...featureview import ViewJoin
from ...sqltext import LABEL_TS, LABELS, RESULT, ROW, quote, timestamp_literal
from .pit import key_column, label_keys, latest_sql, matched_column, pit_sql, tie_fix_sql, ties_sql

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    import pyarrow as pa

    from ...online import VersionWriter
    from ...sources import Source

__all__ = ["DuckDBEngine", "ArrowLatestRows", "sandbox_describe"]

_READERS = {"parquet": "read_parquet", "csv": "read_csv_auto", "json": "read_json_auto"}


def _numeric(t: str) -> bool:
    t = t.upper()
    return any(x in t for x in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC"))


def sandbox_describe(sql: str, schemas: Mapping[str, Mapping[str, str]]) -> list[tuple[str, str]]:
    """Bind ``sql`` on a locked-down connection holding only empty copies of the sources.

    External access is off and the configuration is locked, so even SQL that slipped
    past the parse-tree checks cannot read a file, load an extension or change a
    setting. Returns the output columns and their DuckDB types.
    """
    con = duckdb.connect(":memory:")
    try:
        for name, columns in schemas.items():
            cols = ", ".join(f"{quote(c)} {t}" for c, t in columns.items())
            con.execute(f"CREATE TABLE {quote(name)} ({cols})")
        for setting in (
            "SET enable_external_access = false",
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
            "SET lock_configuration = true",
        ):
            con.execute(setting)
        try:
            rel = con.sql(sql)
        except duckdb.PermissionException as exc:
            raise UnsafeSQLError(f"the SQL tries to reach outside its sources: {exc}") from exc
        if rel is None:
            raise UnsafeSQLError("the SQL is not a query that returns rows")
        return [(c, str(t)) for c, t in zip(rel.columns, rel.types, strict=True)]
    finally:
        con.close()


class DuckDBEngine:
    """Sources become views on one DuckDB connection; joins are ASOF JOINs."""

    name = "duckdb"

    def __init__(self, database: str = ":memory:", *, threads: int | None = None) -> None:
        self.con = duckdb.connect(database)
        self.con.execute("SET TimeZone = 'UTC'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        #: Hold it while using ``con`` directly: the connection is shared by every thread.
        self.lock = threading.RLock()

    # -- sources -----------------------------------------------------------------------
    def tables(self) -> set[str]:
        rows = self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        return {r[0] for r in rows}

    def _create(self, name: str, source: Source) -> None:
        if source.kind == "file":
            reader = _READERS[source.format or "parquet"]
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
            return replace(source, columns=columns)

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

    # -- point-in-time -------------------------------------------------------------------
    def training_frame(self, labels: pd.DataFrame, timestamp: str, joins: list[ViewJoin]) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        data: dict[str, Any] = {k: labels[k].array for k in label_keys(joins)}
        ts = labels[timestamp]
        textual = ts.dtype == object or pd.api.types.is_string_dtype(ts)
        if not (pd.api.types.is_datetime64_any_dtype(ts) or textual):
            raise LabelFrameError(
                f"label frame: timestamp column '{timestamp}' has type {ts.dtype}, not a datetime; "
                "convert it with pd.to_datetime"
            )
        if isinstance(ts.dtype, pd.DatetimeTZDtype):
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        elif textual:
            try:
                ts = pd.to_datetime(ts, utc=True).dt.tz_localize(None)
            except (ValueError, TypeError) as exc:
                raise LabelFrameError(
                    f"label frame: timestamp column '{timestamp}' holds values that are not times: {exc}"
                ) from exc
        data[LABEL_TS] = ts.to_numpy()
        data[ROW] = np.arange(len(labels), dtype=np.int64)
        frame = pd.DataFrame(data)
        with self.lock:
            self._check_key_types(frame, joins)
            self.con.register(LABELS, frame)
            try:
                result = self._pit(joins)
            except duckdb.Error as exc:
                raise EngineError(f"point-in-time join failed: {exc}") from exc
            finally:
                self.con.unregister(LABELS)
        return result.drop(columns=[ROW, *(matched_column(i) for i in range(len(joins)))])

    def _pit(self, joins: list[ViewJoin]) -> pd.DataFrame:
        """One plain ASOF JOIN; the tie-break is recomputed only for views with ties at a match.

        The join's rows stay in DuckDB (RESULT) while the tie check reads them, then come
        out once, put back in label order by ROW (a scatter, cheaper than an ORDER BY).
        """
        import numpy as np

        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {RESULT} AS {pit_sql(joins)}")
        try:
            counts = self.con.execute(ties_sql(joins)).fetchall()[0]
            tied = [i for i, extra in enumerate(counts) if extra]
            keys = ", ".join(key_column(k) for k in label_keys(joins))
            result = self.con.sql(f"SELECT * EXCLUDE ({keys}) FROM {RESULT}").df()
            order = np.empty(len(result), dtype=np.int64)
            order[result[ROW].to_numpy()] = np.arange(len(result), dtype=np.int64)
            result = result.take(order).reset_index(drop=True)
            if tied:
                fixed = self.con.sql(tie_fix_sql(joins, tied)).df()
                for col in fixed.columns:
                    result[col] = fixed[col].array
        finally:
            self.con.execute(f"DROP TABLE IF EXISTS {RESULT}")
        return result

    def _check_key_types(self, frame: pd.DataFrame, joins: list[ViewJoin]) -> None:
        self.con.register(LABELS, frame.head(0))
        try:
            label_types = dict(zip(*self._columns_types(f"SELECT * FROM {LABELS}"), strict=True))
        finally:
            self.con.unregister(LABELS)
        for j in joins:
            view_types = dict(zip(*self._columns_types(f"SELECT * FROM ({j.sql}) LIMIT 0"), strict=True))
            for k in j.entity:
                lt, vt = label_types.get(k, "NULL"), view_types.get(k, "")
                if lt == "NULL" or lt == vt:
                    continue
                if _numeric(lt) != _numeric(vt):
                    raise LabelFrameError(
                        f"label frame: key '{k}' is {lt} but feature view '{j.name}' has it as {vt}; "
                        "cast one to the other's type"
                    )

    def _columns_types(self, query: str) -> tuple[list[str], list[str]]:
        rel = self.con.sql(query)
        return list(rel.columns), [str(t) for t in rel.types]

    def latest(self, join: ViewJoin, end: Any, since: Any = None) -> pa.Table:
        def literal(value: Any) -> str:
            return timestamp_literal(value.isoformat(sep=" ") if isinstance(value, datetime) else str(value))

        query = latest_sql(
            join, end_literal=literal(end), since_literal=literal(since) if since is not None else None
        )
        return self.arrow(query)

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
