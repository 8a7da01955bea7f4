"""Windowed reads that SQLite aggregates: one statement per (version, features, entities).

Reading every event of a dense entity into Python costs a tuple per event; instead one
compound statement returns a handful of rows per entity:

- *band* parts: the windows cut the time before T into disjoint bands (T - w1, T],
  (T - w2, T - w1], ...; per band and per table (materialized events, pushed events) one
  ``SELECT count(*), count(x), sum(x), min(x), max(x) ... FILTER (WHERE flag)``. A window's
  count, sum, min and max combine its bands (from the newest out), ``avg`` is its sum over
  its count(x) (an integer sum stays an integer: Python adds the bands' sums);
- with the version's tiles (``sqlite_tiles``), a band two hours wide or more reads raw events
  only in the hour at each of its ends and the whole hours between from the hour tiles; a
  band two days wide or more the whole days from the day tiles, the hours around them from
  the hour tiles. The tiles hold the partial aggregates of the same events, so the values
  are the same; a tile whose integer sum passed 64 bits sends the read to Python;
- ``count(DISTINCT x)``: one part per (input, flag, window) over both tables;
- ``stddev``/``var``: the events of the longest such window, only the columns they read,
  evaluated by ``window_values.WindowEvaluator`` (the same code as every other reader);
- the version served, from the store's metadata: the statement reads one snapshot, so a
  plan made for another version is seen and made again.

The values equal the Python evaluation of the events: the same types and null rules, and
exactly the same values except that a float sum (and average) adds the same numbers grouped
by band, so it may differ in the last bits, as the offline engine's does. Column names come
from the stored metadata: only names of the version's stored columns, quoted, reach the SQL,
and functions are taken from a fixed table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..sqltext import EVENT_TS, quote
from .sqlite_tiles import DAY, HOUR, TILE_OVERFLOW, TILE_START, TILE_WIDTH, tile_columns, tile_widths
from .window_values import WindowEvaluator, WindowSpec, value_decoder

__all__ = ["WindowSQL", "window_sql", "TileOverflow"]

_NUMERIC = frozenset({"int64", "float64", "bool", "timestamp"})  # SQLite INTEGER or REAL values
_SQL = {"count": "count", "sum": "sum", "min": "min", "max": "max"}  # band aggregates
_MAX_PARTS = 400  # SQLite allows 500 terms in one compound SELECT
META_TAG, ROWS_TAG, DISTINCT_TAG = -1, -2, 1_000_000
_PIECES = 8  # tags of a band's parts: 8 * band + piece
_TILE_SQL = {"count": "sum", "sum": "sum", "min": "min", "max": "max"}  # combining tiles


class TileOverflow(Exception):
    """A tile read holds an integer sum past 64 bits: the read evaluates the events in Python."""


class WindowSQL:
    """The statement and how its rows become each requested feature's value."""

    __slots__ = (
        "sql", "lengths", "recipes", "functions", "nbands", "rows", "nkeys", "first", "band_tags",
        "tile_tags", "tiled",
    )  # fmt: skip

    def __init__(
        self,
        sql: str,
        lengths: list[int],
        recipes: list[tuple[Any, ...]],
        functions: list[str],
        nbands: int,
        rows: WindowEvaluator | None,
        nkeys: int,
        band_tags: list[list[int]],
        tile_tags: list[int],
        tiled: list[tuple[int, int, bool]],
    ) -> None:
        self.sql = sql
        self.lengths = lengths  # window lengths bound after the keys, T and the view's name
        self.recipes = recipes
        self.functions = functions  # each band aggregate's function
        self.nbands = nbands
        self.rows = rows
        self.nkeys = nkeys  # key columns in each row (0 for one entity)
        self.first = 1 + nkeys  # where a row's payload starts
        self.band_tags = band_tags  # per band, the tags of its parts
        self.tile_tags = tile_tags  # parts read from tiles: their last used column flags an overflow
        self.tiled = tiled  # per tiled band: (its start, its end) before T, and whether it uses days

    def params(self, keys: list[Any], at_us: int, view: str) -> list[Any]:
        out = [*keys, at_us, view, *(at_us - us for us in self.lengths)]
        for lo_us, hi_us, days in self.tiled:  # where raw events end and tiles begin in each band
            lo, hi = at_us - lo_us, at_us - hi_us
            first, last = -(-lo // HOUR) * HOUR, hi // HOUR * HOUR  # whole hours: (first, last]
            if first >= last:  # no whole hour: raw events over the band
                out += [hi] * (4 if days else 2)
            elif days:
                first_day, last_day = -(-lo // DAY) * DAY, hi // DAY * DAY
                if first_day < last_day:
                    out += [first, first_day, last_day, last]
                else:
                    out += [first, last, last, last]
            else:
                out += [first, last]
        return out

    def values(self, parts: dict[int, Any], events: list[Any] | None, at_us: int) -> list[Any]:
        """The features of one entity from its rows of the statement: band and distinct
        payloads by tag, and the events the stddev/var features read."""
        for tag in self.tile_tags:
            payload = parts.get(tag)
            if payload is not None and payload[len(self.functions)]:
                raise TileOverflow
        windows = self._windows(parts)
        if self.rows is not None:
            evaluated = self.rows.values(events, at_us) if events else self.rows.empty()
        out: list[Any] = []
        for kind, slot, other, bands, decode in self.recipes:
            if kind == "band":
                v = windows[slot][bands]
                out.append(v if decode is None or v is None else decode(v))
            elif kind == "avg":
                n = windows[other][bands]
                out.append(windows[slot][bands] / n if n else None)
            elif kind == "distinct":
                payload = parts.get(DISTINCT_TAG + slot)
                out.append(payload[0] if payload is not None else 0)
            else:  # "rows"
                out.append(evaluated[slot])
        return out

    def _windows(self, parts: dict[int, Any]) -> list[list[Any]]:
        """Per band aggregate, its value over bands 0..b (the window ending at band b): the
        bands' values combined from the newest band out."""
        bands = [[parts.get(tag) for tag in tags] for tags in self.band_tags]
        out = []
        for slot, function in enumerate(self.functions):
            acc: Any = 0 if function == "count" else None
            cumulative = []
            for payloads in bands:
                for payload in payloads:
                    if payload is None:
                        continue
                    v = payload[slot]
                    if v is None:
                        continue
                    if acc is None:
                        acc = v
                    elif function == "count" or function == "sum":
                        acc += v
                    elif function == "min":
                        if v < acc:
                            acc = v
                    elif v > acc:
                        acc = v
                cumulative.append(acc)
            out.append(cumulative)
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
) -> WindowSQL | None:
    """The statement reading features ``wanted`` (positions in ``spec.names``) of ``n`` entities
    from ``tables`` (the view's events and pushed events) and the version's ``tiles`` (None: the
    version has none), or None when some feature needs the Python evaluation (an input or flag
    SQLite would compare or test otherwise than Python)."""
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
    widths = tile_widths(spec) if tiles is not None else []
    if not widths or any(key not in held for key in band_aggs):
        tiles = None
    width = max(1, len(band_aggs) + (tiles is not None), (1 + len(spec.columns)) if stats else 0)

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

    def band_sql(function: str, inp: str | None, flag: str | None) -> str:
        text = f"{_SQL[function]}({'*' if inp is None else col(inp)})"
        return text + (f" FILTER (WHERE {col(flag)})" if flag is not None else "")

    try:
        parts = [f"SELECT {', '.join(['-1', *(['NULL'] * nkeys), 'version', *(['NULL'] * (width - 1))])} "
                 f"FROM {quote(meta)} WHERE view = {view}"]  # fmt: skip
        aggs = [band_sql(*key) for key in band_aggs]
        band_tags: list[list[int]] = []
        tile_tags: list[int] = []
        tiled: list[tuple[int, int, bool]] = []
        extra = m + 3 + len(lengths)  # the next tiled band's first parameter

        def raw(tag: int, low: str, high: str) -> None:
            band_tags[-1].append(tag)
            for s, source in enumerate(tables):
                parts.append(
                    f"{select(tag + s, aggs)} FROM {quote(source)} "
                    f"WHERE {where} AND {EVENT_TS} > {low} AND {EVENT_TS} <= {high}{group}"
                )
            band_tags[-1].append(tag + 1)

        def tiled_part(tag: int, tile_width: int, low: str, high: str) -> None:
            assert tiles is not None
            payload = [f"{_TILE_SQL[f]}({quote(held[(f, i, g)])})" for f, i, g in band_aggs]
            parts.append(
                f"{select(tag, [*payload, f'max({TILE_OVERFLOW})'])} FROM {quote(tiles)} "
                f"WHERE {where} AND {TILE_WIDTH} = {tile_width} AND {TILE_START} >= {low} "
                f"AND {TILE_START} < {high}{group}"
            )
            band_tags[-1].append(tag)
            tile_tags.append(tag)

        for b, us in enumerate(edges):
            upper = at if b == 0 else start(edges[b - 1])
            span = us - (edges[b - 1] if b else 0)
            band_tags.append([])
            tag = _PIECES * b
            if tiles is None or span < 2 * HOUR:
                raw(tag, start(us), upper)
                continue
            days = span >= 2 * DAY and DAY in widths
            p = [f"?{extra + j}" for j in range(4 if days else 2)]
            extra += len(p)
            tiled.append((us, edges[b - 1] if b else 0, days))
            bound[0] = len(lengths)  # the tiled bands' parameters follow every window start
            first, last = p[0], p[-1]  # raw events in (start, first] and (last, end]
            raw(tag, start(us), first)
            raw(tag + 2, last, upper)
            if days:
                tiled_part(tag + 4, HOUR, first, p[1])
                tiled_part(tag + 5, DAY, p[1], p[2])
                tiled_part(tag + 6, HOUR, p[2], last)
            else:
                tiled_part(tag + 4, HOUR, first, last)
        for d, (inp, flag, us) in enumerate(distinct):
            inner = " UNION ALL ".join(
                f"SELECT {', '.join([*keys, col(inp)])} FROM {quote(source)} WHERE {where} "
                f"AND {EVENT_TS} > {start(us)} AND {EVENT_TS} <= {at}" + (f" AND {col(flag)}" if flag else "")
                for source in tables
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
            for source in tables:
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
        len(edges),
        evaluator,
        nkeys,
        band_tags,
        tile_tags,
        tiled,
    )
