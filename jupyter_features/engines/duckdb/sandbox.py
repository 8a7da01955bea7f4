"""Where feature SQL runs in DuckDB: a database of its own that can read the registered
sources and nothing else.

Feature SQL comes from other people through the registry, so besides the allow-list of
``sqlsafety`` it only ever runs on a connection with external access off, file access
limited to the sources' own files (``allowed_paths`` / ``allowed_directories``),
extensions neither installed nor loaded, and its configuration locked. The notebook's
own exploration SQL (``ws.sql``, ``%%sql``) keeps a full DuckDB connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import duckdb

from ...errors import UnsafeSQLError
from ...sqltext import quote, string_literal

if TYPE_CHECKING:
    import pyarrow as pa

    from ...sources import Source

__all__ = [
    "READERS", "open_sandbox", "sandbox_describe", "sandbox_project", "allowed_locations", "settings_sql",
]  # fmt: skip

#: The DuckDB reader of each file format.
READERS = {"parquet": "read_parquet", "csv": "read_csv_auto", "json": "read_json_auto"}
_GLOB_CHARS = "*?["


def allowed_locations(sources: Iterable[Source]) -> tuple[list[str], list[str]]:
    """(files, directories) the file sources may read: a plain path is allowed as itself, a
    glob as the directory before its first wildcard."""
    files: list[str] = []
    directories: list[str] = []
    for source in sources:
        if source.kind != "file" or source.location is None or "://" in source.location:
            continue
        location = source.location
        cut = min((location.find(c) for c in _GLOB_CHARS if c in location), default=-1)
        if cut < 0:
            files.append(location)
        else:
            directory = location[: location.rfind("/", 0, cut) + 1] or "/"
            directories.append(directory)
    return files, directories


def settings_sql(options: Mapping[str, Any]) -> list[str]:
    out = ["SET TimeZone = 'UTC'"]
    if options.get("memory_limit"):
        out.append(f"SET memory_limit = {string_literal(str(options['memory_limit']))}")
    if options.get("threads"):
        out.append(f"SET threads = {int(options['threads'])}")
    if options.get("temp_directory"):
        out.append(f"SET temp_directory = {string_literal(str(options['temp_directory']))}")
    return out


def open_sandbox(
    sources: Iterable[Source], *, table_data: Callable[[str], pa.Table], options: Mapping[str, Any]
) -> duckdb.DuckDBPyConnection:
    """A new in-memory database holding ``sources`` by name, locked down.

    Files and globs become views over DuckDB's readers; DataFrames are registered as they
    are; a DuckDB table of the exploration connection is copied in (``table_data``), as it
    is now.
    """
    sources = list(sources)
    files, directories = allowed_locations(sources)
    con = duckdb.connect(":memory:")
    try:
        for statement in settings_sql(options):
            con.execute(statement)
        if files:
            con.execute(f"SET allowed_paths = [{', '.join(map(string_literal, files))}]")
        if directories:
            con.execute(f"SET allowed_directories = [{', '.join(map(string_literal, directories))}]")
        for statement in (
            "SET enable_external_access = false",
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
        ):
            con.execute(statement)
        for source in sources:
            if source.kind == "file":
                reader = READERS[source.format or "parquet"]
                location = string_literal(str(source.location))
                con.execute(f"CREATE VIEW {quote(source.name)} AS SELECT * FROM {reader}({location})")
            elif source.kind == "dataframe":
                con.register(source.name, source.data)
            else:
                con.register(source.name, table_data(str(source.location)))
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


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


_projection = threading.local()  # one locked connection per thread, opened on first use


def _projection_connection() -> duckdb.DuckDBPyConnection:
    con: duckdb.DuckDBPyConnection | None = getattr(_projection, "con", None)
    if con is None:
        con = duckdb.connect(":memory:")
        for statement in (
            *settings_sql({"threads": 1}),
            "SET enable_external_access = false",
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
            "SET lock_configuration = true",
        ):
            con.execute(statement)
        _projection.con = con
    return con


def sandbox_project(sql: str, name: str, rows: pa.Table) -> pa.Table:
    """Run ``sql`` over ``rows`` (registered as ``name``, the only table there is) on an in-memory
    connection with external access off, no extensions and its configuration locked, which holds
    nothing between calls: for SQL read back from a store, checked against the allow-list first
    by the caller (a SELECT leaves nothing behind). Opening a connection costs far more than a
    one-row projection, so each thread keeps one."""
    con = _projection_connection()
    con.register(name, rows)
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.PermissionException as exc:
        raise UnsafeSQLError(f"the SQL tries to reach outside its rows: {exc}") from exc
    finally:
        con.unregister(name)
