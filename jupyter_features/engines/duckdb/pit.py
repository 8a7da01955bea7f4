"""The DuckDB engine's point-in-time join, as SQL.

For each label row (keys, t) and each view: the feature row with the same keys and
the greatest event time <= t; among equal event times the greatest created
timestamp (then the greatest feature values, so the answer is deterministic); null
when that event is older than t - ttl. Label rows keep their count and order.

The join runs in up to three statements so that the common case costs one plain
ASOF JOIN: ``pit_sql`` joins the views' rows as they are, keeping the matched event
time per view; ``ties_sql`` counts, per view, the extra rows that share keys and
event time with a matched row (only those could make the ASOF JOIN's pick
ambiguous); and only for views that have such ties ``tie_fix_sql`` recomputes the
features from the tie-broken rows at the matched (keys, event time) pairs.
"""

from __future__ import annotations

from ...featureview import ViewJoin
from ...sqltext import CREATED_TS, EVENT_TS, LABEL_TS, LABELS, RESULT, ROW, quote
from ...times import duration_micros

__all__ = [
    "dedup_sql", "pit_sql", "ties_sql", "tie_fix_sql", "matched_column", "key_column", "label_keys",
    "latest_sql",
]  # fmt: skip


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


def _view_columns(join: ViewJoin, created: bool = False) -> list[str]:
    """keys..., EVENT_TS, [CREATED_TS,] features..."""
    cols = [*map(_src, join.entity), f"{_event_ts(join)} AS {EVENT_TS}"]
    if created and join.created_timestamp:
        cols.append(f"CAST({_src(join.created_timestamp)} AS TIMESTAMP) AS {CREATED_TS}")
    return cols + list(map(_src, join.features))


def dedup_sql(join: ViewJoin, *, where: str = "", among: str = "", created: bool = False) -> str:
    """The view's rows, one per (keys, event time), with the event time cast to TIMESTAMP
    (and the created timestamp as ``CREATED_TS`` with ``created``)."""
    order = []
    if join.created_timestamp:
        order.append(f"{_src(join.created_timestamp)} DESC NULLS LAST")
    order += [f"{_src(f)} DESC NULLS LAST" for f in join.features]
    partition = ", ".join([*map(_src, join.entity), _event_ts(join)])
    return (
        _source_rows(join, _view_columns(join, created), where=where, among=among)
        + f" QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {', '.join(order) or '1'}) = 1"
    )


def _plain_sql(join: ViewJoin) -> str:
    """The view's rows as they are (no tie-break), with the event time cast to TIMESTAMP."""
    return _source_rows(join, _view_columns(join))


def _feature(join: ViewJoin, alias: str, feat: str, event_ts: str) -> str:
    value = f"{alias}.{quote(feat)}"
    if join.ttl is None:
        return value
    return f"CASE WHEN {event_ts} >= l.{LABEL_TS} - to_microseconds({duration_micros(join.ttl)}) THEN {value} END"


def pit_sql(joins: list[ViewJoin]) -> str:
    """For every row of LABELS(ROW, LABEL_TS, keys...), in no particular order: its ROW, the
    feature columns as one plain ASOF JOIN per view picks them, and each view's matched event
    time (``matched_column``).

    Exact unless a view has several rows at a matched (keys, event time): see ``ties_sql``.
    """
    ctes = [f"__jf_v{i} AS ({_plain_sql(j)})" for i, j in enumerate(joins)]
    cols = [f"l.{ROW}", *(f"l.{quote(k)} AS {key_column(k)}" for k in label_keys(joins))]
    joins_sql = []
    for i, j in enumerate(joins):
        alias = f"v{i}"
        on = " AND ".join(f"l.{quote(k)} = {alias}.{quote(k)}" for k in j.entity)
        joins_sql.append(f"ASOF LEFT JOIN __jf_v{i} {alias} ON {on} AND l.{LABEL_TS} >= {alias}.{EVENT_TS}")
        for feat, out in zip(j.features, j.output, strict=True):
            cols.append(f"{_feature(j, alias, feat, f'{alias}.{EVENT_TS}')} AS {quote(out)}")
        cols.append(f"{alias}.{EVENT_TS} AS {matched_column(i)}")
    return f"WITH {', '.join(ctes)}\nSELECT {', '.join(cols)}\nFROM {LABELS} l\n" + "\n".join(joins_sql)


def _matched_pairs(join: ViewJoin, i: int) -> str:
    """Distinct (keys, EVENT_TS) view ``i`` matched, from RESULT (a table of pit_sql's rows)."""
    keys = ", ".join(f"{key_column(k)} AS {quote(k)}" for k in join.entity)
    m = matched_column(i)
    return f"SELECT DISTINCT {keys}, {m} AS {EVENT_TS} FROM {RESULT} WHERE {m} IS NOT NULL"


def ties_sql(joins: list[ViewJoin]) -> str:
    """One row: per view, how many of its rows beyond one share a matched (keys, event time).

    Zero means the plain ASOF JOIN had a single candidate at every match, so ``pit_sql``'s
    features are exactly the tie-broken ones. Reads only the keys and event times.
    """
    ctes, counts = [], []
    for i, j in enumerate(joins):
        on = " AND ".join(f"v.{quote(k)} = p.{quote(k)}" for k in j.entity)
        rows = _source_rows(j, [*map(_src, j.entity), f"{_event_ts(j)} AS {EVENT_TS}"])
        ctes.append(f"__jf_p{i} AS MATERIALIZED ({_matched_pairs(j, i)})")
        counts.append(
            f"(SELECT count(*) FROM ({rows}) v JOIN __jf_p{i} p ON {on} AND v.{EVENT_TS} = p.{EVENT_TS})"
            f" - (SELECT count(*) FROM __jf_p{i}) AS __jf_ties{i}"
        )
    return f"WITH {', '.join(ctes)}\nSELECT {', '.join(counts)}"


def tie_fix_sql(joins: list[ViewJoin], tied: list[int]) -> str:
    """The feature columns of the views ``tied`` (indexes into ``joins``), in label order, from
    the tie-broken rows at the (keys, event time) each label row matched in RESULT."""
    ctes, cols, joins_sql = [], [], []
    for i in tied:
        j = joins[i]
        alias, m = f"w{i}", f"r.{matched_column(i)}"
        ctes.append(f"__jf_p{i} AS ({_matched_pairs(j, i)})")
        ctes.append(f"__jf_w{i} AS ({dedup_sql(j, among=f'__jf_p{i}')})")
        on = " AND ".join(f"l.{quote(k)} = {alias}.{quote(k)}" for k in j.entity)
        joins_sql.append(f"LEFT JOIN __jf_w{i} {alias} ON {on} AND {m} = {alias}.{EVENT_TS}")
        for feat, out in zip(j.features, j.output, strict=True):
            cols.append(f"{_feature(j, alias, feat, m)} AS {quote(out)}")
    return (
        f"WITH {', '.join(ctes)}\nSELECT {', '.join(cols)}\n"
        f"FROM {LABELS} l JOIN {RESULT} r ON l.{ROW} = r.{ROW}\n"
        + "\n".join(joins_sql)
        + f"\nORDER BY l.{ROW}"
    )


def latest_sql(join: ViewJoin, *, end_literal: str, since_literal: str | None = None) -> str:
    """The latest row per entity as of ``end`` (TTL applied at ``end``), for materialization; with
    its created timestamp (``CREATED_TS``) when the view has one, for online stores' tie-break."""
    where = f"CAST({quote(join.timestamp)} AS TIMESTAMP) <= {end_literal}"
    if since_literal is not None:
        where += f" AND CAST({quote(join.timestamp)} AS TIMESTAMP) > {since_literal}"
    keys = ", ".join(quote(k) for k in join.entity)
    inner = dedup_sql(join, where=where, created=True)
    ttl_filter = ""
    if join.ttl is not None:
        ttl_filter = f"WHERE {EVENT_TS} >= {end_literal} - to_microseconds({duration_micros(join.ttl)}) "
    feats = "".join(f", {quote(f)}" for f in join.features)
    if join.created_timestamp:
        feats = f", {CREATED_TS}{feats}"
    return (
        f"SELECT {keys}, {EVENT_TS}{feats} FROM ({inner}) {ttl_filter}"
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {EVENT_TS} DESC) = 1"
    )
