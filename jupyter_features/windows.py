"""Windowed feature views: one ``SELECT keys, aggregates FROM … GROUP BY keys`` evaluated over
time windows at each label's own time.

``window_plan`` parses and checks such a view into a plain-data ``WindowPlan``: the relation
of rows to aggregate (the SELECT with its projection replaced by the keys, the event time and
one column per aggregate input and filter, its GROUP BY removed), the aggregates and the
windows. The engines (``engines/duckdb/windows.py``, ``engines/spark/windows.py``) compute
from it; for a label (keys, t) and a window w each feature aggregates the rows with those keys
and event time in (t - w, t].
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlglot import exp

from .analysis import DIALECT, parse_feature_sql
from .errors import FeatureViewError, TTLError
from .times import format_ttl, parse_ttl

__all__ = [
    "Aggregate", "TimeWindow", "WindowPlan", "window_plan", "time_windows", "value_class", "AGGREGATES",
    "push_columns", "push_columns_sql", "pushed_relation_sql", "PUSHED_TABLE",
]  # fmt: skip

#: The relation's event-time column (the same name the point-in-time join uses).
from .sqltext import EVENT_TS

#: Supported aggregate functions as written in SQL → the function computed.
AGGREGATES = {
    "count": "count", "sum": "sum", "avg": "avg", "min": "min", "max": "max",
    "stddev_samp": "stddev_samp", "stddev": "stddev_samp", "var_samp": "var_samp", "variance": "var_samp",
}  # fmt: skip
_SUPPORTED = (
    "count(*), count(x), count(DISTINCT x), sum(x), avg(x), min(x), max(x), stddev_samp(x) / stddev(x), "
    "var_samp(x) / variance(x), each optionally with FILTER (WHERE ...)"
)
_NODES: dict[type[exp.Expression], str] = {
    exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max",
    exp.Stddev: "stddev_samp", exp.StddevSamp: "stddev_samp", exp.Variance: "var_samp",
}  # fmt: skip
_WINDOW_NAME = re.compile(r"(?:\d+[A-Za-z]+)+")


@dataclass(frozen=True)
class Aggregate:
    """One aggregate of the SELECT: ``function(argument) FILTER (WHERE filter) AS alias``."""

    function: str  # count, sum, avg, min, max, stddev_samp, var_samp
    argument: str | None  # the argument's SQL; None for count(*)
    distinct: bool  # count(DISTINCT x)
    filter: str | None  # the FILTER condition's SQL
    alias: str
    input: str | None  # the relation column holding the argument; None for count(*)
    flag: str | None  # the relation column holding the filter (never null: FALSE where not TRUE)


@dataclass(frozen=True)
class TimeWindow:
    """A window as written ('24h') and its length."""

    text: str
    length: timedelta

    @property
    def micros(self) -> int:
        return self.length // timedelta(microseconds=1)


@dataclass(frozen=True)
class WindowPlan:
    """A checked windowed view: what the engines need, as plain data."""

    owner: str  # names the view in messages, e.g. "feature view 'plane_history'"
    relation_sql: str  # keys..., EVENT_TS, inputs..., flags...: the rows to aggregate
    entity: tuple[str, ...]
    timestamp: str  # the event-time column of the rows, as given
    aggregates: tuple[Aggregate, ...]
    windows: tuple[TimeWindow, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        """The relation's aggregate input columns, in first-use order."""
        return tuple(dict.fromkeys(a.input for a in self.aggregates if a.input))

    @property
    def flags(self) -> tuple[str, ...]:
        """The relation's filter columns, in first-use order."""
        return tuple(dict.fromkeys(a.flag for a in self.aggregates if a.flag))

    @property
    def features(self) -> list[tuple[str, Aggregate, TimeWindow]]:
        """(name, aggregate, window) per feature: each window in order, each aggregate in SELECT order."""
        return [(f"{a.alias}_{w.text}", a, w) for w in self.windows for a in self.aggregates]

    @property
    def feature_names(self) -> list[str]:
        return [name for name, _, _ in self.features]

    def output_types(self, input_types: Mapping[str, str]) -> dict[str, str]:
        """Feature name → DuckDB type of its values, given the relation's column types.

        count → BIGINT; avg, stddev_samp, var_samp → DOUBLE; sum → BIGINT over integers, DOUBLE
        otherwise; min and max keep their input's type (DOUBLE for DECIMAL, TIMESTAMP for times).
        """
        by_alias: dict[str, str] = {}
        for a in self.aggregates:
            by_alias[a.alias] = self._type_of(a, input_types)
        return {name: by_alias[a.alias] for name, a, _ in self.features}

    def _type_of(self, agg: Aggregate, input_types: Mapping[str, str]) -> str:
        if agg.function == "count":
            return "BIGINT"
        assert agg.input is not None
        source = input_types[agg.input]
        kind = value_class(source)
        if agg.function in ("min", "max"):
            return {"float": "DOUBLE", "time": "TIMESTAMP"}.get(kind, source)
        if kind not in ("int", "float", "bool"):
            raise FeatureViewError(
                f"{self.owner}: {agg.function}({agg.argument}) AS {agg.alias} needs a number, but the "
                f"argument is {source}; cast it, e.g. {agg.function}(CAST({agg.argument} AS DOUBLE))"
            )
        if agg.function == "sum" and kind in ("int", "bool"):
            return "BIGINT"
        return "DOUBLE"


def value_class(duckdb_type: str) -> str:
    """How the engines carry a column: 'int', 'float' (DECIMAL too), 'time', 'bool' or 'other'."""
    t = duckdb_type.strip().upper()
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"):
        return "int"
    if t in ("FLOAT", "DOUBLE", "REAL", "UBIGINT", "HUGEINT", "UHUGEINT") or t.startswith(
        ("DECIMAL", "NUMERIC")
    ):
        return "float"
    if t.startswith(("TIMESTAMP", "DATE")):
        return "time"
    if t in ("BOOLEAN", "BOOL"):
        return "bool"
    return "other"


# -- parsing ---------------------------------------------------------------------------------


def window_plan(
    sql: str,
    entity: str | Sequence[str],
    timestamp: str,
    windows: Sequence[str | timedelta],
    *,
    owner: str,
    sources: Mapping[str, object] | None = None,
    ttl: object = None,
    created_timestamp: str | None = None,
) -> WindowPlan:
    """Check a windowed view's SQL and options; return its plan or raise a FeatureViewError
    (an UnsafeSQLError for SQL that does more than read ``sources``) naming the fix."""
    if ttl not in (None, ""):
        raise FeatureViewError(
            f"{owner}: windows and ttl cannot be combined: each window already bounds how old the "
            "aggregated rows are; drop ttl"
        )
    if created_timestamp:
        raise FeatureViewError(
            f"{owner}: created_timestamp breaks ties between rows at one event time, but a windowed "
            "view aggregates all of them; drop created_timestamp"
        )
    keys = (entity,) if isinstance(entity, str) else tuple(entity)
    if not keys or len({k.lower() for k in keys}) != len(keys):
        raise FeatureViewError(
            f"{owner}: entity must name one or more distinct key columns, got {list(keys)}"
        )
    spans = time_windows(windows, owner)
    tree = parse_feature_sql(sql, sources, owner=owner).tree
    if not isinstance(tree, exp.Select):
        raise FeatureViewError(
            f"{owner}: a windowed view is one SELECT keys, aggregates FROM ... GROUP BY keys, not a "
            f"{tree.key.upper()}; move the rest into a CTE or a subquery in the FROM"
        )
    for clause, what in (
        ("distinct", "SELECT DISTINCT"), ("having", "HAVING"), ("order", "ORDER BY"), ("limit", "LIMIT"),
        ("offset", "OFFSET"), ("qualify", "QUALIFY"), ("windows", "WINDOW"),
    ):  # fmt: skip
        if tree.args.get(clause):
            raise FeatureViewError(
                f"{owner}: {what} is not supported in a windowed view, whose rows are the entities' "
                "aggregates at each label's time; filter rows in WHERE or in FILTER (WHERE ...) instead"
            )
    key_exprs = _keys(tree, keys, owner)
    if timestamp is None or not str(timestamp).strip():
        raise FeatureViewError(f"{owner}: timestamp must name the event-time column of the rows aggregated")
    aggregates, inputs, flags = _aggregates(tree, keys, owner)
    relation = tree.copy()
    relation.set("group", None)
    projection: list[exp.Expr] = [exp.alias_(e.copy(), k, quoted=True) for k, e in key_exprs.items()]
    projection.append(exp.alias_(exp.to_column(timestamp), EVENT_TS, quoted=True))
    projection += [exp.alias_(e, name, quoted=True) for name, e in inputs.items()]
    projection += [
        exp.alias_(exp.func("coalesce", exp.paren(e), exp.false()), name, quoted=True)
        for name, e in flags.items()
    ]
    relation.set("expressions", projection)
    plan = WindowPlan(
        owner=owner,
        relation_sql=relation.sql(dialect=DIALECT),
        entity=keys,
        timestamp=str(timestamp),
        aggregates=tuple(aggregates),
        windows=spans,
    )
    seen: dict[str, str] = {k.lower(): k for k in keys}
    for name in plan.feature_names:
        if name.lower() in seen:
            raise FeatureViewError(
                f"{owner}: feature '{name}' has the same name as '{seen[name.lower()]}'; rename the aggregate"
            )
        seen[name.lower()] = name
    return plan


def time_windows(windows: Sequence[str | timedelta], owner: str) -> tuple[TimeWindow, ...]:
    """``windows`` checked: each written as numbers and units ('24h', '1d12h') or a timedelta,
    positive, no two of the same length; a FeatureViewError naming the fix otherwise."""
    if isinstance(windows, (str, timedelta)):
        windows = [windows]
    if not windows:
        raise FeatureViewError(
            f"{owner}: windows is empty; give one or more, e.g. windows=['1h', '24h', '7d']"
        )
    out: list[TimeWindow] = []
    for value in windows:
        if isinstance(value, timedelta):
            if value <= timedelta(0):
                raise FeatureViewError(f"{owner}: window {value} is not positive; use e.g. '1h' or '7d'")
            text = format_ttl(value) or ""
        elif isinstance(value, str):
            text = value.strip()
            if not _WINDOW_NAME.fullmatch(text):
                hint = ""
                try:
                    hint = f" ('{format_ttl(parse_ttl(text, owner=owner))}')"
                except TTLError:
                    pass
                raise FeatureViewError(
                    f"{owner}: cannot use window {value!r}: a window is written as numbers and units with "
                    f"nothing between them{hint}, e.g. '1h', '24h', '7d', '90m' or '1d12h'; its text "
                    "names the features (count_24h)"
                )
        else:
            raise FeatureViewError(
                f"{owner}: window {value!r} is a {type(value).__name__}; write it as text like '24h' or a timedelta"
            )
        try:
            length = parse_ttl(value, owner=owner)
        except TTLError:
            length = None
        if length is None or length // timedelta(microseconds=1) <= 0:
            raise FeatureViewError(
                f"{owner}: cannot read window {value!r} as a positive duration; write a number and a unit, "
                "e.g. '1h', '24h', '7d', '90m' or '45s'"
            )
        for other in out:
            if other.length == length:
                raise FeatureViewError(
                    f"{owner}: windows {other.text!r} and {text!r} are the same length; keep one of them"
                )
        out.append(TimeWindow(text=text, length=length))
    return tuple(out)


def _output_name(e: exp.Expression) -> str:
    return str(e.alias_or_name)


def _keys(tree: exp.Select, keys: tuple[str, ...], owner: str) -> dict[str, exp.Expression]:
    """The key projections (plain columns named as the entity keys), checked against GROUP BY."""
    wanted = {k.lower(): k for k in keys}
    found: dict[str, exp.Expression] = {}
    for e in tree.expressions:
        name = _output_name(e)
        inner = e.this if isinstance(e, exp.Alias) else e
        if name.lower() in wanted:
            if not isinstance(inner, exp.Column) or isinstance(inner.this, exp.Star):
                raise FeatureViewError(
                    f"{owner}: entity key '{name}' must be selected as a plain column, not "
                    f"{inner.sql(DIALECT)}; compute it in a CTE or subquery in the FROM and select it"
                )
            found[wanted[name.lower()]] = inner
    missing = [k for k in keys if k not in found]
    if missing:
        raise FeatureViewError(
            f"{owner}: entity key(s) {', '.join(missing)} are not selected; a windowed view is "
            "SELECT keys, aggregates FROM ... GROUP BY keys"
        )
    group = tree.args.get("group")
    if group is None:
        raise FeatureViewError(
            f"{owner}: a windowed view needs GROUP BY {', '.join(keys)} (its entity keys); "
            "it is SELECT keys, aggregates FROM ... GROUP BY keys"
        )
    if group.args.get("all"):
        return {k: found[k] for k in keys}
    grouped: list[str] = []
    for g in group.expressions:
        if isinstance(g, exp.Literal) and not g.is_string and g.name.isdigit():
            index = int(g.name) - 1
            if not 0 <= index < len(tree.expressions):
                raise FeatureViewError(f"{owner}: GROUP BY {g.name} is not a column of the SELECT")
            grouped.append(_output_name(tree.expressions[index]).lower())
            continue
        name = g.name.lower() if isinstance(g, exp.Column) else ""
        by_source = [k for k, e in found.items() if isinstance(g, exp.Column) and e.name.lower() == name]
        if name in wanted:
            grouped.append(name)
        elif by_source:
            grouped.append(by_source[0].lower())
        else:
            raise FeatureViewError(
                f"{owner}: GROUP BY {g.sql(DIALECT)} is not an entity key; group by exactly the entity "
                f"keys ({', '.join(keys)})"
            )
    if sorted(set(grouped)) != sorted(wanted) or len(grouped) != len(keys):
        raise FeatureViewError(
            f"{owner}: GROUP BY must list exactly the entity keys ({', '.join(keys)}), got "
            f"{', '.join(g.sql(DIALECT) for g in group.expressions)}"
        )
    return {k: found[k] for k in keys}


def _aggregates(
    tree: exp.Select, keys: tuple[str, ...], owner: str
) -> tuple[list[Aggregate], dict[str, exp.Expression], dict[str, exp.Expression]]:
    wanted = {k.lower() for k in keys}
    aggregates: list[Aggregate] = []
    inputs: dict[str, exp.Expression] = {}
    flags: dict[str, exp.Expression] = {}
    by_sql: dict[str, str] = {}
    aliases: set[str] = set()

    def column_for(e: exp.Expression, prefix: str, into: dict[str, exp.Expression]) -> str:
        text = prefix + e.sql(DIALECT)
        if text not in by_sql:
            by_sql[text] = f"__jf_{prefix}{len(into)}"
            into[by_sql[text]] = e.copy()
        return by_sql[text]

    for e in tree.expressions:
        name = _output_name(e)
        if name.lower() in wanted and not isinstance(e.this if isinstance(e, exp.Alias) else e, exp.AggFunc):
            continue
        if isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)):
            raise FeatureViewError(
                f"{owner}: SELECT * is not allowed in a windowed view; select the entity keys and aggregates"
            )
        if not isinstance(e, exp.Alias):
            if e.find(exp.AggFunc) is not None:
                raise FeatureViewError(
                    f"{owner}: aggregate {e.sql(DIALECT)} needs a name: write {e.sql(DIALECT)} AS some_name "
                    "(the features are named name_<window>)"
                )
            raise FeatureViewError(
                f"{owner}: {e.sql(DIALECT)} is neither an entity key nor an aggregate; a windowed view "
                "selects only its keys and aggregates (add it to entity, or aggregate it)"
            )
        alias = e.alias
        if alias.lower() in aliases:
            raise FeatureViewError(f"{owner}: two aggregates are named '{alias}'; give each its own name")
        aliases.add(alias.lower())
        node = e.this
        condition: exp.Expression | None = None
        if isinstance(node, exp.Filter):
            where = node.expression
            condition = where.this if isinstance(where, exp.Where) else where
            node = node.this
        if isinstance(node, exp.Window):
            raise FeatureViewError(
                f"{owner}: {alias} uses a window function (OVER); in a windowed view the windows are "
                "given by windows=[...]: write the plain aggregate"
            )
        function = _NODES.get(type(node))
        if function is None or not isinstance(node, exp.AggFunc):
            what = node.sql(DIALECT)
            raise FeatureViewError(
                f"{owner}: {alias} = {what} is not a supported aggregate; a windowed view supports "
                f"{_SUPPORTED}"
            )
        extra = [k for k, v in node.args.items() if v and k not in ("this", "big_int")]
        argument = node.this
        distinct = isinstance(argument, exp.Distinct)
        if distinct:
            if function != "count":
                raise FeatureViewError(
                    f"{owner}: {alias}: DISTINCT is supported only in count(DISTINCT x), not in {function}()"
                )
            values = argument.expressions
            if len(values) != 1:
                raise FeatureViewError(
                    f"{owner}: {alias}: count(DISTINCT ...) takes one expression; combine several "
                    "with a struct or a string if needed"
                )
            argument = values[0]
        if extra or isinstance(argument, exp.Order):
            raise FeatureViewError(
                f"{owner}: {alias} = {node.sql(DIALECT)} has extra arguments or clauses; write "
                f"{function}(x) with one argument, optionally with FILTER (WHERE ...)"
            )
        if argument is None or isinstance(argument, exp.Star):
            if function != "count" or distinct:
                raise FeatureViewError(
                    f"{owner}: {alias}: {function}() needs an argument, e.g. {function}(x)"
                )
            argument = None
        for part in ([argument] if argument is not None else []) + (
            [condition] if condition is not None else []
        ):
            if part.find(exp.AggFunc, exp.Window) is not None:
                raise FeatureViewError(
                    f"{owner}: {alias} nests an aggregate or window function inside another; compute "
                    "the inner one in a CTE first"
                )
        aggregates.append(
            Aggregate(
                function=function,
                argument=argument.sql(DIALECT) if argument is not None else None,
                distinct=distinct,
                filter=condition.sql(DIALECT) if condition is not None else None,
                alias=alias,
                input=column_for(argument, "x", inputs) if argument is not None else None,
                flag=column_for(condition, "f", flags) if condition is not None else None,
            )
        )
    if not aggregates:
        raise FeatureViewError(
            f"{owner}: a windowed view needs at least one aggregate, e.g. count(*) AS events; "
            f"supported: {_SUPPORTED}"
        )
    return aggregates, inputs, flags


# -- pushes ----------------------------------------------------------------------------------
#: The table name pushed rows have in a projection (``pushed_relation_sql(plan, quote(PUSHED_TABLE))``).
PUSHED_TABLE = "__jf_pushed"
# A push into a windowed view carries raw rows: the entity keys, the view's timestamp and the
# columns its aggregates' arguments and FILTER conditions read, named as in the SQL without
# their table qualifier. The relation's projection is then run over them.


def _referenced(plan: WindowPlan) -> dict[str, exp.Column]:
    """Column name → the (qualified) column the aggregates read, in first-use order."""
    out: dict[str, exp.Column] = {}
    for a in plan.aggregates:
        for text in (a.argument, a.filter):
            if text is None:
                continue
            parsed: exp.Expression = exp.maybe_parse(text, dialect=DIALECT)
            column: exp.Column
            for column in parsed.find_all(exp.Column):
                if isinstance(column.this, exp.Star):
                    continue
                name = column.name
                known = out.get(name)
                if known is not None and known.sql(DIALECT) != column.sql(DIALECT):
                    raise FeatureViewError(
                        f"{plan.owner}: the aggregates read two columns named '{name}' "
                        f"({known.sql(DIALECT)}, {column.sql(DIALECT)}), which a push cannot tell apart; "
                        "rename one of them in a CTE or subquery in the FROM"
                    )
                out.setdefault(name, column)
    return out


def push_columns(plan: WindowPlan) -> tuple[str, ...]:
    """The columns a push into the view carries: its keys, its timestamp, then every column its
    aggregates and filters read (names without table qualifiers)."""
    return tuple(dict.fromkeys([*plan.entity, plan.timestamp, *_referenced(plan)]))


def push_columns_sql(plan: WindowPlan) -> str:
    """SQL giving the push columns as the view's rows hold them (bind it to learn their types)."""
    tree: exp.Expression = exp.maybe_parse(plan.relation_sql, dialect=DIALECT)
    assert isinstance(tree, exp.Select)
    n = len(plan.entity)
    projection: list[exp.Expr] = [e.copy() for e in tree.expressions[: n + 1]]
    projection[n] = exp.alias_(projection[n].this if isinstance(projection[n], exp.Alias) else projection[n],
                               plan.timestamp, quoted=True)  # fmt: skip
    seen = {c.lower() for c in (*plan.entity, plan.timestamp)}
    for name, column in _referenced(plan).items():
        if name.lower() not in seen:
            seen.add(name.lower())
            projection.append(exp.alias_(column.copy(), name, quoted=True))
    tree = tree.copy()
    tree.set("expressions", projection)
    return tree.sql(dialect=DIALECT)


def _unqualified(text: str) -> exp.Expression:
    tree: exp.Expression = exp.maybe_parse(text, dialect=DIALECT).copy()
    for column in list(tree.find_all(exp.Column)):
        if not isinstance(column.this, exp.Star):
            column.replace(exp.column(column.name, quoted=True))
    return tree


def pushed_relation_sql(plan: WindowPlan, rows: str) -> str:
    """The relation's rows (keys, EVENT_TS, inputs, flags) of pushed rows read from ``rows`` (SQL
    of a FROM item: a quoted table name or an aliased subquery, holding the push columns). The
    view's FROM, joins and WHERE do not apply: pushed rows are taken as rows of the relation."""
    inputs = {a.input: a.argument for a in plan.aggregates if a.input and a.argument is not None}
    flags = {a.flag: a.filter for a in plan.aggregates if a.flag and a.filter is not None}
    projection: list[exp.Expr] = [exp.alias_(exp.column(k, quoted=True), k, quoted=True) for k in plan.entity]
    projection.append(exp.alias_(exp.column(plan.timestamp, quoted=True), EVENT_TS, quoted=True))
    projection += [exp.alias_(_unqualified(inputs[name]), name, quoted=True) for name in plan.inputs]
    projection += [
        exp.alias_(exp.func("coalesce", exp.paren(_unqualified(flags[name])), exp.false()), name, quoted=True)
        for name in plan.flags
    ]
    return f"SELECT {', '.join(e.sql(dialect=DIALECT) for e in projection)} FROM {rows}"


def pushed_relation_renames(plan: WindowPlan) -> tuple[tuple[str, str], ...] | None:
    """(push column, relation column) pairs when the relation's rows of pushed rows are the push
    columns renamed (every input a plain column, no filter), else None: ``pushed_relation_sql``
    without running SQL."""
    if plan.flags:
        return None
    inputs = {a.input: a.argument for a in plan.aggregates if a.input and a.argument is not None}
    out = [*((k, k) for k in plan.entity), (plan.timestamp, EVENT_TS)]
    for name in plan.inputs:
        if name not in inputs:
            return None
        tree = _unqualified(inputs[name])
        if not isinstance(tree, exp.Column) or isinstance(tree.this, exp.Star):
            return None
        out.append((tree.name, name))
    return tuple(out)
