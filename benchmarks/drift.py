"""jf.drift against a loop over scipy's ks_2samp and numpy histograms, on the same two frames.

    python benchmarks/drift.py                       # 1M rows a side, 16 numbers + 4 strings
    python benchmarks/drift.py --rows 100000 --repeat 1

Runs are interleaved (one of each per round) so that load from elsewhere hits both alike;
the best wall time of each is reported with the ratio, and both PSI columns are compared.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd


def frames(rows: int, numbers: int, strings: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    cols: dict[str, np.ndarray] = {f"x{i}": rng.normal(size=rows) for i in range(numbers)}
    cols.update({f"c{i}": rng.choice(list("abcdef"), rows) for i in range(strings)})
    reference = pd.DataFrame(cols)
    current = pd.DataFrame({k: v + 0.05 if k.startswith("x") else v for k, v in cols.items()})
    current = current.sample(frac=1, random_state=1).reset_index(drop=True)
    current.loc[::10, "x0"] = np.nan
    return reference, current


def textbook(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """What one writes by hand: deciles and np.histogram for PSI, scipy's ks_2samp for KS."""
    from scipy.stats import ks_2samp

    out = {}
    for col in reference.columns:
        r, c = reference[col].dropna(), current[col].dropna()
        if col.startswith("x"):
            edges = np.unique(np.quantile(r, np.linspace(0, 1, 11)))
            rc, cc = np.histogram(r, edges)[0], np.histogram(c, edges)[0]
            ks_2samp(r, c)
        else:
            counts = pd.concat([r.value_counts(), c.value_counts()], axis=1).fillna(0).to_numpy().T
            rc, cc = counts
        rs, cs = np.maximum(rc / rc.sum(), 1e-4), np.maximum(cc / cc.sum(), 1e-4)
        out[col] = float(np.sum((cs - rs) * np.log(cs / rs)))
    return out


def main() -> None:
    import jupyter_features as jf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--numbers", type=int, default=16)
    parser.add_argument("--strings", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reference, current = frames(args.rows, args.numbers, args.strings)
    best = {"jf.drift": float("inf"), "textbook": float("inf")}
    for _ in range(args.repeat):
        started = time.perf_counter()
        report = jf.drift(reference, current, progress=False)
        best["jf.drift"] = min(best["jf.drift"], time.perf_counter() - started)
        started = time.perf_counter()
        by_hand = textbook(reference, current)
        best["textbook"] = min(best["textbook"], time.perf_counter() - started)
    print(
        f"{args.rows:,} rows a side, {args.numbers} numbers + {args.strings} strings; load {os.getloadavg()[0]:.1f}"
    )
    for name, seconds in best.items():
        print(f"  {name:9} {seconds:6.2f} s")
    print(f"  ratio jf.drift / textbook: {best['jf.drift'] / best['textbook']:.2f}")
    psi = report.table.set_index("feature")["psi"]
    gap = max(abs(psi[c] - v) for c, v in by_hand.items())
    print(f"  largest PSI difference (bins differ at the edges): {gap:.4f}")


if __name__ == "__main__":
    main()
