"""Pushes into a windowed view over HTTP: pushed rows projected into the version's events.

A run of a windowed view stores, in the version's metadata (``WindowSpec.push``), the columns a
push carries with their DuckDB types and the projection's SQL — keys, event time, aggregate
inputs and FILTER flags over the pushed rows (``windows.pushed_relation_sql``). The server has
no workspace and no view, so it runs that SQL; but it comes from the store, so it is untrusted
here: it must be one SELECT of expressions from the pushed rows (``windows.PUSHED_TABLE``, the
only table), pass feature SQL's allow-list (``sqlsafety``) and give exactly the version's event
columns, and it runs on a sandboxed DuckDB connection holding nothing but the rows
(``sandbox_project``: external access off, configuration locked). A version without it (written
before) or with anything else is a ``VersionMetadataError`` (409) saying to materialize again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, UnsafeSQLError, VersionMetadataError
from ..sqltext import EVENT_TS

if TYPE_CHECKING:
    import pyarrow as pa

    from ..online import OnlineTable

__all__ = ["WindowProjection", "window_projection"]

_CACHE: dict[tuple[Any, ...], WindowProjection] = {}
_CACHE_SIZE = 256


@dataclass(frozen=True)
class WindowProjection:
    """A checked projection: the pushed columns (name, JSON kind, Arrow type, required) and the SQL."""

    view: str
    columns: tuple[tuple[str, str, pa.DataType, bool], ...]
    sql: str
    outputs: tuple[str, ...]
    types: tuple[str, ...]  # the kind the version stores each output as (keys, event time, columns)
    #: The pushed column each output is, when every output is one (no expression to compute)
    plain: tuple[str, ...] | None = None

    def project(self, rows: pa.Table) -> pa.Table:
        """The events of ``rows`` (the push columns, typed by ``columns``), computed in the sandbox
        (or, when every output is a pushed column as it is, picked without running SQL)."""
        import duckdb

        from ..engines.duckdb import sandbox_project
        from ..windows import PUSHED_TABLE

        if self.plain is not None:
            picked = rows.select(list(self.plain)).rename_columns(list(self.outputs))
            return _as_stored(picked, self.types, self.view)
        try:
            events = sandbox_project(self.sql, PUSHED_TABLE, rows)
        except UnsafeSQLError as exc:
            raise _tampered(self.view, str(exc)) from None
        except duckdb.Error as exc:  # the rows' values: e.g. a cast the view's SQL makes fails on them
            raise InvalidRequestError(
                f"the push to '{self.view}': the view's SQL fails on these rows "
                f"({str(exc).splitlines()[0][:300]}); fix the rows' values"
            ) from None
        if tuple(events.column_names) != self.outputs:
            raise _tampered(self.view, "the projection gives other columns than the version stores")
        return _as_stored(events, self.types, self.view)


def _as_stored(events: pa.Table, kinds: tuple[str, ...], view: str) -> pa.Table:
    """``events`` cast to the Arrow types of the kinds the version stores (what a run's projection
    gives casts losslessly; anything else was not written by a run)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = {
        "int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_(),
        "timestamp": pa.timestamp("us"), "list<float>": pa.list_(pa.float64()),
    }  # fmt: skip
    out = []
    for name, column, kind in zip(events.column_names, events.columns, kinds, strict=True):
        try:
            out.append(pc.cast(column, arrow[kind], safe=True))
        except (pa.ArrowException, KeyError) as exc:
            raise _tampered(view, f"its column {name} is {column.type}, not {kind} ({exc})") from None
    return pa.Table.from_arrays(out, names=events.column_names)


def _tampered(view: str, why: str) -> VersionMetadataError:
    return VersionMetadataError(
        f"feature view '{view}': the online store's projection of pushed rows is refused ({why}); "
        "the store's metadata was changed behind its back: materialize the view again"
    )


def window_projection(table: OnlineTable) -> WindowProjection:
    """The checked push projection of windowed version ``table`` (cached per version and metadata)."""
    spec = table.window
    assert spec is not None
    if spec.push is None:
        raise VersionMetadataError(
            f"feature view '{table.view}': its served version {table.version} was materialized before "
            "pushes over HTTP could be projected into its windows; materialize it again, then push"
        )
    key = (table.view, table.version, table.layout, table.timestamp, spec.push)  # all a check reads
    found = _CACHE.get(key)
    if found is None:
        found = _check(table)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = found
    return found


def _check(table: OnlineTable) -> WindowProjection:
    import sqlglot
    from sqlglot import exp

    from ..pushes import arrow_type
    from ..schema import feature_type_of
    from ..sqlsafety import check_tree
    from ..windows import PUSHED_TABLE

    view = table.view
    spec = table.window
    assert spec is not None and spec.push is not None
    names = [name for name, _ in spec.push.columns]
    required = {*table.entity, table.timestamp}
    if not table.timestamp or not required <= set(names):
        raise _tampered(view, "the pushed columns lack the view's keys or timestamp")
    columns: list[tuple[str, str, Any, bool]] = []
    for name, duckdb_type in spec.push.columns:
        target = arrow_type(duckdb_type)
        if target is None:
            raise InvalidRequestError(
                f"feature view '{view}': column '{name}' is {duckdb_type[:60]}, which a push over HTTP "
                "cannot carry; push with ws.push in a workspace"
            )
        kind = feature_type_of(duckdb_type)[0]
        columns.append((name, "string" if kind == "categorical" else kind, target, name in required))
    try:
        statements = sqlglot.parse(spec.push.sql, read="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        raise _tampered(view, f"it does not parse: {str(exc)[:200]}") from None
    tree = statements[0] if len(statements) == 1 else None
    if not isinstance(tree, exp.Select):
        raise _tampered(view, "it is not one SELECT")
    clauses = {k for k, v in tree.args.items() if v and k not in ("expressions", "from_")}
    source = tree.args.get("from_")
    tables = list(tree.find_all(exp.Table))
    if (
        clauses
        or source is None
        or len(tables) != 1
        or source.this is not tables[0]
        or tables[0].name != PUSHED_TABLE
        or tables[0].args.get("db")
        or tables[0].args.get("catalog")
        or tables[0].args.get("alias")
        or any(node is not tree for node in tree.find_all(exp.Query, exp.Subquery, exp.Join, exp.With))
    ):
        raise _tampered(
            view, f"it must select expressions of the pushed rows ({PUSHED_TABLE}) and nothing else"
        )
    try:
        check_tree(tree, owner=f"feature view '{view}'")
    except UnsafeSQLError as exc:
        raise _tampered(view, str(exc)) from None
    known = set(names) | {i.name for lam in tree.find_all(exp.Lambda) for i in lam.expressions}
    for column in tree.find_all(exp.Column):
        if column.table or (not isinstance(column.this, exp.Star) and column.name not in known):
            raise _tampered(view, f"it reads {column.sql(dialect='duckdb')[:80]}, not a pushed column")
        if isinstance(column.this, exp.Star):
            raise _tampered(view, "it selects *")
    outputs = tuple(str(e.alias_or_name) for e in tree.expressions)
    wanted = (*table.entity, EVENT_TS, *(c.name for c in spec.columns))
    if outputs != wanted:
        raise _tampered(view, "it gives other columns than the version stores")
    kinds = {name: kind for name, kind, _, _ in columns}
    if any(kinds[k] != t for k, t in zip(table.entity, table.key_types, strict=True)):
        raise _tampered(view, "a pushed key's type is not the version's key type")
    types = (*table.key_types, "timestamp", *(c.type for c in spec.columns))
    picks = [e.this.name if isinstance(e, exp.Alias) and isinstance(e.this, exp.Column) else None
             for e in tree.expressions]  # fmt: skip
    plain = None if None in picks else tuple(str(p) for p in picks)
    return WindowProjection(view, tuple(columns), tree.sql(dialect="duckdb"), outputs, types, plain)
