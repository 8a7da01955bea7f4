"""The view's rows and the label probes in one sort: every window becomes a range of rows.

One query sorts the view's rows together with "probes" — each label row at t and at t - w for
every window — by (key, time), rows before probes at equal times. A probe's place in that order,
less the probes before it, is the number of rows up to its time, so the window (t - w, t] of a
label is a range [a, b) of the sorted rows. Cutting the rows at every probe place makes each
range a run of whole segments, which the kernels reduce once (``window_arrays``).

The sort is what costs: keys are numbered (a compact integer key is its own number, others are
numbered through the labels' distinct keys), rows no window can hold are dropped, and when the
number and the time fit in 62 bits the order is one BIGINT, which DuckDB sorts much faster than
several columns.

count(DISTINCT x) takes a sort of its own: per (key, x), the times t at which x is in the window
form intervals [first, last + w) of merged occurrences; a marker +1 at each interval's start and
-1 at its end, summed up to t, is the number of distinct values in (t - w, t].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from ...sqltext import EVENT_TS, LABEL_TS, ROW, quote
from ...windows import Aggregate, TimeWindow, WindowPlan, value_class
from . import window_arrays as wa

__all__ = ["Carried", "SortedRows", "carried_columns", "sorted_rows", "distinct_counts"]

_REL = "__jf_rel"
_EV = "__jf_ev"
_TAG = "__jf_tag"
_ZEROS = {"int": "CAST(0 AS BIGINT)", "bool": "CAST(0 AS BIGINT)", "float": "CAST(0 AS DOUBLE)",
          "time": "CAST(0 AS BIGINT)", "other": "CAST(0 AS BIGINT)", "valid": "FALSE"}  # fmt: skip
_ORDER = "__jf_o"  # 2 * time in microseconds, + 1 on probes: rows before probes at equal times
_KEY = "__jf_k"  # the key's number in the sort
_KEYS = "__jf_keys"  # temp table: the labels' distinct keys and their numbers
_SEG = "__jf_seg"


@dataclass
class Carried:
    """A value column carried through the sort for one aggregate input."""

    input: str
    kind: str  # int, float, time, bool, other (a dictionary code), valid (only whether non-null)
    name: str
    dictionary: str | None = None  # temp table of (value, code) for 'other'


@dataclass
class SortedRows:
    """The sorted rows' arrays and every label's range per window."""

    values: dict[str, np.ndarray] = field(default_factory=dict)  # carried column → values
    valid: dict[str, np.ndarray | None] = field(default_factory=dict)  # carried column → non-null (None: all)
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    key_starts: np.ndarray | None = None  # the first row of each key's run (variances center on it)
    ranges: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # window text → (a, b)
    size: int = 0
    order: np.ndarray | None = None  # the label row of each range, in the order of the ranges
    segments: wa.Segments | None = None  # the rows cut at every range end
    runs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # ranges as runs of segments


def _probe_time(label_types: Mapping[str, str]) -> str:
    """The label time as a TIMESTAMP (microseconds, floored: an event at t + 0.5us is after t)."""
    t = f"l.{LABEL_TS}"
    if label_types.get(LABEL_TS, "").upper() == "TIMESTAMP_NS":
        ns = f"epoch_ns({t})"
        return f"make_timestamp(({ns} - (({ns} % 1000) + 1000) % 1000) // 1000)"
    return f"CAST({t} AS TIMESTAMP)"


def carried_columns(aggregates: list[Aggregate], types: Mapping[str, str]) -> dict[str, Carried]:
    """One carried column per input: its values when an aggregate reads them, else its validity."""
    kinds: dict[str, str] = {}
    for a in aggregates:
        if a.input is not None:
            kind = "valid" if a.function == "count" else value_class(types[a.input])
            if kinds.get(a.input, "valid") == "valid":
                kinds[a.input] = kind
    out = {}
    for i, (inp, kind) in enumerate(kinds.items()):
        out[inp] = Carried(inp, kind, f"__jf_c{i}", f"__jf_dict{i}" if kind == "other" else None)
    return out


def _carried_sql(c: Carried) -> str:
    x = f"{_REL}.{quote(c.input)}"
    if c.kind == "int" or c.kind == "bool":
        return f"CAST({x} AS BIGINT)"
    if c.kind == "float":
        return f"CAST({x} AS DOUBLE)"
    if c.kind == "time":
        return f"epoch_us(CAST({x} AS TIMESTAMP))"
    if c.kind == "other":
        return f"{c.dictionary}.code"
    return f"{x} IS NOT NULL"


def _events_cte(plan: WindowPlan, select: list[str], joins: str = "", where: str = "") -> str:
    keys = [f"{_REL}.{quote(k)}" for k in plan.entity]
    not_null = " AND ".join(f"{e} IS NOT NULL" for e in [f"{_REL}.{EVENT_TS}", *keys])
    cols = ", ".join([*keys, f"CAST({_REL}.{EVENT_TS} AS TIMESTAMP) AS {EVENT_TS}", *select])
    return (
        f"{_REL} AS ({plan.relation_sql}\n), {_EV} AS (SELECT {cols} FROM {_REL}{joins} "
        f"WHERE {not_null}{where})"
    )


def _probes(
    scope: _Scope, offsets: list[int], labels: str, label_types: Mapping[str, str], extra: str = ""
) -> str:
    """Label rows at t - offset for each offset, tagged ROW * len(offsets) + the offset's index."""
    values = ", ".join(f"({j}, CAST({us} AS BIGINT))" for j, us in enumerate(offsets))
    return (
        f"SELECT {scope.probe_key} AS {_KEY}, (epoch_us({_probe_time(label_types)}) - w.us) * 2 + 1 AS {_ORDER}, "
        f"l.{ROW} * {len(offsets)} + w.j AS {_TAG}{extra} FROM {labels} l{scope.probe_join}, "
        f"(VALUES {values}) w(j, us) WHERE {scope.probe_where}"
    )


@dataclass
class _Scope:
    """How the view's rows and the probes meet in a sort: a key id on both sides, and the
    range of times ``(lo, hi]`` (microseconds) in which a row can be in some label's window."""

    event_key: str
    event_join: str
    probe_key: str
    probe_join: str
    probe_where: str
    key_where: str = ""  # rows whose key no label has
    lo: int = 0
    hi: int = -1
    packed: bool = False  # the order is one BIGINT: (key id << time_bits) | (order - 2 lo)
    time_bits: int = 0
    table: str | None = None  # a temp table of the labels' keys, to drop afterwards

    @property
    def time_where(self) -> str:
        event_us = f"epoch_us(CAST({_REL}.{EVENT_TS} AS TIMESTAMP))"
        return f" AND {event_us} > {self.lo} AND {event_us} <= {self.hi}"

    @property
    def order(self) -> str:
        if self.packed:
            return f"({_KEY} << {self.time_bits}) | ({_ORDER} - {2 * self.lo})"
        return f"{_KEY}, {_ORDER}"


def _scope(
    con: duckdb.DuckDBPyConnection,
    plan: WindowPlan,
    labels: str,
    label_types: Mapping[str, str],
    types: Mapping[str, str],
    longest: int,
) -> _Scope:
    """Rows after the last label time, or a longest window before the first, cannot be in any
    window, nor can rows whose keys no label has. A key is its own id when it is one integer
    column whose range fits; otherwise ids number the labels' distinct keys (a small hash join).
    When the id and the time fit in 62 bits the order is one BIGINT, which DuckDB sorts much
    faster than two columns."""
    t = f"epoch_us({_probe_time(label_types)})"
    key = plan.entity[0]
    integer = len(plan.entity) == 1 and value_class(types[key]) == value_class(label_types[key]) == "int"
    bounds = [f"min({t})", f"max({t})"] + (
        [f"min(l.{quote(key)})", f"max(l.{quote(key)})"] if integer else []
    )
    present = " AND ".join(f"l.{x} IS NOT NULL" for x in [LABEL_TS, *map(quote, plan.entity)])
    row = con.execute(f"SELECT {', '.join(bounds)} FROM {labels} l WHERE {present}").fetchone()
    if row is None or row[0] is None:  # no label row can hold anything
        return _Scope("0", "", "0", "", "FALSE", key_where=" AND FALSE")
    lo, hi = int(row[0]) - longest, int(row[1])
    time_bits = (2 * (hi - lo) + 2).bit_length()  # the order column runs over (2 lo, 2 hi + 1]
    if integer and (int(row[3]) - int(row[2])).bit_length() + time_bits <= 62:
        kmin, kmax = int(row[2]), int(row[3])
        return _Scope(
            event_key=f"CAST({_REL}.{quote(key)} AS BIGINT) - {kmin}", event_join="",
            probe_key=f"CAST(l.{quote(key)} AS BIGINT) - {kmin}", probe_join="", probe_where=present,
            key_where=f" AND {_REL}.{quote(key)} BETWEEN {kmin} AND {kmax}",
            lo=lo, hi=hi, packed=True, time_bits=time_bits,
        )  # fmt: skip
    cols = ", ".join(f"l.{quote(k)} AS {quote(k)}" for k in plan.entity)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_KEYS} AS SELECT *, row_number() OVER () - 1 AS {_KEY} "
        f"FROM (SELECT DISTINCT {cols} FROM {labels} l WHERE {present})"
    )
    count = con.execute(f"SELECT count(*) FROM {_KEYS}").fetchone()

    def join(side: str) -> str:
        on = " AND ".join(f"{side}.{quote(k)} = __jf_d.{quote(k)}" for k in plan.entity)
        return f" JOIN {_KEYS} __jf_d ON {on}"

    return _Scope(
        event_key=f"__jf_d.{_KEY}", event_join=join(_REL), probe_key=f"__jf_d.{_KEY}", probe_join=join("l"),
        probe_where=present, lo=lo, hi=hi, time_bits=time_bits, table=_KEYS,
        packed=int(count[0] if count else 0).bit_length() + time_bits <= 62,
    )  # fmt: skip


def sorted_rows(
    con: duckdb.DuckDBPyConnection,
    plan: WindowPlan,
    carried: dict[str, Carried],
    windows: list[TimeWindow],
    n: int,
    labels: str,
    label_types: Mapping[str, str],
    selected: list[tuple[str, Aggregate, TimeWindow]],
    types: Mapping[str, str],
) -> SortedRows:
    for c in carried.values():
        if c.dictionary:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {c.dictionary} AS SELECT v, row_number() OVER (ORDER BY v) - 1 "
                f"AS code FROM (SELECT DISTINCT {quote(c.input)} AS v FROM ({plan.relation_sql}) "
                f"WHERE {quote(c.input)} IS NOT NULL)"
            )
    flags = list(dict.fromkeys(a.flag for _, a, _ in selected if a.flag and not a.distinct))
    with_segments = any(a.function in ("var_samp", "stddev_samp") for _, a, _ in selected)
    payload = [c.name for c in carried.values()] + [quote(f) for f in flags]
    if with_segments:
        payload.append(_SEG)
    scope = _scope(con, plan, labels, label_types, types, max(w.micros for w in windows))
    event_cols = [f"{scope.event_key} AS {_KEY}"]
    event_cols += [f"{_carried_sql(c)} AS {c.name}" for c in carried.values()]
    event_cols += [f"{_REL}.{quote(f)} AS {quote(f)}" for f in flags]
    if with_segments:
        event_cols.append(f"hash({', '.join(f'{_REL}.{quote(k)}' for k in plan.entity)}) AS {_SEG}")
    joins = scope.event_join + "".join(
        f" LEFT JOIN {c.dictionary} ON {c.dictionary}.v = {_REL}.{quote(c.input)}"
        for c in carried.values()
        if c.dictionary
    )
    # probes carry zeros, not nulls: a column of the view without nulls then comes back unmasked
    zeros = {c.name: _ZEROS[c.kind] for c in carried.values()} | {quote(f): "FALSE" for f in flags}
    zeros[_SEG] = "CAST(0 AS UBIGINT)"
    extra = "".join(f", {zeros[p]} AS {p}" for p in payload)
    probes = _probes(scope, [0] + [w.micros for w in windows], labels, label_types, extra)
    events = ", ".join(
        [_KEY, f"epoch_us({EVENT_TS}) * 2 AS {_ORDER}", f"CAST(-1 AS BIGINT) AS {_TAG}", *payload]
    )
    sql = (
        f"WITH {_events_cte(plan, event_cols, joins, scope.key_where + scope.time_where)}\n"
        f"SELECT {', '.join([_TAG, *payload])} FROM (SELECT {events} FROM {_EV}\n"
        f"UNION ALL {probes})\n"
        f"ORDER BY {scope.order}"
    )
    try:
        result = con.execute(sql).fetchnumpy()
    finally:
        if scope.table:
            con.execute(f"DROP TABLE IF EXISTS {scope.table}")
    tag = np.asarray(result.pop(_TAG))
    is_event = tag < 0
    probe_at = np.flatnonzero(~is_event)
    tags = tag[probe_at]
    del tag
    width = len(windows) + 1
    label, slot = np.divmod(tags, width)
    del tags
    rows_before = probe_at - np.arange(probe_at.size)  # rows before each probe: never decreasing
    # Label rows are taken in the order of their probes at t, then those without probes (a null
    # key or time: empty ranges). The kernels then read the sorted rows nearly sequentially,
    # far faster than in label order; the results go back to label order at the end.
    at_t = label[slot == 0]
    rank = np.full(n, -1, dtype=np.int64)
    rank[at_t] = np.arange(at_t.size)
    missing = np.flatnonzero(rank < 0)
    rank[missing] = np.arange(at_t.size, n)
    order = np.concatenate((at_t, missing))
    to = slot * n + rank[label]  # (probe's slot, label's place)
    del label, slot, rank, at_t, missing
    places = np.zeros(width * n, dtype=np.int64)
    places[to] = rows_before
    # segments: the rows cut at every distinct probe place (and at 0); a range is a run of them
    new = np.ones(rows_before.size, dtype=bool)
    new[1:] = rows_before[1:] != rows_before[:-1]
    cuts = rows_before[new]
    first = 0 if cuts.size and cuts[0] == 0 else 1
    cuts = np.concatenate(([0], cuts)) if first else cuts
    segment_of = np.zeros(width * n, dtype=np.int64)
    segment_of[to] = np.cumsum(new) - 1 + first
    del to, new, rows_before, probe_at
    size = int(is_event.sum())
    out = SortedRows(size=size, order=order, segments=wa.Segments(cuts, size))
    by_slot, runs_by_slot = places.reshape(width, n), segment_of.reshape(width, n)
    for j, w in enumerate(windows):
        out.ranges[w.text] = (by_slot[j + 1], by_slot[0])
        out.runs[w.text] = (runs_by_slot[j + 1], runs_by_slot[0])
    for c in carried.values():
        column: Any = result.pop(c.name)
        data = np.asarray(np.ma.getdata(column))[is_event]
        mask = np.ma.getmask(column)
        valid = None if mask is np.ma.nomask else np.logical_not(mask[is_event])
        del column, mask
        if c.kind == "valid":  # the column holds "x IS NOT NULL" itself
            valid = data.astype(bool)
        out.valid[c.name], out.values[c.name] = valid, data
    for f in flags:
        column = result.pop(f)
        out.flags[f] = np.asarray(np.ma.getdata(column))[is_event].astype(bool)
    if with_segments:
        seg = np.asarray(np.ma.getdata(result.pop(_SEG)))[is_event]
        # a hash collision between neighbouring keys only moves the centering constant
        out.key_starts = np.flatnonzero(np.concatenate(([True], seg[1:] != seg[:-1]))) if seg.size else seg
    return out


def distinct_counts(
    con: duckdb.DuckDBPyConnection,
    plan: WindowPlan,
    inp: str,
    flag: str | None,
    windows: list[TimeWindow],
    n: int,
    labels: str,
    label_types: Mapping[str, str],
    types: Mapping[str, str],
) -> dict[str, np.ndarray]:
    """count(DISTINCT inp) FILTER (WHERE flag) per window for every label row, in ROW order."""
    windows = list(dict.fromkeys(windows))
    scope = _scope(con, plan, labels, label_types, types, max(w.micros for w in windows))
    where = f" AND {_REL}.{quote(inp)} IS NOT NULL" + (f" AND {_REL}.{quote(flag)}" if flag else "")
    ev = _events_cte(
        plan, [f"{scope.event_key} AS {_KEY}", f"{_REL}.{quote(inp)} AS __jf_v"], scope.event_join,
        where + scope.key_where,  # every time: a run of occurrences may start before any window
    )  # fmt: skip
    spans = ", ".join(f"({j}, CAST({w.micros} AS BIGINT))" for j, w in enumerate(windows))
    gap = "epoch_us({0}) - epoch_us({1}) > w.us"
    # markers before every probe are clamped to the first window's start, markers after every
    # probe to just after the last label time: the order stays within the packed range, and the
    # running sum over every key's markers still returns to 0 before the next key
    at = f"least(greatest({{0}}, {2 * scope.lo}), {2 * scope.hi + 2})"
    sql = (
        f"WITH {ev}, __jf_r AS (SELECT {_KEY}, {EVENT_TS}, lag({EVENT_TS}) OVER o AS __jf_prev, "
        f"lead({EVENT_TS}) OVER o AS __jf_next FROM {_EV} "
        f"WINDOW o AS (PARTITION BY {_KEY}, __jf_v ORDER BY {EVENT_TS})),\n"
        f"__jf_m AS (SELECT {_KEY}, epoch_us({EVENT_TS}) * 2 AS {_ORDER}, -2 - 2 * w.j AS {_TAG} "
        f"FROM __jf_r, (VALUES {spans}) w(j, us) "
        f"WHERE __jf_prev IS NULL OR {gap.format(EVENT_TS, '__jf_prev')}\n"
        f"UNION ALL SELECT {_KEY}, (epoch_us({EVENT_TS}) + w.us) * 2, -3 - 2 * w.j FROM __jf_r, "
        f"(VALUES {spans}) w(j, us) WHERE __jf_next IS NULL OR {gap.format('__jf_next', EVENT_TS)})\n"
        f"SELECT {_TAG} FROM (SELECT {_KEY}, {at.format(_ORDER)} AS {_ORDER}, {_TAG} FROM __jf_m\n"
        f"UNION ALL {_probes(scope, [0], labels, label_types)})\n"
        f"ORDER BY {scope.order}"
    )
    try:
        tag = np.asarray(con.execute(sql).fetchnumpy()[_TAG])
    finally:
        if scope.table:
            con.execute(f"DROP TABLE IF EXISTS {scope.table}")
    probe_at = np.flatnonzero(tag >= 0)
    rows = tag[probe_at]
    out = {}
    for j, w in enumerate(windows):
        weight = (tag == -2 - 2 * j).astype(np.int64) - (tag == -3 - 2 * j)
        running = np.cumsum(weight)
        counts = np.zeros(n, dtype=np.int64)
        counts[rows] = running[probe_at]
        out[w.text] = counts
    return out
