"""Static analysis of feature SQL with sqlglot: safety, referenced sources, lineage.

The parse-tree checks here are the first wall; the second is running the SQL on a
sandbox DuckDB connection with external access disabled (see ``sandbox.py``), so a
gap in either one is not a hole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from .errors import UnknownSourceError, UnsafeSQLError, did_you_mean

__all__ = ["ParsedQuery", "parse_feature_sql", "column_lineage", "normalize_sql"]

DIALECT = "duckdb"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain_message(exc: BaseException) -> str:
    """A sqlglot error's message without the terminal escapes it underlines the bad token with."""
    return _ANSI.sub("", str(exc))


#: Functions that read files, the network, the environment or run dynamic SQL.
_FORBIDDEN_FUNCTIONS = frozenset(
    {
        "read_csv", "read_csv_auto", "read_parquet", "parquet_scan", "read_json",
        "read_json_auto", "read_json_objects", "read_json_objects_auto", "read_ndjson",
        "read_ndjson_auto", "read_ndjson_objects", "read_text", "read_blob", "glob",
        "sniff_csv", "parquet_metadata", "parquet_schema", "parquet_file_metadata",
        "parquet_kv_metadata", "parquet_bloom_probe", "iceberg_scan", "iceberg_metadata",
        "iceberg_snapshots", "delta_scan", "sqlite_scan", "sqlite_attach", "postgres_scan",
        "postgres_query", "postgres_attach", "mysql_scan", "mysql_query", "read_xlsx",
        "st_read", "st_read_meta", "getenv", "query", "query_table", "current_setting",
        "duckdb_settings", "duckdb_secrets", "duckdb_extensions", "duckdb_databases",
        "load_extension", "install_extension", "http_get", "http_post", "read_file",
        "arrow_scan", "pandas_scan", "checkpoint", "force_checkpoint",
    }
)  # fmt: skip
_FORBIDDEN_EXPRESSIONS: tuple[type[exp.Expression], ...] = (
    exp.ReadCSV,
    exp.Command,
    exp.Create,
    exp.Drop,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Copy,
    exp.Attach,
    exp.Detach,
    exp.Pragma,
    exp.Set,
    exp.Install,
    exp.Into,
)


@dataclass(frozen=True)
class ParsedQuery:
    """A feature SQL statement that passed the static checks."""

    tree: exp.Query
    sources: tuple[str, ...]  # registered sources it reads, sorted

    @property
    def normalized(self) -> str:
        """The canonical form of the SQL (sqlglot pretty print), as ``normalize_sql`` gives it."""
        return self.tree.sql(dialect=DIALECT, pretty=True)


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def parse_feature_sql(sql: str, sources: Mapping[str, object] | None, *, owner: str) -> ParsedQuery:
    """Parse ``sql`` and refuse anything but one SELECT over ``sources``.

    ``owner`` names the object in messages, e.g. "feature view 'user_spend'".
    ``sources=None`` accepts any plain table name (the registry checks a definition
    whose sources live in someone else's workspace).
    """
    if not sql or not sql.strip():
        raise UnsafeSQLError(f"{owner}: the SQL is empty; write one SELECT over your sources")
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except SqlglotError as exc:
        raise UnsafeSQLError(f"{owner}: the SQL does not parse: {plain_message(exc)}") from exc
    if len(statements) != 1:
        raise UnsafeSQLError(
            f"{owner}: expected exactly one SELECT statement, got {len(statements)}; "
            "put one query in a feature view (use CTEs for intermediate steps)"
        )
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        kind = tree.key.upper()
        raise UnsafeSQLError(
            f"{owner}: only a SELECT is allowed, not {kind}; "
            "feature SQL reads registered sources and changes nothing"
        )
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN_EXPRESSIONS):
            raise UnsafeSQLError(
                f"{owner}: {node.key.upper()} is not allowed inside feature SQL; "
                "write a plain SELECT over registered sources"
            )
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name in _FORBIDDEN_FUNCTIONS or name.startswith(("read_", "parquet_")):
                raise UnsafeSQLError(
                    f"{owner}: function {name}() reads files, the network or settings and is "
                    "not allowed in feature SQL; register the data as a source with "
                    "ws.register_source(...) and select from it by name"
                )
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    known = {name.lower(): name for name in sources} if sources is not None else None
    used: list[str] = []
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise UnsafeSQLError(
                f"{owner}: table function {table.this.sql(DIALECT)} is not allowed; "
                "select from registered sources by name"
            )
        if table.args.get("db") or table.args.get("catalog"):
            raise UnsafeSQLError(
                f"{owner}: '{table.sql(DIALECT)}' names another database or schema; "
                "select from registered sources by their plain name"
            )
        name = table.name
        lowered = name.lower()
        if lowered in cte_names:
            continue
        if (known is None or lowered not in known) and any(ch in name for ch in "./\\:*"):
            raise UnsafeSQLError(
                f"{owner}: '{name}' looks like a file or URL; feature SQL cannot read "
                f"files directly: ws.register_source('name', '{name}') and select from it"
            )
        if known is None:
            if name not in used:
                used.append(name)
            continue
        if lowered not in known:
            names = sorted(known.values())
            raise UnknownSourceError(
                f"{owner}: unknown source '{name}'{did_you_mean(name, names)}; "
                f"registered sources: {', '.join(names) or 'none'} "
                "(register it with ws.register_source)"
            )
        if known[lowered] not in used:
            used.append(known[lowered])
    return ParsedQuery(tree=tree, sources=tuple(sorted(used)))


def normalize_sql(sql: str) -> str:
    """A canonical form of the SQL (sqlglot pretty print) for hashing and diffs; with a
    ``ParsedQuery`` at hand, its ``normalized`` is the same without parsing again."""
    try:
        return sqlglot.transpile(sql, read=DIALECT, write=DIALECT, pretty=True)[0]
    except SqlglotError:
        return sql.strip()


def column_lineage(
    sql: str, columns: list[str], schema: Mapping[str, Mapping[str, str]]
) -> dict[str, list[str]]:
    """Map each output column to the 'source.column' names it reads.

    Falls back to an empty list for a column sqlglot cannot trace (e.g. ``*`` over
    an unknown shape); lineage is documentation, never a gate.
    """
    from sqlglot.lineage import lineage

    result: dict[str, list[str]] = {}
    lowered_schema = {k.lower(): dict(v) for k, v in schema.items()}
    for column in columns:
        reads: list[str] = []
        try:
            node = lineage(column, sql, schema=lowered_schema, dialect=DIALECT)
            for leaf in node.walk():
                if leaf.downstream or not isinstance(leaf.source, exp.Table):
                    continue
                ref = f"{leaf.source.name}.{leaf.name.split('.')[-1]}"
                if ref not in reads:
                    reads.append(ref)
        except Exception:  # noqa: BLE001 - sqlglot raises many kinds for odd shapes
            reads = []
        result[column] = sorted(reads)
    return result
