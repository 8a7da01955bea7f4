"""Window aggregates at each label's own time, on DuckDB.

For a label (keys, t) and a window w a feature aggregates the rows with those keys and event
time in (t - w, t]. ``duckdb_window_rows`` sorts the view's rows with the labels' probes so that
every window is a range of rows (and a run of segments); the array kernels (``window_arrays``)
then answer every range at once: prefix sums for counts, sums, averages and variances, segment
extremes and a block/sparse-table structure for min and max. The cost is one sort of rows and
probes, whatever the windows hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from ...errors import EngineError, LabelFrameError, UnknownFeatureError, did_you_mean
from ...sqltext import EVENT_TS, LABELS, quote
from ...windows import Aggregate, TimeWindow, WindowPlan, value_class
from . import window_arrays as wa
from .window_rows import Carried, SortedRows, carried_columns, distinct_counts, sorted_rows

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "window_features", "latest_windows_sql", "relation_types", "windows_at_last_event_sql", "window_events_sql",
]  # fmt: skip


def relation_types(con: duckdb.DuckDBPyConnection, plan: WindowPlan) -> dict[str, str]:
    """The DuckDB types of the plan's relation columns (binds the SQL; reads no rows)."""
    try:
        rel = con.sql(f"SELECT * FROM ({plan.relation_sql}) LIMIT 0")
    except duckdb.Error as exc:
        raise EngineError(f"{plan.owner}: DuckDB cannot run the view's SQL: {exc}") from exc
    return {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}


def window_features(
    con: duckdb.DuckDBPyConnection,
    plan: WindowPlan,
    *,
    features: Sequence[str] | None = None,
    output: Sequence[str] | None = None,
    labels: str = LABELS,
) -> pd.DataFrame:
    """The plan's features (all, or ``features``, named ``output``) for every row of ``labels``.

    ``labels`` is a table or view on ``con`` with ROW (0..n-1), LABEL_TS and the entity keys,
    as the point-in-time join registers it; the sources the plan reads are on ``con`` too.
    Returns one column per feature and one row per label row, in ROW order.
    """
    import pandas as pd

    selected = _select(plan, features)
    names = [n for n, _, _ in selected] if output is None else list(output)
    if len(names) != len(selected):
        raise EngineError(f"{plan.owner}: {len(selected)} features but {len(names)} output names")
    types = relation_types(con, plan)
    out_types = plan.output_types(types)
    label_types = _label_types(con, labels, plan, types)
    count = con.execute(f"SELECT count(*) FROM {labels}").fetchone()
    n = int(count[0]) if count else 0
    windows = list(dict.fromkeys(w for _, _, w in selected))
    plain = [(name, a, w) for name, a, w in selected if not a.distinct]
    columns: dict[str, Any] = {}
    carried = carried_columns([a for _, a, _ in plain], types)
    try:
        if plain:
            events = sorted_rows(con, plan, carried, windows, n, labels, label_types, selected, types)
            computed = _compute(plain, events, carried, out_types, con)
            back = np.empty(n, dtype=np.int64)  # label row → its place in the ranges' order
            back[events.order] = np.arange(n)
            columns.update({name: column[back] for name, column in computed.items()})
        for (inp, flag), group in _distinct_groups(selected).items():
            spans = [w for _, _, w in group]
            counts = distinct_counts(con, plan, inp, flag, spans, n, labels, label_types, types)
            for name, _, w in group:
                columns[name] = counts[w.text]
    except duckdb.Error as exc:
        raise EngineError(f"{plan.owner}: computing the windows failed: {exc}") from exc
    finally:
        for c in carried.values():
            if c.dictionary:
                con.execute(f"DROP TABLE IF EXISTS {c.dictionary}")
    frame = {new: columns[old] for new, (old, _, _) in zip(names, selected, strict=True)}
    return pd.DataFrame(frame, copy=False)  # the columns are new: no need to copy them into blocks


def _select(plan: WindowPlan, features: Sequence[str] | None) -> list[tuple[str, Aggregate, TimeWindow]]:
    if features is None:
        return plan.features
    by_name = {name: (name, a, w) for name, a, w in plan.features}
    out = []
    for f in features:
        if f not in by_name:
            raise UnknownFeatureError(
                f"{plan.owner} has no feature '{f}'{did_you_mean(f, by_name)}; it has: {', '.join(by_name)}"
            )
        out.append(by_name[f])
    return out


def _numeric(t: str) -> bool:
    return value_class(t) in ("int", "float")


def _label_types(
    con: duckdb.DuckDBPyConnection, labels: str, plan: WindowPlan, view_types: Mapping[str, str]
) -> dict[str, str]:
    """The label table's column types, once its keys are known to meet the view's."""
    rel = con.sql(f"SELECT * FROM {labels} LIMIT 0")
    label_types = {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}
    for k in plan.entity:
        lt, vt = label_types.get(k), view_types.get(k, "")
        if lt is None:
            raise LabelFrameError(f"label frame: it has no column '{k}', an entity key of {plan.owner}")
        if lt != "NULL" and lt != vt and _numeric(lt) != _numeric(vt):
            raise LabelFrameError(
                f"label frame: key '{k}' is {lt} but {plan.owner} has it as {vt}; cast one to the other's type"
            )
    return label_types


def _compute(
    plain: list[tuple[str, Aggregate, TimeWindow]],
    events: SortedRows,
    carried: dict[str, Carried],
    out_types: Mapping[str, str],
    con: duckdb.DuckDBPyConnection,
) -> dict[str, Any]:
    """Every plain (not DISTINCT) feature's column from the sorted rows' arrays."""
    import pandas as pd

    cache: dict[tuple[Any, ...], Any] = {}
    texts = list(dict.fromkeys(w.text for _, _, w in plain))
    ranges = [events.ranges[t] for t in texts]  # windows as ranges of rows
    runs = [events.runs[t] for t in texts]  # the same as runs of segments
    segments = events.segments
    assert segments is not None

    def every(a: Aggregate) -> bool:
        """Whether every row passes: no filter, and no null in the input."""
        return a.flag is None and (a.input is None or events.valid[carried[a.input].name] is None)

    def use(a: Aggregate) -> np.ndarray:
        key = ("use", a.input, a.flag)
        if key not in cache:
            valid = events.valid[carried[a.input].name] if a.input is not None else None
            flag = events.flags[a.flag] if a.flag is not None else None
            if valid is None or flag is None:
                mask = valid if flag is None else flag
                cache[key] = np.ones(events.size, dtype=bool) if mask is None else mask
            else:
                cache[key] = valid & flag
        result: np.ndarray = cache[key]
        return result

    def counts(a: Aggregate) -> dict[str, np.ndarray]:
        key = ("count", a.input, a.flag)
        if key not in cache:
            if every(a):  # every row counts: the range's length
                cache[key] = {t: b - lo for t, (lo, b) in zip(texts, ranges, strict=True)}
            else:
                pre = wa.prefix(segments.reduce(np.add, use(a), 0, np.int64))
                cache[key] = {t: wa.range_sum(pre, *r) for t, r in zip(texts, runs, strict=True)}
        result: dict[str, np.ndarray] = cache[key]
        return result

    def per_window(kind: str, a: Aggregate, fn: Any) -> dict[str, np.ndarray]:
        key = (kind, a.input, a.flag)
        if key not in cache:
            cache[key] = dict(zip(texts, fn(), strict=True))
        result: dict[str, np.ndarray] = cache[key]
        return result

    out: dict[str, Any] = {}
    for name, a, w in plain:
        n = counts(a)[w.text]
        if a.function == "count":
            out[name] = n
            continue
        assert a.input is not None
        c = carried[a.input]
        values = events.values[c.name]
        empty = n == 0
        if a.function in ("sum", "avg") and c.kind in ("int", "bool"):
            sums = per_window(
                "isum", a, lambda a=a, values=values: _int_sums(a, values, use(a), runs, segments)
            )
            total = sums[w.text]
            if a.function == "sum":
                out[name] = pd.arrays.IntegerArray(np.where(empty, 0, total), empty)
            else:
                out[name] = np.where(empty, np.nan, total.astype(np.float64) / np.maximum(n, 1))
        elif a.function in ("sum", "avg"):
            fsum = per_window(
                "fsum", a, lambda a=a, values=values: wa.float_window_sums(values, use(a), runs, segments)
            )
            total = fsum[w.text]
            out[name] = np.where(empty, np.nan, total if a.function == "sum" else total / np.maximum(n, 1))
        elif a.function in ("var_samp", "stddev_samp"):
            assert events.key_starts is not None
            var = per_window(
                "var", a,
                lambda a=a, values=values: wa.window_variances(
                    values.astype(np.float64), use(a), events.key_starts, ranges  # type: ignore[arg-type]
                ),
            )[w.text]  # fmt: skip
            out[name] = var if a.function == "var_samp" else np.sqrt(var)
        else:
            extreme = per_window(
                a.function, a, lambda a=a, c=c: _extremes(a, c, events, None if every(a) else use(a), runs)
            )
            out[name] = _typed(extreme[w.text], empty, c, out_types[name], con)
    return out


def _int_sums(
    a: Aggregate,
    values: np.ndarray,
    use: np.ndarray,
    runs: list[tuple[np.ndarray, np.ndarray]],
    segments: wa.Segments,
) -> list[np.ndarray]:
    sums, fits = wa.int_window_sums(values, use, runs, segments)
    if not fits:
        raise EngineError(
            f"sum({a.argument}) AS {a.alias}: a window's sum may not fit in a 64-bit integer; "
            f"sum a DOUBLE instead: sum(CAST({a.argument} AS DOUBLE))"
        )
    return sums


def _extremes(
    a: Aggregate,
    c: Carried,
    events: SortedRows,
    use: np.ndarray | None,
    runs: list[tuple[np.ndarray, np.ndarray]],
) -> list[np.ndarray]:
    """min or max per window: each segment's extreme first, then over the windows' runs."""
    assert events.segments is not None
    values = events.values[c.name]
    if c.kind == "float":
        values = values.astype(np.float64, copy=False)
        identity: Any = -np.inf if a.function == "max" else np.inf
    else:
        values = values.astype(np.int64, copy=False)
        info = np.iinfo(np.int64)
        identity = info.min if a.function == "max" else info.max
    op = np.maximum if a.function == "max" else np.fmin if c.kind == "float" else np.minimum
    if use is not None:
        values = wa.used_values(values, use, identity)
    per_segment = events.segments.reduce(op, values, identity)
    return wa.range_extremes(per_segment, None, op, identity, runs)


def _typed(
    values: np.ndarray, empty: np.ndarray, c: Carried, duckdb_type: str, con: duckdb.DuckDBPyConnection
) -> Any:
    """A min/max column as the product types it: nullable ints and bools, NaN floats, naive times."""
    import pandas as pd

    if c.kind == "float":
        return np.where(empty, np.nan, values)
    if c.kind == "int":
        return pd.arrays.IntegerArray(np.where(empty, 0, values), empty)
    if c.kind == "bool":
        return pd.arrays.BooleanArray(np.where(empty, 0, values).astype(bool), empty)
    if c.kind == "time":
        stamps = np.where(empty, 0, values).astype("datetime64[us]")
        stamps[empty] = np.datetime64("NaT")
        return stamps
    assert c.dictionary is not None
    table = con.execute(f"SELECT v FROM {c.dictionary} ORDER BY code").fetchnumpy()["v"]
    picked = np.full(values.size, None, dtype=object)
    if len(table):
        picked[~empty] = np.asarray(table, dtype=object)[values[~empty]]
    return pd.array(picked, dtype="str") if duckdb_type.upper() == "VARCHAR" else picked


def _distinct_groups(
    selected: list[tuple[str, Aggregate, TimeWindow]],
) -> dict[tuple[str, str | None], list[tuple[str, Aggregate, TimeWindow]]]:
    groups: dict[tuple[str, str | None], list[tuple[str, Aggregate, TimeWindow]]] = {}
    for name, a, w in selected:
        if a.distinct:
            assert a.input is not None
            groups.setdefault((a.input, a.flag), []).append((name, a, w))
    return groups


# -- materialization ----------------------------------------------------------------------------


def latest_windows_sql(
    plan: WindowPlan, *, end_literal: str, input_types: Mapping[str, str], event_time: bool = False
) -> str:
    """Per entity with a row in the longest window before ``end``: every feature at t = end.

    Entities without such a row are left out (all their counts are 0, all else null).
    ``input_types`` are the relation's column types (``relation_types``). With ``event_time``,
    EVENT_TS (the entity's last event time at or before ``end``) follows the keys.
    """
    out_types = plan.output_types(input_types)
    longest = max(w.micros for w in plan.windows)
    t = "__jf_t"
    cols = [quote(k) for k in plan.entity]
    if event_time:
        cols.append(f"max({t}) AS {EVENT_TS}")
    for name, a, w in plan.features:
        cond = f"{t} > {end_literal} - to_microseconds({w.micros})"
        if a.flag:
            cond += f" AND {quote(a.flag)}"
        x = quote(a.input) if a.input else "*"
        if a.distinct:
            x = f"DISTINCT {x}"
        elif out_types[name] == "TIMESTAMP" and a.input:
            x = f"CAST({x} AS TIMESTAMP)"
        elif out_types[name] == "DOUBLE" and a.input and a.function in ("sum", "min", "max"):
            x = f"CAST({x} AS DOUBLE)"
        agg = f"{a.function}({x}) FILTER (WHERE {cond})"
        if a.function == "sum" and out_types[name] == "BIGINT":
            agg = f"CAST({agg} AS BIGINT)"
        cols.append(f"{agg} AS {quote(name)}")
    keys = ", ".join(quote(k) for k in plan.entity)
    not_null = "".join(f" AND {quote(k)} IS NOT NULL" for k in plan.entity)
    return (
        f"SELECT {', '.join(cols)} FROM (SELECT *, CAST({EVENT_TS} AS TIMESTAMP) AS {t} "
        f"FROM ({plan.relation_sql})) WHERE {t} <= {end_literal} AND {t} > {end_literal} - "
        f"to_microseconds({longest}){not_null} GROUP BY {keys}"
    )


def windows_at_last_event_sql(plan: WindowPlan, input_types: Mapping[str, str]) -> str:
    """Every feature per entity at the last event time of all the plan's rows (``latest_windows_sql``
    with that end): what a windowed view's statistics describe."""
    end = f"(SELECT max(CAST({EVENT_TS} AS TIMESTAMP)) FROM ({plan.relation_sql}))"
    return latest_windows_sql(plan, end_literal=end, input_types=input_types)


def window_events_sql(plan: WindowPlan, *, end_literal: str) -> str:
    """The events an online store keeps for reads at or after ``end``: the plan's relation rows
    (keys, EVENT_TS as a timestamp, inputs, flags) with event time in (end - longest window, end]
    and no null key. Entities without such a row are left out (a read gives counts 0, all else
    null)."""
    longest = max(w.micros for w in plan.windows)
    columns = [
        *(quote(k) for k in plan.entity),
        f"CAST({EVENT_TS} AS TIMESTAMP) AS {EVENT_TS}",
        *(quote(c) for c in (*plan.inputs, *plan.flags)),
    ]
    not_null = "".join(f" AND {quote(k)} IS NOT NULL" for k in plan.entity)
    t = f"CAST({EVENT_TS} AS TIMESTAMP)"
    return (
        f"SELECT {', '.join(columns)} FROM ({plan.relation_sql}) WHERE {t} <= {end_literal} "
        f"AND {t} > {end_literal} - to_microseconds({longest}){not_null}"
    )
