"""Array kernels for window aggregates over events sorted by (keys, event time).

Every window of every label is a range [a, b) of that sorted array (the events of the
label's keys with event time in (t - w, t]), so each aggregate is a range query:

- counts and integer sums: differences of prefix sums (int64; an integer sum wraps like
  two's complement arithmetic, so a window's sum is exact whenever it fits in int64);
- float sums: differences of compensated prefix sums (each step's rounding error is
  recovered exactly by TwoSum and summed apart, so a window's sum keeps about twice the
  precision of a double whatever came before it in the array);
- variances: the same over values centered per key, with exact squares (TwoProduct) and
  the final ``sum(y^2) - sum(y)^2 / n`` in double-double arithmetic, so a large mean with
  a small spread does not cancel the answer away;
- min and max: ``RangeExtreme``, prefix/suffix extremes inside fixed blocks plus a sparse
  table over the blocks' extremes: two or three lookups per range whatever its length.

numpy only; nothing here knows about SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "prefix", "range_sum", "CompensatedPrefix", "float_window_sums", "window_variances",
    "RangeExtreme", "range_extremes", "int_window_sums", "used_values", "Segments",
]  # fmt: skip

_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's split of a double into two 26-bit halves


def prefix(values: np.ndarray) -> np.ndarray:
    """[0, v0, v0+v1, ...]: ``out[b] - out[a]`` is the sum of values[a:b]."""
    out = np.empty(values.size + 1, dtype=np.int64 if values.dtype.kind in "bi" else values.dtype)
    out[0] = 0
    np.cumsum(values, out=out[1:])
    return out


def range_sum(pre: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return pre[b] - pre[a]


@dataclass
class Segments:
    """The sorted rows cut at every range end, so that each range is a run of whole segments:
    reducing the rows once per segment (one sequential pass) leaves every range query to
    arrays as long as the number of distinct range ends, not the number of rows."""

    cuts: np.ndarray  # each segment's first row, strictly increasing, from 0
    rows: int

    def reduce(self, ufunc: Any, values: np.ndarray, identity: Any, dtype: Any = None) -> np.ndarray:
        """``ufunc`` over each segment's values; ``identity`` for a segment past the last row."""
        out = np.full(self.cuts.size, identity, dtype=dtype or values.dtype)
        inner = int(np.searchsorted(self.cuts, self.rows))
        if inner:
            out[:inner] = ufunc.reduceat(values, self.cuts[:inner], dtype=dtype or values.dtype)
        return out


# -- error-free transformations (vectorized) --------------------------------------------------


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _dd_norm(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _two_sum(hi, lo)


def _dd_sub(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    s, e = _two_sum(a[0], -b[0])
    return _dd_norm(s, e + (a[1] - b[1]))


def _dd_mul(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    p, e = _two_prod(a[0], b[0])
    return _dd_norm(p, e + (a[0] * b[1] + a[1] * b[0]))


def _dd_div(a: tuple[np.ndarray, np.ndarray], n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a / n for doubles n (exact integers here)."""
    q1 = a[0] / n
    p, e = _two_prod(q1, n)
    r = ((a[0] - p) - e) + a[1]
    return _dd_norm(q1, r / n)


# -- sums ---------------------------------------------------------------------------------------


_CHUNK = 1 << 18  # elementwise work goes in chunks: small temporaries, reused, in cache


def used_values(values: np.ndarray, use: np.ndarray, fill: Any, dtype: Any = None) -> np.ndarray:
    """``values`` where ``use``, else ``fill`` (one allocation, no temporaries)."""
    out = np.full(values.size, fill, dtype=dtype or values.dtype)
    np.copyto(out, values, where=use, casting="unsafe")
    return out


@dataclass
class CompensatedPrefix:
    """Prefix sums of float64 values as hi + lo: ``hi`` is numpy's running sum, ``lo`` the running
    sum of each step's exact rounding error (and of ``extra_error``, values' own low parts)."""

    hi: np.ndarray
    lo: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, extra_error: np.ndarray | None = None) -> CompensatedPrefix:
        n = values.size
        hi = prefix(values)
        lo = np.empty(n + 1, dtype=np.float64)
        lo[0] = 0.0
        err = lo[1:]
        for i in range(0, n, _CHUNK):
            j = min(i + _CHUNK, n)
            # step k computed hi[k+1] = fl(hi[k] + values[k]); TwoSum recovers what it rounded away
            _, e = _two_sum(hi[i:j], values[i:j])
            if extra_error is not None:
                e += extra_error[i:j]
            err[i:j] = e
        np.cumsum(err, out=err)
        return cls(hi, lo)

    def at(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.hi[p], self.lo[p]

    def window(
        self, a: np.ndarray, b: np.ndarray, at_b: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sum over [a, b) as a normalized double-double (``at_b``: ``at(b)`` if known)."""
        hi_b, lo_b = self.at(b) if at_b is None else at_b
        hi, err = _two_sum(hi_b, -self.hi[a])
        return _dd_norm(hi, err + (lo_b - self.lo[a]))


def _ends(
    pre: CompensatedPrefix, ranges: list[tuple[np.ndarray, np.ndarray]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``pre.at(b)`` per range, gathered once for ranges sharing their ends (every window of a label)."""
    seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    return [seen.setdefault(id(b), pre.at(b)) for _, b in ranges]


def _nonfinite(x: np.ndarray, use: np.ndarray) -> dict[str, np.ndarray] | None:
    """Prefix counts of the used NaN, +inf and -inf in ``x`` (zeroing them in place); None if none."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    bad &= use
    counts = {
        "nan": prefix(bad & np.isnan(x)),
        "pinf": prefix(bad & (x == np.inf)),
        "ninf": prefix(bad & (x == -np.inf)),
    }
    x[~np.isfinite(x)] = 0.0
    return counts


def _apply_nonfinite(
    result: np.ndarray, counts: dict[str, np.ndarray], a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    nan, pinf, ninf = (range_sum(counts[k], a, b) for k in ("nan", "pinf", "ninf"))
    result = np.where(pinf > 0, np.inf, result)
    result = np.where(ninf > 0, -np.inf, result)
    return np.where((nan > 0) | ((pinf > 0) & (ninf > 0)), np.nan, result)


def float_window_sums(
    values: np.ndarray,
    use: np.ndarray,
    ranges: list[tuple[np.ndarray, np.ndarray]],
    segments: Segments | None = None,
) -> list[np.ndarray]:
    """Per range [a, b): the sum of values[i] over i in it with use[i] (IEEE rules for inf/NaN).

    With ``segments`` the ranges are runs of segments; each segment's sum rounds once, like any
    sum of its few values, and the runs are then summed exactly.
    """
    if values.dtype == np.float64 and use.all() and np.isfinite(values).all():
        x, special = values, None  # nothing to leave out: sum the values as they are
    else:
        x = used_values(values, use, 0.0, np.float64)
        special = _nonfinite(x, use)
    if segments is not None:
        x = segments.reduce(np.add, x, 0.0)
        if special is not None:
            special = {k: segments.reduce(np.add, np.diff(v), 0, np.int64) for k, v in special.items()}
            special = {k: prefix(v) for k, v in special.items()}
    pre = CompensatedPrefix.of(x)
    del x
    out = []
    for (a, b), at_b in zip(ranges, _ends(pre, ranges), strict=True):
        hi, lo = pre.window(a, b, at_b)
        total = hi + lo
        out.append(total if special is None else _apply_nonfinite(total, special, a, b))
    return out


def int_window_sums(
    values: np.ndarray,
    use: np.ndarray,
    ranges: list[tuple[np.ndarray, np.ndarray]],
    segments: Segments | None = None,
) -> tuple[list[np.ndarray], bool]:
    """Per range: the exact int64 sum of the used values, and whether every one fits in int64
    (sums wrap like two's complement on the way, which leaves a sum that fits exact)."""
    x = used_values(values, use, 0, np.int64)
    magnitude = np.abs(x.astype(np.float64))
    if segments is not None:
        x = segments.reduce(np.add, x, 0)
        magnitude = segments.reduce(np.add, magnitude, 0.0)
    pre = prefix(x)
    out = [range_sum(pre, a, b) for a, b in ranges]
    del pre
    fits = True
    if float(magnitude.sum()) >= 2.0**62:  # some window could overflow: check each one's magnitude
        mag = prefix(magnitude)
        fits = all(bool((range_sum(mag, a, b) < 2.0**62).all()) for a, b in ranges)
    return out, fits


def window_variances(
    values: np.ndarray,
    use: np.ndarray,
    segments: np.ndarray,
    ranges: list[tuple[np.ndarray, np.ndarray]],
) -> list[np.ndarray]:
    """Per range: the sample variance of the used values (NaN where fewer than two).

    ``segments`` holds the start index of each key's run of events: values are centered on
    their key's mean, which changes nothing mathematically and keeps the prefix sums small.
    """
    x = used_values(values, use, 0.0, np.float64)
    special = _nonfinite(x, use)
    used = use.astype(np.float64)
    if x.size:
        sums = np.add.reduceat(x, segments)
        counts = np.add.reduceat(used, segments)
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        lengths = np.diff(np.append(segments, x.size))
        y = np.where(use, x - np.repeat(means, lengths), 0.0)
    else:
        y = x
    count_pre = prefix(use)
    kept = x[use]  # a window of equal values has variance 0 exactly, not a rounding residue
    changes = prefix(kept[1:] != kept[:-1])
    del kept
    first = CompensatedPrefix.of(y)
    sq, sq_err = _two_prod(y, y)
    second = CompensatedPrefix.of(sq, extra_error=sq_err)
    del y, sq, sq_err
    out = []
    ends = zip(_ends(first, ranges), _ends(second, ranges), strict=True)
    for (a, b), (first_b, second_b) in zip(ranges, ends, strict=True):
        n = range_sum(count_pre, a, b).astype(np.float64)
        total = first.window(a, b, first_b)
        squares = second.window(a, b, second_b)
        safe_n = np.maximum(n, 1.0)
        m2 = _dd_sub(squares, _dd_div(_dd_mul(total, total), safe_n))
        var = np.maximum(m2[0] + m2[1], 0.0) / np.maximum(n - 1.0, 1.0)
        top = changes.size - 1
        first_used, end_used = np.minimum(count_pre[a], top), np.minimum(count_pre[b], top + 1)
        varied = changes[np.maximum(end_used - 1, first_used)] - changes[first_used]
        var = np.where(n >= 2, np.where(varied > 0, var, 0.0), np.nan)
        if special is not None:
            bad = sum(range_sum(special[k], a, b) for k in ("nan", "pinf", "ninf"))
            var = np.where((bad > 0) & (n >= 2), np.nan, var)
        out.append(var)
    return out


# -- min / max ------------------------------------------------------------------------------------


def range_extremes(
    values: np.ndarray,
    use: np.ndarray | None,
    op: Any,
    identity: Any,
    ranges: list[tuple[np.ndarray, np.ndarray]],
) -> list[np.ndarray]:
    """min or max (``op``) of the used values per range; ``identity`` where none.

    Short ranges in total (sparse data) are scanned directly; otherwise a ``RangeExtreme`` is
    built once and answers every range in O(1).
    """
    # A scan costs about its ranges' total length; the structure about 2.5 steps per value to
    # build and 3 per range to query. Build it when a window's scan would cost more than that.
    lengths = [(int((b - a).sum()), int((b - a).max())) if a.size else (0, 0) for a, b in ranges]
    build = any(total > values.size * 3 // 4 or longest > 256 for total, longest in lengths)
    rmq = None
    if build:
        rmq = RangeExtreme(values, op, identity, use=use)
    out = []
    for (a, b), (total, longest) in zip(ranges, lengths, strict=True):
        if rmq is not None and (total > 3 * a.size or longest > 256):
            out.append(rmq.query(a, b))
        else:
            out.append(_scan_ranges(values, use, op, identity, a, b))
    return out


def _scan_ranges(
    values: np.ndarray, use: np.ndarray | None, op: Any, identity: Any, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """Fold ``op`` over each range, one step for all ranges at a time (as long as the longest)."""
    out = np.full(a.size, identity, dtype=values.dtype)
    idx = np.flatnonzero(b > a)
    pos, end = a[idx], b[idx]
    acc = np.full(idx.size, identity, dtype=values.dtype)
    while idx.size:
        acc = op(acc, values[pos] if use is None else np.where(use[pos], values[pos], identity))
        pos = pos + 1
        done = pos >= end
        if done.any():
            out[idx[done]] = acc[done]
            more = ~done
            idx, pos, end, acc = idx[more], pos[more], end[more], acc[more]
    return out


class RangeExtreme:
    """min or max over index ranges of ``values`` (int64 or float64; only where ``use``), answered
    in O(1) per range.

    The array is cut into blocks of ``block`` values; each position knows the extreme from its
    block's start (prefix) and to its block's end (suffix), and a sparse table holds the extreme
    of every run of 2^k whole blocks, grown to the longest run a query spans. A range within one
    block is scanned (at most ``block`` steps, vectorized over the ranges).
    """

    def __init__(
        self, values: np.ndarray, op: Any, identity: Any, *, use: np.ndarray | None = None, block: int = 32
    ) -> None:
        self.op, self.identity, self.block = op, identity, block
        if use is not None and not use.all():
            values = used_values(values, use, identity)
        n = values.size
        self.values = values
        self.pre, self.suf = np.empty_like(values), np.empty_like(values)
        whole = n - n % block
        grid = values[:whole].reshape(-1, block)
        op.accumulate(grid, axis=1, out=self.pre[:whole].reshape(-1, block))
        op.accumulate(grid[:, ::-1], axis=1, out=self.suf[:whole].reshape(-1, block)[:, ::-1])
        if whole < n:  # the last, shorter block
            op.accumulate(values[whole:], out=self.pre[whole:])
            op.accumulate(values[whole:][::-1], out=self.suf[whole:][::-1])
        # row k: the extreme of blocks i .. i + 2^k - 1 (identity past the end)
        ends = np.minimum(np.arange(block - 1, n + block - 1, block), n - 1) if n else np.zeros(0, np.int64)
        self.table = self.pre[ends][np.newaxis, :] if n else np.full((1, 1), identity, dtype=values.dtype)

    def _grow(self, level: int) -> None:
        rows = list(self.table)
        while len(rows) <= level:
            prev, half = rows[-1], 1 << (len(rows) - 1)
            row = np.full_like(prev, self.identity)
            row[: max(prev.size - half, 0)] = self.op(prev[:-half], prev[half:]) if prev.size > half else []
            rows.append(row)
        self.table = np.stack(rows)

    def query(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The extreme over [a, b) per range; ``identity`` where the range is empty."""
        op, B = self.op, self.block
        out = np.full(a.size, self.identity, dtype=self.values.dtype)
        last = b - 1
        first_block, last_block = a // B, last // B
        nonempty = b > a
        cross = np.flatnonzero(nonempty & (first_block < last_block))
        if cross.size:
            lo, hi = a[cross], last[cross]
            fb, lb = first_block[cross], last_block[cross]
            between = lb - fb - 1  # whole blocks strictly inside the range
            level = np.frexp(np.maximum(between, 1).astype(np.float64))[1] - 1
            top = int(level.max())
            if top >= self.table.shape[0]:
                self._grow(top)
            # two runs of 2^level blocks cover the blocks between; gathers stay in bounds when none
            mid = op(self.table[level, fb + 1], self.table[level, lb - (1 << level)])
            res = op(self.suf[lo], self.pre[hi])
            out[cross] = np.where(between > 0, op(res, mid), res)
        inside = np.flatnonzero(nonempty & (first_block == last_block))
        if inside.size:
            out[inside] = self._scan(a[inside], last[inside])
        return out

    def _scan(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Extreme of values[lo..hi] (inclusive, inside one block), vectorized over the ranges."""
        B = self.block
        res = np.where(lo % B == 0, self.pre[hi], self.suf[lo])  # exact if the range touches an edge
        todo = np.flatnonzero((lo % B != 0) & (hi % B != B - 1))
        idx, pos, end = todo, lo[todo].copy(), hi[todo]
        acc = self.values[pos]
        while idx.size:
            pos += 1
            more = pos <= end
            if not more.all():
                res[idx[~more]] = acc[~more]
                idx, pos, end, acc = idx[more], pos[more], end[more], acc[more]
            if idx.size:
                acc = self.op(acc, self.values[pos])
        return res
