"""Feature SQL, written once in DuckDB SQL, carried to Spark, Snowflake and BigQuery by sqlglot.

sqlglot translates the syntax; some constructs it cannot translate, and some it
translates into SQL that runs but means something else (``log(x)`` is log10 in DuckDB
and ln in Spark). Only the constructs listed in ``CONSTRUCTS`` pass, each with the
dialects where it is known to keep its meaning; anything else is refused with an
error naming it. The README's "Spark" table is rendered from the same list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError

from .analysis import plain_message
from .errors import TranspileError

__all__ = ["DIALECTS", "CONSTRUCTS", "Construct", "transpile", "constructs_table"]

#: Dialects feature SQL can be transpiled to (sqlglot names).
DIALECTS = ("spark", "snowflake", "bigquery")
SOURCE_DIALECT = "duckdb"


@dataclass(frozen=True)
class Construct:
    """A DuckDB construct and where it keeps its meaning."""

    label: str
    nodes: tuple[type[exp.Expression], ...]
    refused: Mapping[str, str] = field(default_factory=dict)  # dialect -> why not there
    note: str = ""


_ALL: dict[str, str] = {}

CONSTRUCTS: tuple[Construct, ...] = (
    Construct(
        "SELECT, FROM, WHERE, GROUP BY, HAVING, ORDER BY, LIMIT, DISTINCT, CTEs, subqueries, aliases",
        (
            exp.Select,
            exp.From,
            exp.Where,
            exp.Group,
            exp.Having,
            exp.Order,
            exp.Ordered,
            exp.Limit,
            exp.Distinct,
            exp.With,
            exp.CTE,
            exp.Subquery,
            exp.Alias,
            exp.TableAlias,
            exp.Table,
            exp.Column,
            exp.Identifier,
            exp.Star,
            exp.Literal,
            exp.Null,
            exp.Boolean,
            exp.Paren,
            exp.Var,
            exp.Tuple,
            exp.DataTypeParam,
        ),
        note="DuckDB sorts NULLs last; the transpiled ORDER BY says so explicitly",
    ),  # fmt: skip
    Construct(
        "JOIN (inner, left, right, full, cross; ON or USING)",
        (exp.Join,),
        note="ASOF, SEMI, ANTI and POSITIONAL joins are refused",
    ),
    Construct("UNION [ALL], INTERSECT, EXCEPT", (exp.Union, exp.Intersect, exp.Except)),
    Construct(
        "arithmetic + - * / %, comparisons, AND/OR/NOT, IS [NOT] NULL, IN, BETWEEN, LIKE, ILIKE, \\|\\|",
        (
            exp.Add,
            exp.Sub,
            exp.Mul,
            exp.Div,
            exp.Mod,
            exp.Neg,
            exp.EQ,
            exp.NEQ,
            exp.GT,
            exp.GTE,
            exp.LT,
            exp.LTE,
            exp.And,
            exp.Or,
            exp.Not,
            exp.Is,
            exp.In,
            exp.Between,
            exp.Like,
            exp.ILike,
            exp.DPipe,
            exp.NullSafeEQ,
            exp.NullSafeNEQ,
        ),
        note="timestamp - timestamp is refused (a number of days in DuckDB, an interval elsewhere); "
        "a division by zero gives ±inf/NaN in DuckDB, an error in Spark's ANSI mode and in BigQuery",
    ),  # fmt: skip
    Construct(
        "QUALIFY",
        (exp.Qualify,),
        note="Spark has no QUALIFY: sqlglot rewrites it as a filter over a subquery",
    ),
    Construct("CASE, IF, COALESCE, NULLIF", (exp.Case, exp.If, exp.Coalesce, exp.Nullif)),
    Construct(
        "GREATEST, LEAST",
        (exp.Greatest, exp.Least),
        refused={
            "bigquery": "BigQuery's GREATEST/LEAST return NULL when any argument is NULL; DuckDB skips NULLs"
        },
    ),
    Construct(
        "count, count(DISTINCT), count_if, sum, avg, min, max, stddev, variance, FILTER (WHERE ...)",
        (
            exp.Count,
            exp.CountIf,
            exp.Sum,
            exp.Avg,
            exp.Min,
            exp.Max,
            exp.Stddev,
            exp.StddevSamp,
            exp.StddevPop,
            exp.Variance,
            exp.VariancePop,
            exp.Filter,
        ),
    ),  # fmt: skip
    Construct(
        "median",
        (exp.Median,),
        refused={"bigquery": "BigQuery has no MEDIAN aggregate; use PERCENTILE_CONT in the target SQL"},
    ),
    Construct(
        "window functions: row_number, rank, dense_rank, lag, lead, first_value, last_value, aggregates OVER",
        (
            exp.Window,
            exp.WindowSpec,
            exp.RowNumber,
            exp.Rank,
            exp.DenseRank,
            exp.Lag,
            exp.Lead,
            exp.FirstValue,
            exp.LastValue,
        ),
    ),  # fmt: skip
    Construct(
        "ROWS frames; RANGE frames with numeric offsets",
        (),
    ),
    Construct(
        "RANGE frames with INTERVAL offsets (e.g. the last 7 days)",
        (),
        refused={
            "bigquery": "BigQuery RANGE frames need a numeric ORDER BY (order by UNIX_MICROS(ts) instead)"
        },
    ),
    Construct(
        "timestamp ± INTERVAL, date_trunc, extract / year, month, day, hour, minute",
        (
            exp.Interval,
            exp.TimestampTrunc,
            exp.DateTrunc,
            exp.Extract,
            exp.Year,
            exp.Month,
            exp.Day,
            exp.DayOfMonth,
            exp.Hour,
            exp.Minute,
        ),
        note="day-of-week and epoch functions are refused: their numbering or units differ between engines",
    ),  # fmt: skip
    Construct(
        "abs, round, floor, ceil, sqrt, exp, ln, power, log(base, x)",
        (exp.Abs, exp.Round, exp.Floor, exp.Ceil, exp.Sqrt, exp.Exp, exp.Ln, exp.Pow, exp.Log),
        note="one-argument log(x) is refused: it is log10 in DuckDB and ln in Spark",
    ),
    Construct(
        "lower, upper, length, trim, substring", (exp.Lower, exp.Upper, exp.Length, exp.Trim, exp.Substring)
    ),
    Construct(
        "CAST to integer (from an integer, boolean, round/floor/ceil), float, decimal, varchar, bool, date, timestamp",
        (exp.Cast, exp.DataType),
        note="CAST(2.7 AS INT) rounds in DuckDB and truncates in Spark: cast round(x), floor(x) or ceil(x)",
    ),
    Construct(
        "list<float> values: CAST(... AS DOUBLE[]), [1.0, 2.0]",
        (exp.Array,),
        refused={"snowflake": "Snowflake arrays are untyped VARIANT arrays; a list<float> does not survive"},
    ),
)

_ALLOWED: dict[type[exp.Expression], Construct] = {node: c for c in CONSTRUCTS for node in c.nodes}
_INTEGER_TYPES = exp.DataType.INTEGER_TYPES
_ROUNDING = (exp.Round, exp.Floor, exp.Ceil)
_TIME_UNITS = {"YEAR", "YEARS", "MONTH", "MONTHS", "DAY", "DAYS", "HOUR", "HOURS", "MINUTE", "MINUTES"}
_TRUNC_UNITS = _TIME_UNITS | {"WEEK", "WEEKS", "QUARTER", "QUARTERS", "SECOND", "SECONDS"}
_JOIN_KINDS = {"", "INNER", "OUTER", "CROSS"}
_REFERENCE = "see the README section 'Spark' for what transpiles"


def _refuse(owner: str, what: str, dialect: str, why: str) -> TranspileError:
    return TranspileError(
        f"{owner}: {what} cannot be transpiled faithfully to {dialect}: {why}; {_REFERENCE}"
    )


def _function_label(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return f"function {str(node.name).lower()}()"
    if isinstance(node, exp.Func):
        return f"function {node.sql_name().lower()}()"
    return node.key.upper()


def _check_node(node: Any, dialect: str, owner: str) -> None:
    """Refuse ``node`` if it is not in CONSTRUCTS for ``dialect`` or misses a special rule."""
    construct = _ALLOWED.get(type(node))
    if construct is None:
        why = (
            "it is specific to DuckDB or means different things in different engines"
            if isinstance(node, (exp.Func, exp.Binary, exp.Unary))
            else "it is not in the list of constructs known to keep their meaning"
        )
        if isinstance(node, exp.Lambda):
            why = "lambda functions over lists differ between engines"
        raise _refuse(owner, _function_label(node), dialect, why)
    if dialect in construct.refused:
        raise _refuse(owner, construct.label, dialect, construct.refused[dialect])
    if isinstance(node, exp.Join):
        kind = " ".join(str(node.args.get(a) or "") for a in ("method", "kind")).strip().upper()
        if kind.replace("OUTER", "").strip() not in _JOIN_KINDS or node.args.get("match_condition"):
            raise _refuse(owner, f"{kind} JOIN", dialect, "it has no equivalent with the same rows there")
    elif isinstance(node, exp.WindowSpec):
        offsets = [node.args.get("start"), node.args.get("end")]
        if str(node.args.get("kind") or "").upper() == "RANGE" and any(
            isinstance(o, exp.Interval) for o in offsets
        ):
            if dialect in _ALLOWED_RANGE_INTERVAL.refused:
                why = _ALLOWED_RANGE_INTERVAL.refused[dialect]
                raise _refuse(owner, "a RANGE window frame with an INTERVAL offset", dialect, why)
    elif isinstance(node, exp.Log) and node.args.get("expression") is None:
        raise _refuse(
            owner,
            "one-argument log(x)",
            dialect,
            "it is log10 in DuckDB and ln elsewhere; write log10(x) as log(10, x)",
        )
    elif isinstance(node, exp.Extract):
        unit = node.this.name.upper()
        if unit not in _TIME_UNITS:
            raise _refuse(
                owner, f"EXTRACT({unit} FROM ...)", dialect, "its numbering or units differ between engines"
            )
    elif isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
        unit = node.args["unit"].name.upper() if node.args.get("unit") else ""
        if unit not in _TRUNC_UNITS:
            raise _refuse(
                owner, f"date_trunc('{unit.lower()}', ...)", dialect, "that unit is not known to match"
            )
    elif isinstance(node, exp.Star) and any(
        node.args.get(a) for a in ("except_", "replace", "rename", "ilike")
    ):
        if dialect == "spark":
            raise _refuse(
                owner,
                "SELECT * EXCLUDE/REPLACE",
                dialect,
                "Spark SQL has no column exclusion on *; list the columns",
            )
    elif isinstance(node, exp.DataType) and node.this in (
        exp.DataType.Type.STRUCT,
        exp.DataType.Type.MAP,
        exp.DataType.Type.ENUM,
        exp.DataType.Type.UNION,
    ):
        raise _refuse(
            owner,
            f"the type {node.sql(SOURCE_DIALECT)}",
            dialect,
            "only the feature types int64, float64, string, bool, timestamp and list<float> are carried",
        )


_ALLOWED_RANGE_INTERVAL = next(c for c in CONSTRUCTS if c.label.startswith("RANGE frames with INTERVAL"))


def _check_cast(node: exp.Cast, dialect: str, owner: str) -> None:
    to = node.to
    if to.this not in _INTEGER_TYPES:
        return
    operand = node.this
    while isinstance(operand, exp.Paren):
        operand = operand.this
    if isinstance(operand, _ROUNDING):
        return
    if isinstance(operand, exp.Literal) and not operand.is_string and "." not in operand.name:
        return
    source_type = operand.type
    if source_type is not None and (
        source_type.this in _INTEGER_TYPES or source_type.this == exp.DataType.Type.BOOLEAN
    ):
        return
    text = node.sql(SOURCE_DIALECT)
    known = (
        ""
        if source_type is None or source_type.this == exp.DataType.Type.UNKNOWN
        else f" (its operand is {source_type.sql(SOURCE_DIALECT)})"
    )
    raise _refuse(
        owner, f"{text}{known}", dialect,
        "DuckDB rounds a fractional value cast to an integer, other engines truncate it "
        "(and text casts differ); cast round(x), floor(x) or ceil(x) instead",
    )  # fmt: skip


_TEMPORAL = exp.DataType.TEMPORAL_TYPES


def _check_difference(node: Any, dialect: str, owner: str) -> None:
    left, right = node.this.type, node.expression.type
    if left is not None and right is not None and left.this in _TEMPORAL and right.this in _TEMPORAL:
        raise _refuse(
            owner, node.sql(SOURCE_DIALECT), dialect,
            "subtracting dates or timestamps gives days or an interval depending on the engine; "
            "compare them, or compare one with the other plus an INTERVAL",
        )  # fmt: skip


def _annotate(tree: Any, schema: Mapping[str, Mapping[str, str]] | None) -> Any:
    """Type the tree with the sources' DuckDB types where sqlglot can read them."""
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify

    if not schema:
        return tree
    readable: dict[str, object] = {}
    for table, columns in schema.items():
        cols: dict[str, str] = {}
        for name, dtype in columns.items():
            try:
                exp.DataType.build(dtype, dialect=SOURCE_DIALECT)
                cols[name] = dtype
            except (ParseError, ValueError, SqlglotError):
                cols[name] = "VARCHAR"
        readable[table] = cols
    try:
        qualified = qualify(tree.copy(), schema=readable, dialect=SOURCE_DIALECT, validate_qualify_columns=False,
                            quote_identifiers=False, identify=False)  # fmt: skip
        return annotate_types(qualified, schema=readable, dialect=SOURCE_DIALECT)
    except Exception:  # noqa: BLE001 - typing is a help for the cast check, never a gate
        return tree


def transpile(
    sql: str,
    dialect: str,
    *,
    schema: Mapping[str, Mapping[str, str]] | None = None,
    owner: str = "feature SQL",
    pretty: bool = False,
) -> str:
    """DuckDB feature SQL as ``dialect`` SQL, or a TranspileError naming what cannot be carried.

    ``schema`` maps each source to its columns' DuckDB types; with it, casts can be
    checked against their operand's type.
    """
    if dialect not in DIALECTS:
        raise TranspileError(
            f"{owner}: unknown SQL dialect {dialect!r}; choose one of: {', '.join(DIALECTS)}"
        )
    try:
        tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    except ParseError as exc:
        raise TranspileError(f"{owner}: the SQL does not parse as DuckDB SQL: {plain_message(exc)}") from exc
    for node in tree.walk():
        if not isinstance(node, exp.Cast):
            _check_node(node, dialect, owner)
    for node in _annotate(tree, schema).find_all(exp.Cast, exp.Sub):
        if isinstance(node, exp.Cast):
            _check_cast(node, dialect, owner)
        else:
            _check_difference(node, dialect, owner)
    try:
        return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE, pretty=pretty)
    except SqlglotError as exc:
        raise _refuse(owner, "part of the SQL", dialect, str(exc).strip()) from exc


def constructs_table() -> str:
    """The README's table of supported constructs, as Markdown."""
    lines = [
        "| DuckDB construct | " + " | ".join(DIALECTS) + " | note |",
        "|---|" + "---|" * len(DIALECTS) + "---|",
    ]
    for c in CONSTRUCTS:
        marks = ["no" if d in c.refused else "yes" for d in DIALECTS]
        notes = "; ".join(
            [c.note] + [f"{d}: {why}" for d, why in c.refused.items()]
            if c.note
            else [f"{d}: {why}" for d, why in c.refused.items()]
        )
        lines.append(f"| {c.label} | " + " | ".join(marks) + f" | {notes} |")
    return "\n".join(lines)
