"""Window aggregation benchmark: features at each label's own time vs a raw DuckDB ASOF JOIN.

    python benchmarks/windows.py [--repeat 3] [--shapes sparse dense] [--quick]

Two shapes of generated data (cached parquet under benchmarks/.data/): 1M labels and 10M
events over 120 days, on 100k keys (sparse: about 6 events per key-week) or 1k keys (dense:
about 580 per key-week). Contenders, each run in a fresh process so its peak RSS is its own:

- ``ours``: the labels read with pandas into the label table the point-in-time join uses, then
  ``window_features`` for ``SELECT key, count(*), sum(amount), avg(amount), max(amount) FROM
  events GROUP BY key`` with windows 1h, 1d and 7d (12 features), returned with the label
  columns as a pandas DataFrame in label order;
- ``workspace``: the same, definition to frame through the public API: ``ws.register_source`` of
  the events file, ``ws.feature_view(..., windows=["1h", "1d", "7d"])``, ``pd.read_parquet`` of
  the labels and ``ws.training_frame(labels, ["bench:*"], ...)``;
- ``raw``: one plain ``ASOF LEFT JOIN`` of the same parquet files in DuckDB (a single lookup, no
  windows), ``.df()`` — the reference the targets are ratios of;
- ``frames``: the same 12 features with DuckDB window frames over the union of labels and
  events (``RANGE BETWEEN <w - 1us> PRECEDING AND CURRENT ROW``), for comparison.

Targets: sparse within 2x of the raw ASOF JOIN's time, dense within 3x, peak memory within 2x.
The run ends with a check that ours, the workspace's frame and the frames agree on every value
(round 1's outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
MARK = "@@RESULT "
SPAN_SECONDS = 120 * 86400
START = "2024-01-01 00:00:00"
WINDOWS = {"1h": 3600, "1d": 86400, "7d": 7 * 86400}
TARGETS = {"sparse": 2.0, "dense": 3.0}
TARGET_MEMORY = 2.0
SQL = (
    "SELECT key, count(*) AS n, sum(amount) AS s, avg(amount) AS a, max(amount) AS m FROM events GROUP BY key"
)


def shapes(quick: bool) -> dict[str, tuple[int, int, int]]:
    """shape → (labels, events, keys)."""
    if quick:
        return {"sparse": (100_000, 1_000_000, 10_000), "dense": (100_000, 1_000_000, 100)}
    return {"sparse": (1_000_000, 10_000_000, 100_000), "dense": (1_000_000, 10_000_000, 1_000)}


def generate(labels: int, events: int, keys: int) -> tuple[Path, Path]:
    """Write the parquet files unless cached: events at pseudo-random seconds, labels at
    pseudo-random keys and seconds of the same 120 days; amounts with two decimals."""
    import duckdb

    DATA.mkdir(parents=True, exist_ok=True)
    events_path = DATA / f"wevents_{events}_{keys}.parquet"
    labels_path = DATA / f"wlabels_{labels}_{keys}.parquet"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if not events_path.exists():
        print(f"generating {events:,} events on {keys:,} keys ...", flush=True)
        tmp = events_path.with_suffix(".tmp")
        con.execute(f"""
            COPY (SELECT CAST(hash(n, 1) % {keys} AS BIGINT) AS key,
                         TIMESTAMP '{START}' + to_seconds(CAST(hash(n, 2) % {SPAN_SECONDS} AS BIGINT)) AS ts,
                         round((hash(n, 3) % 100000) / 100.0, 2) AS amount
                  FROM range({events}) r(n)) TO '{tmp}' (FORMAT parquet)
        """)
        tmp.rename(events_path)
    if not labels_path.exists():
        print(f"generating {labels:,} labels ...", flush=True)
        tmp = labels_path.with_suffix(".tmp")
        con.execute(f"""
            COPY (SELECT n AS label_id, CAST(hash(n, 11) % {keys} AS BIGINT) AS key,
                         TIMESTAMP '{START}' + to_seconds(CAST(hash(n, 12) % {SPAN_SECONDS} AS BIGINT)) AS ts
                  FROM range({labels}) r(n)) TO '{tmp}' (FORMAT parquet)
        """)
        tmp.rename(labels_path)
    con.close()
    return labels_path, events_path


# -- contenders (each runs in its own process) ------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ours(labels_path: Path, events_path: Path) -> tuple[Any, dict[str, float]]:
    import duckdb
    import numpy as np
    import pandas as pd

    from jupyter_features.engines.duckdb.windows import window_features
    from jupyter_features.sqltext import LABEL_TS, LABELS, ROW
    from jupyter_features.windows import window_plan

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{events_path}')")
    plan = window_plan(SQL, ["key"], "ts", list(WINDOWS), owner="feature view 'bench'")
    t0, c0 = time.perf_counter(), cpu_seconds()
    labels = pd.read_parquet(labels_path)
    frame = pd.DataFrame({"key": labels["key"].array, LABEL_TS: labels["ts"].to_numpy()})
    frame[ROW] = np.arange(len(labels), dtype=np.int64)
    con.register(LABELS, frame)
    features = window_features(con, plan)
    out = pd.concat([labels, features.set_axis(labels.index)], axis=1)
    return out, {"seconds": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0}


def run_workspace(labels_path: Path, events_path: Path) -> tuple[Any, dict[str, float]]:
    """Definition to frame as a user writes it: the events registered as a source, the windowed
    view defined (parsed, checked, typed in the sandbox), then ``ws.training_frame``."""
    import pandas as pd

    import jupyter_features as jf

    folder = tempfile.mkdtemp(prefix="jf-windows-bench-")
    t0, c0 = time.perf_counter(), cpu_seconds()
    ws = jf.Workspace(folder)
    ws.register_source("events", events_path, timestamp="ts")
    ws.feature_view("bench", SQL, entity="key", timestamp="ts", windows=list(WINDOWS))
    labels = pd.read_parquet(labels_path)
    out = ws.training_frame(labels, ["bench:*"], timestamp="ts", plain_names=True)
    return out, {"seconds": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0}


def run_raw(labels_path: Path, events_path: Path) -> tuple[Any, dict[str, float]]:
    import duckdb
    import pandas  # noqa: F401  (imported up front, as in the other contenders)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.sql("SELECT 1 AS warm").df()
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = con.sql(f"""
        SELECT l.*, e.amount FROM read_parquet('{labels_path}') l
        ASOF LEFT JOIN read_parquet('{events_path}') e ON l.key = e.key AND l.ts >= e.ts
    """).df()
    return out, {"seconds": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0}


def run_frames(labels_path: Path, events_path: Path) -> tuple[Any, dict[str, float]]:
    """Window frames over the union of labels (null amounts) and events, labels after events at
    equal times; a frame of w - 1us is (t - w, t] on microsecond times."""
    import duckdb
    import pandas  # noqa: F401

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.sql("SELECT 1 AS warm").df()
    t0, c0 = time.perf_counter(), cpu_seconds()
    cols = []
    for name, seconds in WINDOWS.items():
        frame = (
            f"OVER (PARTITION BY key ORDER BY ts RANGE BETWEEN "
            f"INTERVAL {seconds * 1_000_000 - 1} MICROSECONDS PRECEDING AND CURRENT ROW)"
        )
        cols += [
            f"count(amount) {frame} AS n_{name}", f"sum(amount) {frame} AS s_{name}",
            f"avg(amount) {frame} AS a_{name}", f"max(amount) {frame} AS m_{name}",
        ]  # fmt: skip
    names = ", ".join(c.split(" AS ")[-1] for c in cols)
    out = con.sql(f"""
        SELECT label_id, key, ts, {names} FROM (
          SELECT label_id, key, ts, is_label, {", ".join(cols)} FROM (
            SELECT label_id, key, ts, true AS is_label, NULL::DOUBLE AS amount FROM read_parquet('{labels_path}')
            UNION ALL SELECT NULL, key, ts, false, amount FROM read_parquet('{events_path}')))
        WHERE is_label ORDER BY label_id
    """).df()
    return out, {"seconds": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0}


CONTENDERS = {"workspace": run_workspace, "ours": run_ours, "raw": run_raw, "frames": run_frames}


def contender_main(name: str, labels_path: Path, events_path: Path, save: Path | None) -> None:
    out, timing = CONTENDERS[name](labels_path, events_path)
    result = {"rows": len(out), "peak_rss_mb": peak_rss_mb(), **timing}
    if save is not None:  # after measuring: writing it is not part of the contender
        out.to_parquet(save)
    print(MARK + json.dumps(result), flush=True)


# -- driver -----------------------------------------------------------------------------------
def run_contender(name: str, paths: tuple[Path, Path], save: Path | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--contender", name, str(paths[0]), str(paths[1])]
    if save is not None:
        cmd.append(str(save))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(MARK) :])
    return result


def compare(ours: Path, frames: Path) -> dict[str, int]:
    """Rows where ours and the window frames disagree (counts and max exactly, sums 1e-9 relative),
    and rows of ours out of label order."""
    import duckdb

    con = duckdb.connect()
    checks = []
    for w in WINDOWS:
        checks += [
            f"o.n_{w} IS DISTINCT FROM f.n_{w}", f"o.m_{w} IS DISTINCT FROM f.m_{w}",
            f"(o.s_{w} IS NULL) <> (f.s_{w} IS NULL) OR abs(o.s_{w} - f.s_{w}) > 1e-9 * abs(f.s_{w})",
            f"(o.a_{w} IS NULL) <> (f.a_{w} IS NULL) OR abs(o.a_{w} - f.a_{w}) > 1e-9 * abs(f.a_{w})",
        ]  # fmt: skip
    row = con.execute(f"""
        SELECT count(*) FILTER (WHERE {" OR ".join(f"({c})" for c in checks)}),
               count(*) FILTER (WHERE o.label_id IS DISTINCT FROM o.r)
        FROM (SELECT *, row_number() OVER () - 1 AS r FROM read_parquet('{ours}')) o
        JOIN read_parquet('{frames}') f USING (label_id)
    """).fetchone()
    return {"mismatched_rows": int(row[0]) if row else -1, "out_of_order": int(row[1]) if row else -1}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--repeat", type=int, default=3, help="rounds of one run per contender; the best time counts"
    )
    p.add_argument("--shapes", nargs="*", default=["sparse", "dense"], choices=["sparse", "dense"])
    p.add_argument("--only", nargs="*", help="run only these contenders")
    p.add_argument("--quick", action="store_true", help="100k labels x 1M events: a smoke run")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    names = [n for n in CONTENDERS if not args.only or n in args.only]
    sizes = shapes(args.quick)
    out_dir = DATA / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for shape in args.shapes:
        paths = generate(*sizes[shape])
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        load_before = os.getloadavg()[0]
        for i in range(args.repeat):  # rounds: a burst of load from elsewhere hits every contender
            for name in names:
                save = out_dir / f"windows-{shape}-{name}.parquet" if i == 0 and name != "raw" else None
                run = run_contender(name, paths, save)
                runs[name].append(run)
                print(
                    f"  {shape:6} round {i + 1}  {name:9} {run['seconds']:7.2f} s  {run['peak_rss_mb']:7.0f} MB"
                    f"  (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
        best = {
            name: {
                **min(done, key=lambda r: r["seconds"]),
                "runs_s": [round(r["seconds"], 2) for r in done],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in done),
            }
            for name, done in runs.items()
        }
        best["load"] = {"before": load_before, "after": os.getloadavg()[0]}
        for mine in ("ours", "workspace"):
            if mine in names and "frames" in names:
                best[f"checks_{mine}"] = compare(
                    out_dir / f"windows-{shape}-{mine}.parquet", out_dir / f"windows-{shape}-frames.parquet"
                )
        results[shape] = best
    report(args, sizes, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(args: argparse.Namespace, sizes: dict[str, tuple[int, int, int]], results: dict[str, Any]) -> None:
    print(
        f"\nwindows {', '.join(WINDOWS)} x count, sum, avg, max (12 features); best of {args.repeat} rounds, "
        "each run in a fresh process;\nCPU s = user + system time of the best run; peak RSS = max over the runs\n"
    )
    print(
        f"{'shape':7} {'contender':9} {'best s':>7} {'CPU s':>7} {'peak MB':>8} {'x raw':>6} {'mem x raw':>9}   runs (s)"
    )
    for shape, best in results.items():
        raw = best.get("raw")
        for name in CONTENDERS:
            r = best.get(name)
            if not r:
                continue
            ratio = f"{r['seconds'] / raw['seconds']:6.2f}" if raw else ""
            mem = f"{r['peak_rss_mb'] / raw['peak_rss_mb']:9.2f}" if raw else ""
            print(
                f"{shape:7} {name:9} {r['seconds']:7.2f} {r['cpu_s']:7.2f} {r['peak_rss_mb']:8.0f} {ratio:>6} {mem:>9}"
                f"   {r['runs_s']}"
            )
    print()
    for shape, best in results.items():
        labels, events, keys = sizes[shape]
        per_week = events / keys / (SPAN_SECONDS / (7 * 86400))
        print(f"{shape}: {labels:,} labels x {events:,} events, {keys:,} keys ({per_week:.0f} events per key-week); "
              f"load {best['load']['before']:.1f} -> {best['load']['after']:.1f}")  # fmt: skip
        raw = best.get("raw")
        for mine in ("workspace", "ours"):
            if best.get(mine) and raw:
                report_ratios(mine, best[mine], raw, shape, labels)
        ours = best.get("ours")
        if ours and best.get("frames"):
            print(f"  window frames / ours time:   {best['frames']['seconds'] / ours['seconds']:5.2f}x")
        for mine in ("ours", "workspace"):
            if f"checks_{mine}" in best:
                c = best[f"checks_{mine}"]
                print(
                    f"  {mine} vs window frames: {c['mismatched_rows']} rows differ; "
                    f"{c['out_of_order']} rows out of label order"
                )


def report_ratios(mine: str, ours: dict[str, Any], raw: dict[str, Any], shape: str, labels: int) -> None:
    speed, memory = ours["seconds"] / raw["seconds"], ours["peak_rss_mb"] / raw["peak_rss_mb"]
    target = TARGETS[shape]
    print(f"  {mine} / raw ASOF time:        {speed:5.2f}x  (target <= {target}x) "
          f"{'ok' if speed <= target else 'MISSED'}")  # fmt: skip
    print(f"  {mine} / raw ASOF peak memory: {memory:5.2f}x  (target <= {TARGET_MEMORY}x) "
          f"{'ok' if memory <= TARGET_MEMORY else 'MISSED'}")  # fmt: skip
    ok = "ok" if ours["rows"] == labels else "WRONG"
    print(f"  {mine} rows out == label rows: {ours['rows']:,} {ok}")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--contender":
        contender_main(
            sys.argv[2],
            Path(sys.argv[3]),
            Path(sys.argv[4]),
            Path(sys.argv[5]) if len(sys.argv) > 5 else None,
        )
    else:
        sys.exit(main())
