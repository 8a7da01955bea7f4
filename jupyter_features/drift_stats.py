"""How far apart two distributions of one feature are: PSI, the two-sample KS statistic, chi-square.

Plain numpy over values and bin counts (scipy only for p-values), so the same functions
compare a reference DataFrame with a current one, and a current frame with the histogram
the registry recorded at export. Every result is deterministic: no sampling, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EPSILON",
    "OTHER",
    "Comparison",
    "psi",
    "ks_statistic",
    "ks_p_value",
    "chi_square",
    "quantile_edges",
    "compare_numeric",
    "compare_categories",
    "compare_histogram",
    "compare_top_values",
]

#: The share PSI gives an empty bin, so that ln(share) stays finite (the customary 0.0001).
EPSILON = 1e-4
#: The bin of every category not shown on its own.
OTHER = "(other)"

_NAN = float("nan")
_EXACT_KS_P_UP_TO = 10_000  # effective sample size up to which the KS p-value uses kstwo


@dataclass(frozen=True)
class Comparison:
    """Two distributions of one feature over shared bins, and the statistics between them.

    ``reference`` and ``current`` are counts per bin (labelled by ``bins``). ``ks`` is exact
    for values compared directly and a lower bound (the largest gap between the binned
    CDFs) for a recorded histogram, where ``ks_exact`` is False and ``ks_p_value`` is NaN.
    """

    kind: str  # numeric | categorical
    bins: list[str]
    reference: np.ndarray
    current: np.ndarray
    psi: float
    ks: float = _NAN
    ks_p_value: float = _NAN
    chi2: float = _NAN
    chi2_p_value: float = _NAN
    ks_exact: bool = True

    @property
    def n_reference(self) -> int:
        return int(self.reference.sum())

    @property
    def n_current(self) -> int:
        return int(self.current.sum())


def _shares(counts: np.ndarray) -> np.ndarray:
    shares = counts / counts.sum()
    return np.where(shares == 0, EPSILON, shares)


def psi(
    reference_counts: Sequence[float] | np.ndarray, current_counts: Sequence[float] | np.ndarray
) -> float:
    """Population stability index over shared bins: Σ (c − r) · ln(c / r) over the bins' shares,
    an empty bin counting as a share of ``EPSILON``. NaN when either side has no values."""
    r = np.asarray(reference_counts, dtype=float)
    c = np.asarray(current_counts, dtype=float)
    if r.sum() <= 0 or c.sum() <= 0:
        return _NAN
    rs, cs = _shares(r), _shares(c)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


def _distinct(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct value of a sorted array once, with how many values are <= it."""
    last = np.ones(len(sorted_values), dtype=bool)
    last[:-1] = sorted_values[1:] != sorted_values[:-1]
    return sorted_values[last], np.flatnonzero(last) + 1


def _ks_sorted(r: np.ndarray, c: np.ndarray) -> float:
    """max |F_r(x) − F_c(x)| over every value of both samples (right-continuous ECDFs)."""
    n, m = len(r), len(c)
    if not n or not m:
        return _NAN
    r_values, r_through = _distinct(r)
    c_values, c_through = _distinct(c)
    gap_at_r = r_through / n - np.searchsorted(c, r_values, side="right") / m
    gap_at_c = np.searchsorted(r, c_values, side="right") / n - c_through / m
    return float(max(np.abs(gap_at_r).max(), np.abs(gap_at_c).max()))


def ks_statistic(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> float:
    """The two-sample Kolmogorov–Smirnov statistic: the largest distance between the ECDFs."""
    return _ks_sorted(np.sort(np.asarray(reference, dtype=float)), np.sort(np.asarray(current, dtype=float)))


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """Two-sided p-value of a KS statistic of samples of ``n`` and ``m`` values: scipy's
    asymptotic method (the one-sample distribution at n·m / (n + m)) up to 10,000, its limit,
    the Kolmogorov distribution, beyond (within 1% there, and fast at any size)."""
    if not n or not m or math.isnan(statistic):
        return _NAN
    from scipy.stats import kstwo, kstwobign

    effective = max(1.0, round(n * m / (n + m)))
    if effective <= _EXACT_KS_P_UP_TO:
        p = kstwo.sf(statistic, effective)
    else:
        p = kstwobign.sf(statistic * math.sqrt(effective))
    return float(np.clip(p, 0.0, 1.0))


def chi_square(
    reference_counts: Sequence[float] | np.ndarray, current_counts: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """Pearson's chi-square test that both counts come from one distribution (a 2 × k
    contingency table, bins empty on both sides left out): (statistic, p-value)."""
    table = np.vstack([np.asarray(reference_counts, dtype=float), np.asarray(current_counts, dtype=float)])
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if (rows <= 0).any():
        return _NAN, _NAN
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = np.outer(rows, table.sum(axis=0)) / rows.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    from scipy.stats import chi2

    return statistic, float(chi2.sf(statistic, table.shape[1] - 1))


def quantile_edges(sorted_values: np.ndarray, bins: int) -> np.ndarray:
    """The distinct 0, 1/bins, …, 1 quantiles of sorted finite values, each the smallest value
    with at least that share of the values at or below it ([0.0] when there are none)."""
    n = len(sorted_values)
    if not n:
        return np.array([0.0])
    i = np.arange(bins + 1)
    return np.unique(sorted_values[np.maximum((i * n + bins - 1) // bins - 1, 0)])


def _quantile_counts(sorted_values: np.ndarray, edges: np.ndarray, uppers: np.ndarray) -> np.ndarray:
    """Counts below edges[0], then in bins closed on the right at each of ``uppers``, then above."""
    below = np.searchsorted(sorted_values, edges[0], side="left")
    cumulative = np.searchsorted(sorted_values, uppers, side="right")
    return np.diff(np.concatenate(([0, below], cumulative, [len(sorted_values)])))


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}g}"


def _unique_labels(make: Callable[[int], list[str]], count: int) -> list[str]:
    """Labels from ``make(digits)`` with as many significant digits as keep them apart."""
    labels: list[str] = []
    for digits in (4, 6, 9, 12, 17):
        labels = make(digits)
        if len(set(labels)) == count:
            return labels
    return [f"{i}: {label}" for i, label in enumerate(labels)]


def _quantile_labels(edges: np.ndarray, uppers: np.ndarray) -> list[str]:
    def make(digits: int) -> list[str]:
        e = [_number(float(v), digits) for v in edges]
        u = [_number(float(v), digits) for v in uppers]
        first = f"= {e[0]}" if uppers[0] == edges[0] else f"[{e[0]}, {u[0]}]"
        rest = [f"({a}, {b}]" for a, b in zip(u[:-1], u[1:], strict=True)]
        return [f"< {e[0]}", first, *rest, f"> {u[-1]}"]

    return _unique_labels(make, len(uppers) + 2)


def compare_numeric(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> Comparison:
    """Numbers (no NaN; infinities allowed) compared over ``bins`` quantile bins of the reference's
    finite values — (q0, q1], …, with [q0, q1] first unless the minimum repeats (a point mass
    such as zero), which then gets a bin of its own — plus one bin on each side for values
    outside the reference's range. KS is exact."""
    r = np.sort(np.asarray(reference, dtype=float))
    c = np.sort(np.asarray(current, dtype=float))
    finite = r[np.isfinite(r)]
    if not finite.size:  # no reference values to bin by: the current ones
        finite = c[np.isfinite(c)]
    edges = quantile_edges(finite, bins)
    repeated_minimum = len(finite) > 1 and finite[1] == finite[0]
    uppers = edges if repeated_minimum or len(edges) == 1 else edges[1:]
    rc, cc = _quantile_counts(r, edges, uppers), _quantile_counts(c, edges, uppers)
    ks = _ks_sorted(r, c)
    return Comparison(
        kind="numeric", bins=_quantile_labels(edges, uppers), reference=rc, current=cc, psi=psi(rc, cc),
        ks=ks, ks_p_value=ks_p_value(ks, len(r), len(c)),
    )  # fmt: skip


def _other_label(labels: Sequence[str]) -> str:
    other = OTHER
    while other in labels:
        other = f"({other})"
    return other


def compare_categories(
    reference: Mapping[str, int], current: Mapping[str, int], max_categories: int = 20
) -> Comparison:
    """Category counts compared: the ``max_categories`` categories with the largest share on
    either side each get a bin, every other category shares one ``OTHER`` bin."""
    nr, nc = sum(reference.values()), sum(current.values())

    def weight(label: str) -> float:
        return max(reference.get(label, 0) / nr if nr else 0.0, current.get(label, 0) / nc if nc else 0.0)

    labels = sorted(set(reference) | set(current), key=lambda k: (-weight(k), k))
    kept, rest = labels[:max_categories], labels[max_categories:]
    rc = [reference.get(k, 0) for k in kept]
    cc = [current.get(k, 0) for k in kept]
    if rest:
        kept = [*kept, _other_label(kept)]
        rc.append(sum(reference.get(k, 0) for k in rest))
        cc.append(sum(current.get(k, 0) for k in rest))
    return _categorical(kept, np.asarray(rc, dtype=np.int64), np.asarray(cc, dtype=np.int64))


def _categorical(labels: list[str], rc: np.ndarray, cc: np.ndarray) -> Comparison:
    chi2, p = chi_square(rc, cc)
    return Comparison(
        kind="categorical", bins=labels, reference=rc, current=cc, psi=psi(rc, cc), chi2=chi2, chi2_p_value=p
    )


def compare_histogram(edges: np.ndarray, reference_counts: np.ndarray, current: np.ndarray) -> Comparison:
    """Numbers (no NaN) compared with a recorded histogram: bins [e0, e1), …, [e_n-1, e_n] of
    ``edges``, plus one bin on each side for values outside them. KS is the largest gap between
    the binned CDFs: a lower bound of the exact statistic, without a p-value."""
    c = np.sort(np.asarray(current, dtype=float))
    below = np.searchsorted(c, edges[:-1], side="left")
    through_last = np.searchsorted(c, edges[-1], side="right")
    cc = np.diff(np.concatenate(([0], below, [through_last, len(c)])))
    rc = np.concatenate(([0], np.asarray(reference_counts, dtype=np.int64), [0]))
    ks = _NAN
    if rc.sum() and cc.sum():
        ks = float(np.abs(np.cumsum(rc) / rc.sum() - np.cumsum(cc) / cc.sum()).max())

    def make(digits: int) -> list[str]:
        e = [_number(float(v), digits) for v in edges]
        inner = [f"[{a}, {b})" for a, b in zip(e[:-2], e[1:-1], strict=True)] + [f"[{e[-2]}, {e[-1]}]"]
        return [f"< {e[0]}", *inner, f"> {e[-1]}"]

    return Comparison(
        kind="numeric", bins=_unique_labels(make, len(edges) + 1), reference=rc, current=cc,
        psi=psi(rc, cc), ks=ks, ks_exact=False,
    )  # fmt: skip


def compare_top_values(top: Sequence[tuple[str, int]], other: int, current: Mapping[str, int]) -> Comparison:
    """Category counts compared with recorded top values and the count of every other value."""
    labels = list(dict.fromkeys(label for label, _ in top))
    recorded: dict[str, int] = {}
    for label, n in top:
        recorded[label] = recorded.get(label, 0) + n
    rc = [recorded[k] for k in labels]
    cc = [current.get(k, 0) for k in labels]
    labels.append(_other_label(labels))
    rc.append(other)
    cc.append(sum(current.values()) - sum(cc))
    return _categorical(labels, np.asarray(rc, dtype=np.int64), np.asarray(cc, dtype=np.int64))
