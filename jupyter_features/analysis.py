"""Static analysis of feature SQL with sqlglot: safety, referenced sources, lineage.

The parse-tree checks here (with the allow-list of ``sqlsafety``) are the first wall; the
second is that feature SQL only ever runs on a DuckDB connection with external access
off, file access limited to the registered sources and its configuration locked (the
DuckDB engine's sandbox), so a gap in either one is not a hole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from .errors import UnknownSourceError, UnsafeSQLError, did_you_mean
from .sqlsafety import check_tree

__all__ = ["ParsedQuery", "parse_feature_sql", "column_lineage", "normalize_sql"]

DIALECT = "duckdb"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain_message(exc: BaseException) -> str:
    """A sqlglot error's message without the terminal escapes it underlines the bad token with."""
    return _ANSI.sub("", str(exc))


#: Names of DuckDB's catalog views and tables (pg_settings, duckdb_views, sqlite_master,
#: pragma_...): never sources, even where the registered sources are not known.
_CATALOG = re.compile(r"^(pg_|duckdb_|sqlite_|pragma_|information_schema$|__jf_)", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedQuery:
    """A feature SQL statement that passed the static checks."""

    tree: exp.Query
    sources: tuple[str, ...]  # registered sources it reads, sorted

    @property
    def normalized(self) -> str:
        """The canonical form of the SQL (sqlglot pretty print), as ``normalize_sql`` gives it."""
        return self.tree.sql(dialect=DIALECT, pretty=True)


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
    check_tree(tree, owner=owner)
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    known = {name.lower(): name for name in sources} if sources is not None else None
    used: list[str] = []
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Func):
            continue  # a pure table function (range, generate_series), checked by check_tree
        if not isinstance(table.this, exp.Identifier):
            raise UnsafeSQLError(
                f"{owner}: '{table.this.sql(DIALECT)}' is not allowed in FROM; "
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
            if _CATALOG.match(name):
                raise UnsafeSQLError(
                    f"{owner}: '{name}' is one of DuckDB's catalog tables, not a source; "
                    "feature SQL may only read registered sources"
                )
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
