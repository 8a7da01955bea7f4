"""Windowed reads that SQLite aggregates: one statement per (version, features, entities).

Reading every event of a dense entity into Python costs a tuple per event; instead one
compound statement returns a handful of rows per entity:

- *band* parts: the windows cut the time before T into disjoint bands (T - w1, T],
  (T - w2, T - w1], ...; SQLite returns per band ``count(*)``, ``count(x)``, ``sum(x)``,
  ``min(x)``, ``max(x)`` (``FILTER (WHERE flag)``). A window's count, sum, min and max
  combine its bands (from the newest out), ``avg`` is its sum over its count(x) (an integer
  sum stays an integer: Python adds the bands' sums);
- with the version's tiles (``sqlite_tiles``), a band two hours wide or more takes its whole
  hours from the hour tiles (two days or more: its whole days from the day tiles, the whole
  hours around them from the hour tiles; when the version holds pushed events, all its whole
  hours from their hour tiles too) and raw events only in the hour at each end. The raw
  events around each band edge are one range per table, split between the two bands by
  FILTER. Tiles hold partial aggregates of the same events, so the values are the same; a
  tile's integer sum past 64 bits (+inf) sends the read to Python. Without tiles a band is
  one range of raw events per table;
- ``count(DISTINCT x)``: one part per (input, flag, window) over both tables;
- ``stddev``/``var``: the events of the longest such window, only the columns they read,
  evaluated by ``window_values.WindowEvaluator`` (the same code as every other reader);
- the version served, from the store's metadata: the statement reads one snapshot, so a
  plan made for another version is seen and made again. A plan made while the version held
  no pushed events reads only its events, and checks that it still holds none (a push since:
  the plan is made again, with them).

The values equal the Python evaluation of the events: the same types and null rules, and
exactly the same values except that a float sum (and average) adds the same numbers grouped
by band and tile, so it may differ in the last bits, as the offline engine's does. Column names come
from the stored metadata: only names of the version's stored columns, quoted, reach the SQL,
and functions are taken from a fixed table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..sqltext import EVENT_TS, quote
from .sqlite_tiles import DAY, HOUR, TILE_START, TILE_WIDTH, pushed_tiles_of, tile_columns, tile_widths
from .window_values import WindowEvaluator, WindowSpec, value_decoder

__all__ = ["WindowSQL", "window_sql", "TileOverflow"]

_NUMERIC = frozenset({"int64", "float64", "bool", "timestamp"})  # SQLite INTEGER or REAL values
_SQL = {"count": "count", "sum": "sum", "min": "min", "max": "max"}  # band aggregates
_MAX_PARTS = 400  # SQLite allows 500 terms in one compound SELECT
META_TAG, ROWS_TAG, DISTINCT_TAG = -1, -2, 1_000_000
_SOME = " HAVING count(*) > 0"  # one entity: no row for a part over no rows (nothing to add)
_STRIDE = 16  # tags: raw events at edge j: 16 j (+1 pushed); tiles of band b: 16 b + 4 + piece (pushed last)
_TILE_SQL = {"count": "sum", "sum": "sum", "min": "min", "max": "max"}  # combining tiles


class TileOverflow(Exception):
    """A tile read holds an integer sum past 64 bits: the read evaluates the events in Python."""


class WindowSQL:
    """The statement and how its rows become each requested feature's value."""

    __slots__ = (
        "sql", "lengths", "recipes", "functions", "rows", "nkeys", "first", "pieces", "checks", "tiled",
        "_adds", "_mins", "_maxs",
    )  # fmt: skip

    def __init__(
        self,
        sql: str,
        lengths: list[int],
        recipes: list[tuple[Any, ...]],
        functions: list[str],
        rows: WindowEvaluator | None,
        nkeys: int,
        pieces: list[list[tuple[int, int]]],
        checks: list[tuple[int, int]],
        tiled: list[tuple[int, int, bool]],
    ) -> None:
        self.sql = sql
        self.lengths = lengths  # window lengths bound after the keys, T and the view's name
        self.recipes = recipes
        self.functions = functions  # each band aggregate's function
        self.rows = rows
        self.nkeys = nkeys  # key columns in each row (0 for one entity)
        self.first = 1 + nkeys  # where a row's payload starts
        # per band, its parts' (tag, where its aggregates start in the part's rows)
        self.pieces = [[(tag, self.first + offset) for tag, offset in band] for band in pieces]
        # (tag, column) of tiles' integer sums in the rows: a float is one past 64 bits
        self.checks = [(tag, self.first + column) for tag, column in checks]
        self.tiled = tiled  # per tiled band: its start and end before T, whether it uses day tiles
        self._adds = [j for j, f in enumerate(functions) if f in ("count", "sum")]
        self._mins = [j for j, f in enumerate(functions) if f == "min"]
        self._maxs = [j for j, f in enumerate(functions) if f == "max"]

    def params(self, keys: list[Any], at_us: int, view: str) -> list[Any]:
        out = [*keys, at_us, view]
        out += [at_us - us for us in self.lengths]
        for lo_us, hi_us, days in self.tiled:  # where raw events end and tiles begin in each band
            lo, hi = at_us - lo_us, at_us - hi_us
            first, last = -(-lo // HOUR) * HOUR, hi - hi % HOUR  # whole hours: (first, last]
            if first >= last:  # no whole hour: raw events over the band
                out += (hi, hi, hi, hi) if days else (hi, hi)
            elif days:
                first_day, last_day = -(-lo // DAY) * DAY, hi - hi % DAY
                out += (
                    (first, first_day, last_day, last) if first_day < last_day else (first, last, last, last)
                )
            else:
                out += (first, last)
        return out

    def values(self, parts: dict[int, Any], events: list[Any] | None, at_us: int) -> list[Any]:
        """The features of one entity from its rows of the statement: band and distinct
        rows by tag (their payload from ``first`` on), and the events the stddev/var features
        read."""
        for tag, column in self.checks:
            payload = parts.get(tag)
            if payload is not None and type(payload[column]) is float:
                raise TileOverflow
        windows = self._windows(parts)
        if self.rows is not None:
            evaluated = self.rows.values(events, at_us) if events else self.rows.empty()
        out: list[Any] = []
        for kind, slot, other, bands, decode in self.recipes:
            if kind == "band":
                v = windows[bands][slot]
                out.append(v if decode is None or v is None else decode(v))
            elif kind == "avg":
                n = windows[bands][other]
                out.append(windows[bands][slot] / n if n else None)
            elif kind == "distinct":
                payload = parts.get(DISTINCT_TAG + slot)
                out.append(payload[self.first] if payload is not None else 0)
            else:  # "rows"
                out.append(evaluated[slot])
        return out

    def _windows(self, parts: dict[int, Any]) -> list[list[Any]]:
        """Per band b, each band aggregate's value over bands 0..b (the window ending at band
        b): the parts' values combined from the newest band out."""
        acc: list[Any] = [0 if f == "count" else None for f in self.functions]
        adds, mins, maxs = self._adds, self._mins, self._maxs
        get = parts.get
        out = []
        for pieces in self.pieces:
            for tag, offset in pieces:
                payload = get(tag)
                if payload is None:
                    continue
                for slot in adds:
                    v = payload[offset + slot]
                    if v is not None:
                        a = acc[slot]
                        acc[slot] = v if a is None else a + v
                for slot in mins:
                    v = payload[offset + slot]
                    if v is not None:
                        a = acc[slot]
                        if a is None or v < a:
                            acc[slot] = v
                for slot in maxs:
                    v = payload[offset + slot]
                    if v is not None:
                        a = acc[slot]
                        if a is None or v > a:
                            acc[slot] = v
            out.append(acc.copy())
        return out


def window_sql(
    spec: WindowSpec,
    features: Sequence[Any],
    wanted: Sequence[int],
    entity: Sequence[str],
    n: int,
    tables: tuple[str, str],
    meta: str,
    tiles: str | None = None,
    pushed: bool = True,
) -> WindowSQL | None:
    """The statement reading features ``wanted`` (positions in ``spec.names``) of ``n`` entities
    from ``tables`` (the view's events and pushed events; ``pushed`` False: the version held no
    pushed events when planned) and the version's ``tiles`` (None: the version has none), or
    None when some feature needs the Python evaluation (an input or flag SQLite would compare
    or test otherwise than Python)."""
    kinds = {c.name: c.type for c in spec.columns}
    per = len(spec.aggregates)
    lengths = sorted({us for _, us in spec.windows})
    nkeys = len(entity) if n > 1 else 0
    m = n * len(entity)  # key parameters ?1..?m; then T, the view's name, the windows' starts
    at, view = f"?{m + 1}", f"?{m + 2}"

    bound = [0]  # how many window starts the statement uses (SQLite wants no unused parameter)

    def start(us: int) -> str:
        j = lengths.index(us)
        bound[0] = max(bound[0], j + 1)
        return f"?{m + 3 + j}"

    def col(name: str | None) -> str:
        if name is None or name not in kinds:  # from_dict checked it; never SQL of unknown text
            raise ValueError(name)
        return quote(name)

    band_aggs: list[tuple[str, str | None, str | None]] = []  # (function, input, flag)

    def slot(function: str, inp: str | None, flag: str | None) -> int:
        key = (function, inp, flag)
        if key not in band_aggs:
            band_aggs.append(key)
        return band_aggs.index(key)

    recipes: list[tuple[Any, ...]] = []
    distinct: list[tuple[str, str | None, int]] = []
    stats: list[int] = []  # stddev/var features, evaluated over the fetched events
    band_longest = 0
    for i in wanted:
        a = spec.aggregates[i % per]
        us = spec.windows[i // per][1]
        if a.flag is not None and kinds.get(a.flag) not in _NUMERIC:
            return None  # a text flag: SQLite's truth is not Python's
        if a.function in ("stddev_samp", "var_samp"):
            recipes.append(("rows", len(stats), None, 0, None))
            stats.append(i)
            continue
        if a.function == "count" and a.distinct and a.input is not None:
            recipes.append(("distinct", len(distinct), None, 0, None))
            distinct.append((a.input, a.flag, us))
            continue
        if a.function in ("sum", "avg") and kinds.get(a.input or "") not in _NUMERIC:
            return None
        if a.function not in ("count", "sum", "avg", "min", "max"):
            return None
        band = sum(1 for w in lengths if w <= us) - 1  # the window's last band
        band_longest = max(band_longest, us)
        decode = value_decoder(features[i].type) if a.function in ("min", "max") else None
        if a.function == "avg":
            recipes.append(("avg", slot("sum", a.input, a.flag), slot("count", a.input, a.flag), band, None))
        else:
            recipes.append(("band", slot(a.function, a.input, a.flag), None, band, decode))
    edges = [us for us in lengths if us <= band_longest]
    held = {c.key(): c.name for c in tile_columns(spec)} if tiles is not None else {}
    held_int = {c.key(): c.int_sum for c in tile_columns(spec)} if tiles is not None else {}
    widths = tile_widths(spec) if tiles is not None else []
    if not widths or any(key not in held for key in band_aggs):
        tiles = None
    width = max(2, 2 * len(band_aggs), (1 + len(spec.columns)) if stats else 0)

    if len(entity) == 1:
        k = quote(entity[0])
        where = f"{k} = ?1" if n == 1 else f"{k} IN ({', '.join(f'?{j + 1}' for j in range(n))})"
    else:
        tuples = (
            "(" + ", ".join(f"?{e * len(entity) + j + 1}" for j in range(len(entity))) + ")" for e in range(n)
        )
        where = f"({', '.join(quote(k) for k in entity)}) IN (VALUES {', '.join(tuples)})"
    keys = [quote(k) for k in entity] if n > 1 else []
    group = f" GROUP BY {', '.join(keys)}" if keys else ""

    def select(tag: int, payload: list[str]) -> str:
        return f"SELECT {', '.join([str(tag), *keys, *payload, *(['NULL'] * (width - len(payload)))])}"

    def band_sql(function: str, inp: str | None, flag: str | None, side: str | None = None) -> str:
        text = f"{_SQL[function]}({'*' if inp is None else col(inp)})"
        where = " AND ".join([*([col(flag)] if flag is not None else []), *([side] if side else [])])
        return text + (f" FILTER (WHERE {where})" if where else "")

    try:
        # the version served, and whether pushed events arrived that this plan does not read
        arrived = "NULL" if pushed else f"EXISTS (SELECT 1 FROM {quote(tables[1])})"
        parts = [f"SELECT {', '.join(['-1', *(['NULL'] * nkeys), 'version', arrived, *(['NULL'] * (width - 2))])} "
                 f"FROM {quote(meta)} WHERE view = {view}"]  # fmt: skip
        sources = tables if pushed else tables[:1]
        nb = len(edges)
        pieces: list[list[tuple[int, int]]] = [[] for _ in range(nb)]
        checks: list[tuple[int, int]] = []
        tiled: list[tuple[int, int, bool]] = []
        edge = [at, *(start(us) for us in edges)]  # band b is (edge[b + 1], edge[b]]
        first, last = edge[:nb], edge[:nb]  # band b's raw events: (edge[b + 1], first[b]], (last[b], edge[b]]
        extra = m + 3 + len(lengths)  # the next tiled band's first parameter
        for b, us in enumerate(edges):
            span = us - (edges[b - 1] if b else 0)
            if tiles is None or span < 2 * HOUR:
                continue
            days = span >= 2 * DAY and DAY in widths
            p = [f"?{extra + j}" for j in range(4 if days else 2)]
            extra += len(p)
            bound[0] = len(lengths)  # the tiled bands' parameters follow every window start
            tiled.append((us, edges[b - 1] if b else 0, days))
            first[b], last[b] = p[0], p[-1]
            spans = (
                [(HOUR, p[0], p[1]), (DAY, p[1], p[2]), (HOUR, p[2], p[3])] if days else [(HOUR, p[0], p[1])]
            )
            payload = [f"{_TILE_SQL[f]}({quote(held[(f, i, g)])})" for f, i, g in band_aggs]
            # the events' tiles; the pushed events' (their own small table, hour tiles only: the
            # band's whole hours in one range) when the plan reads them
            if pushed:
                spans = [*spans, (HOUR, p[0], p[-1])]
            for piece, (tile_width, low, high) in enumerate(spans):
                tag = _STRIDE * b + 4 + piece
                source = pushed_tiles_of(tiles) if pushed and piece == len(spans) - 1 else tiles
                parts.append(
                    f"{select(tag, payload)} FROM {quote(source)} WHERE {where} AND {TILE_WIDTH} = {tile_width} "
                    f"AND {TILE_START} >= {low} AND {TILE_START} < {high}{group or _SOME}"
                )
                pieces[b].append((tag, 0))
                checks += [(tag, j) for j, key in enumerate(band_aggs) if held_int[key]]
        for j in range(nb + 1 if nb else 0):  # raw events around edge j: band j below it, band j - 1 above
            low = last[j] if j < nb else edge[nb]
            high = first[j - 1] if j else edge[0]
            if low == high:
                continue  # an untiled band's events are all read at its other edge
            split = edge[j]
            payload = []
            if j < nb:
                payload += [band_sql(*key, f"{EVENT_TS} <= {split}" if j else None) for key in band_aggs]
            if j:
                payload += [band_sql(*key, f"{EVENT_TS} > {split}" if j < nb else None) for key in band_aggs]
            for s, source in enumerate(sources):
                tag = _STRIDE * j + s
                parts.append(
                    f"{select(tag, payload)} FROM {quote(source)} "
                    f"WHERE {where} AND {EVENT_TS} > {low} AND {EVENT_TS} <= {high}{group or _SOME}"
                )
                if j < nb:
                    pieces[j].append((tag, 0))
                if j:
                    pieces[j - 1].append((tag, len(band_aggs) if j < nb else 0))
        for d, (inp, flag, us) in enumerate(distinct):
            inner = " UNION ALL ".join(
                f"SELECT {', '.join([*keys, col(inp)])} FROM {quote(source)} WHERE {where} "
                f"AND {EVENT_TS} > {start(us)} AND {EVENT_TS} <= {at}" + (f" AND {col(flag)}" if flag else "")
                for source in sources
            )
            parts.append(f"{select(DISTINCT_TAG + d, [f'count(DISTINCT {col(inp)})'])} FROM ({inner}){group}")
        evaluator = None
        if stats:
            evaluator = WindowEvaluator(spec, features, stats)
            used = {spec.aggregates[i % per].input for i in stats} | {
                spec.aggregates[i % per].flag for i in stats
            }
            columns = [EVENT_TS, *(col(c.name) if c.name in used else "NULL" for c in spec.columns)]
            longest = max(spec.windows[i // per][1] for i in stats)
            for source in sources:
                parts.append(
                    f"{select(ROWS_TAG, columns)} FROM {quote(source)} "
                    f"WHERE {where} AND {EVENT_TS} > {start(longest)} AND {EVENT_TS} <= {at}"
                )
    except ValueError:
        return None
    if len(parts) > _MAX_PARTS:
        return None
    functions = [f for f, _, _ in band_aggs]
    return WindowSQL(
        " UNION ALL ".join(parts),
        lengths[: bound[0]],
        recipes,
        functions,
        evaluator,
        nkeys,
        pieces,
        checks,
        tiled,
    )
