"""The DuckDB engine's point-in-time join, as SQL.

For each label row (keys, t) and each view: the feature row with the same keys and
the greatest event time <= t; among equal event times the greatest created
timestamp, then the greatest feature values (nulls losing), so the answer is
deterministic; null when that event is older than t - ttl. Label rows keep their
count and order.

The join is one plain ASOF JOIN per view over the view's rows as they are
(``pit_sql``), into a table that keeps each view's matched event time. ASOF compares
one 8-byte time, its fastest form: putting the tie-break into its key (a HUGEINT of
event and created time, or a STRUCT with the values) measured 1.4-2x slower on every
join, ties or not. Instead ``tie_fix_sql`` decides the ties in one pass over the rows
at the matched (keys, event time) pairs only: it partitions them by pair, keeps the
pairs with more than one row, and takes the tie-break winner (``tie_order``) for the
label rows that matched those; ``tie_fix_update_sql`` writes it into the join's table. The
materialization path (``latest_sql``) ranks with the same ``tie_order``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...featureview import ViewJoin
from ...sqltext import CREATED_TS, EVENT_TS, LABEL_TS, LABELS, RESULT, ROW, quote
from ...times import duration_micros

__all__ = [
    "pit_sql", "tie_fix_sql", "tie_fix_update_sql", "tie_order", "matched_column", "key_column",
    "label_keys", "latest_sql", "label_time_sql", "matched_pairs_sql", "TIES", "PAIRS",
]  # fmt: skip

#: The table of tie-broken features ``tie_fix_sql`` computes for one view.
TIES = "__jf_ties"
#: The table of (keys, event time) pairs one view matched (``matched_pairs_sql``).
PAIRS = "__jf_pairs"


def matched_column(i: int) -> str:
    """The column of ``pit_sql``'s result holding the event time view ``i`` matched (null if none)."""
    return f"__jf_m{i}"


def key_column(key: str) -> str:
    """The column of ``pit_sql``'s result holding the label row's entity key ``key``."""
    return quote(f"__jf_k_{key}")


def label_keys(joins: list[ViewJoin]) -> list[str]:
    """The entity key columns the label frame needs for ``joins``, in first-seen order."""
    keys: list[str] = []
    for j in joins:
        keys += [k for k in j.entity if k not in keys]
    return keys


def label_time_sql(column: str, duckdb_type: str) -> str | None:
    """SQL turning the label column ``column`` of ``duckdb_type`` into a naive UTC TIMESTAMP
    (the connection's time zone is UTC); None when the type is not a time."""
    t = duckdb_type.upper()
    col = quote(column)
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({col} AS TIMESTAMP)"  # zoned: to UTC; NS/MS/S and DATE: widened
    if t == "VARCHAR":
        return f"CAST(CAST({col} AS TIMESTAMPTZ) AS TIMESTAMP)"  # ISO text, naive = UTC
    return None


def _src(column: str) -> str:
    return f"__jf_src.{quote(column)}"


def _event_ts(join: ViewJoin) -> str:
    return f"CAST({_src(join.timestamp)} AS TIMESTAMP)"


def _source_rows(join: ViewJoin, columns: list[str], *, where: str = "", among: str = "") -> str:
    """SELECT ``columns`` from the view's rows that have an event time; with ``among`` (a table
    of keys..., EVENT_TS), only the rows whose keys and event time are in it."""
    semi = ""
    if among:
        on = " AND ".join(f"{_src(k)} = __jf_p.{quote(k)}" for k in join.entity)
        semi = f"SEMI JOIN {among} __jf_p ON {on} AND {_event_ts(join)} = __jf_p.{EVENT_TS} "
    extra = f" AND ({where})" if where else ""
    return (
        f"SELECT {', '.join(columns)} FROM ({join.sql}\n) AS __jf_src {semi}"
        f"WHERE {_src(join.timestamp)} IS NOT NULL{extra}"
    )


def tie_order(join: ViewJoin) -> str:
    """ORDER BY terms that put first, among rows with equal keys and event time, the one that
    wins the tie: the greatest created timestamp, then the greatest feature values in order,
    a null losing to any value."""
    columns = ([join.created_timestamp] if join.created_timestamp else []) + list(join.features)
    return ", ".join(f"{_src(c)} DESC NULLS LAST" for c in columns) or "1"


def _view_columns(join: ViewJoin, created: bool = False) -> list[str]:
    """keys..., EVENT_TS, [CREATED_TS,] features..."""
    cols = [*map(_src, join.entity), f"{_event_ts(join)} AS {EVENT_TS}"]
    if created and join.created_timestamp:
        cols.append(f"CAST({_src(join.created_timestamp)} AS TIMESTAMP) AS {CREATED_TS}")
    return cols + list(map(_src, join.features))


def _feature(join: ViewJoin, value: str, event_ts: str, label_ts: str) -> str:
    if join.ttl is None:
        return value
    return (
        f"CASE WHEN {event_ts} >= {label_ts} - to_microseconds({duration_micros(join.ttl)}) THEN {value} END"
    )


def pit_sql(joins: list[ViewJoin], *, labels: str = LABELS, carry: Sequence[str] = ()) -> str:
    """For every row of ``labels`` (ROW, LABEL_TS, keys...; a table or a parenthesized query),
    in no particular order: its ROW and LABEL_TS, the ``carry`` columns, its keys (``key_column``), the feature
    columns as one plain ASOF JOIN per view picks them, and each view's matched event time
    (``matched_column``).

    Exact unless a view has several rows at a matched (keys, event time): see ``tie_fix_sql``.
    """
    ctes = [f"__jf_v{i} AS ({_source_rows(j, _view_columns(j))})" for i, j in enumerate(joins)]
    cols = [f"l.{ROW}", f"l.{LABEL_TS}", *(f"l.{quote(c)}" for c in carry)]
    cols += [f"l.{quote(k)} AS {key_column(k)}" for k in label_keys(joins)]
    joins_sql = []
    for i, j in enumerate(joins):
        alias = f"v{i}"
        on = " AND ".join(f"l.{quote(k)} = {alias}.{quote(k)}" for k in j.entity)
        joins_sql.append(f"ASOF LEFT JOIN __jf_v{i} {alias} ON {on} AND l.{LABEL_TS} >= {alias}.{EVENT_TS}")
        for feat, out in zip(j.features, j.output, strict=True):
            value = _feature(j, f"{alias}.{quote(feat)}", f"{alias}.{EVENT_TS}", f"l.{LABEL_TS}")
            cols.append(f"{value} AS {quote(out)}")
        cols.append(f"{alias}.{EVENT_TS} AS {matched_column(i)}")
    return f"WITH {', '.join(ctes)}\nSELECT {', '.join(cols)}\nFROM {labels} l\n" + "\n".join(joins_sql)


def matched_pairs_sql(join: ViewJoin, i: int) -> str:
    """The distinct (keys..., EVENT_TS) view ``i`` matched in RESULT (a table of ``pit_sql``'s rows)."""
    m = matched_column(i)
    keys = ", ".join(f"{key_column(k)} AS {quote(k)}" for k in join.entity)
    return f"SELECT DISTINCT {keys}, {m} AS {EVENT_TS} FROM {RESULT} WHERE {m} IS NOT NULL"


def tie_fix_sql(joins: list[ViewJoin], i: int) -> str:
    """ROW and view ``i``'s feature columns, tie-broken, for the rows of RESULT whose match
    shares its keys and event time with other rows of the view.

    One pass over the view's rows at the matched pairs (the table PAIRS, ``matched_pairs_sql``):
    partitioned by pair, the pairs with more than one row keep their ``tie_order`` winner.
    Only for views with features.
    """
    j = joins[i]
    m = matched_column(i)
    pair = ", ".join([*map(_src, j.entity), _event_ts(j)])
    columns = [*map(_src, j.entity), f"{_event_ts(j)} AS {EVENT_TS}"]
    columns += [f"{_src(f)} AS __jf_f{n}" for n, f in enumerate(j.features)]
    tied = (
        _source_rows(j, columns, among=PAIRS)
        + f" QUALIFY count(*) OVER (PARTITION BY {pair}) > 1"
        + f" AND row_number() OVER (PARTITION BY {pair} ORDER BY {tie_order(j)}) = 1"
    )
    on = " AND ".join(f"r.{key_column(k)} = t.{quote(k)}" for k in j.entity)
    cols = [f"r.{ROW}"]
    for n, out in enumerate(j.output):
        cols.append(f"{_feature(j, f't.__jf_f{n}', f'r.{m}', f'r.{LABEL_TS}')} AS {quote(out)}")
    return f"SELECT {', '.join(cols)} FROM {RESULT} r JOIN ({tied}) t ON {on} AND r.{m} = t.{EVENT_TS}"


def tie_fix_update_sql(join: ViewJoin) -> str:
    """Write the TIES table (``tie_fix_sql``'s rows) into RESULT."""
    sets = ", ".join(f"{quote(out)} = {TIES}.{quote(out)}" for out in join.output)
    return f"UPDATE {RESULT} SET {sets} FROM {TIES} WHERE {RESULT}.{ROW} = {TIES}.{ROW}"


def latest_sql(join: ViewJoin, *, end_literal: str, since_literal: str | None = None) -> str:
    """The latest row per entity as of ``end`` (TTL applied at ``end``), for materialization:
    keys..., EVENT_TS, [CREATED_TS (for online stores' tie-break),] features...; ties at the
    latest event time broken by ``tie_order``."""
    where = f"{_event_ts(join)} <= {end_literal}"
    if since_literal is not None:
        where += f" AND {_event_ts(join)} > {since_literal}"
    keys = ", ".join(map(_src, join.entity))
    latest = (
        _source_rows(join, _view_columns(join, created=True), where=where)
        + f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {_event_ts(join)} DESC, {tie_order(join)}) = 1"
    )
    if join.ttl is None:
        return latest
    return f"SELECT * FROM ({latest}) WHERE {EVENT_TS} >= {end_literal} - to_microseconds({duration_micros(join.ttl)})"
