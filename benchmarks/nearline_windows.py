"""Windowed views online: 1 entity × 12 windowed features against a plain 10-feature read.

    python benchmarks/nearline_windows.py [--reads 5000] [--redis URL]

Two event shapes over one week before ``end``: sparse (20,000 keys, about 6 events per
key-week) and dense (200 keys, about 580 per key-week). The windowed view has windows 1h / 1d /
7d × count, sum, avg, max (12 features); the plain view is 10 float features of 100,000
entities in the same store. Both are materialized to SQLite and to Redis (a private
``redis-server`` unless ``--redis``), then read interleaved, one random entity per call, as of
``end`` + 30 minutes: ``ws.online_features`` of the windowed view, of the plain view, and
``replica.get`` of the windowed view; then again for the dense view after a push of about 5
events per key in those 30 minutes (``+pushed``). Target: windowed p50 ≤ 3× the plain read's,
per store.

Pushes into the dense windowed view on SQLite, side by side with pushes of the same rows into a
plain view of the same events, each in its own file (``SELECT k, ts, amount FROM ev``): one-row pushes interleaved
(p50), and batches of 1,000 rows of random entities within the hour after ``end`` sustained
for ``--seconds`` each (rows/s; the two views' batches alternate), each through ``ws.push`` and through the store's ``push`` of the
rows ``ws.push`` hands it (without the workspace's validation and, for the windowed view, the
projection of the pushed columns into its relation's rows). Target: ≥ 50k rows/s.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from online import FEATURES, interleaved, pct, source_file, start_redis  # noqa: E402

END = datetime(2024, 1, 8)
SHAPES = {"sparse": (20_000, 6), "dense": (200, 580)}  # keys, events per key-week
SQL = (
    "SELECT k, count(*) AS n, sum(amount) AS total, avg(amount) AS mean, max(amount) AS top "
    "FROM ev GROUP BY k"
)


def events_file(folder: Path, keys: int, per_week: int) -> Path:
    import duckdb

    path = folder / f"events_{keys}_{per_week}.parquet"
    duckdb.sql("SELECT setseed(0.7)")
    duckdb.sql(
        f"COPY (SELECT (random() * {keys})::BIGINT AS k, TIMESTAMP '{END - timedelta(days=7)}' + "
        f"to_microseconds((random() * 7 * 86400e6)::BIGINT) AS ts, round(random() * 100, 2) AS amount "
        f"FROM range({keys * per_week})) TO '{path}' (FORMAT parquet)"
    )
    return path


def _contenders(ws: Any, replica: Any, shape: str, keys: int, url: str, at: datetime) -> dict[str, Any]:
    rnd = random.Random(1)
    windowed = [f"w_{shape}:*"]
    return {
        "windowed": lambda: ws.online_features(windowed, [{"k": rnd.randrange(keys)}], at=at, store=url),
        "plain": lambda: ws.online_features(
            ["plain:*"], [{"user_id": rnd.randrange(100_000)}], at=at, store=url
        ),
        "replica": lambda: replica.get(windowed, [{"k": rnd.randrange(keys)}], at=at),
    }


def run(args: argparse.Namespace) -> None:
    import jupyter_features as jf

    workdir = Path(tempfile.mkdtemp(prefix="jf-windows-bench-"))
    server = None
    redis_url = args.redis
    if redis_url is None:
        redis_url, server = start_redis(workdir)
    try:
        print(f"load average at start: {os.getloadavg()}")
        ws = jf.Workspace(workdir / "ws")
        ws.register_source("plain_src", str(source_file(100_000)), timestamp="ts")
        ws.feature_view("plain", f"SELECT user_id, ts, {', '.join(FEATURES)} FROM plain_src", entity="user_id",
                        timestamp="ts")  # fmt: skip
        stores = {"SQLite": f"sqlite:///{workdir}/online.db", "Redis": redis_url}
        at = END + timedelta(minutes=30)
        rows = []
        for shape, (keys, per_week) in SHAPES.items():
            ws.register_source("ev", str(events_file(workdir, keys, per_week)), timestamp="ts")
            ws.feature_view(f"w_{shape}", SQL.replace("FROM ev", "FROM ev"), entity="k", timestamp="ts",
                            windows=["1h", "1d", "7d"])  # fmt: skip
            for store_name, url in stores.items():
                if args.skip_reads:
                    continue
                ws.materialize(["plain", f"w_{shape}"], store=url, end=END, progress=False)
                for label in [shape, *(["+pushed"] if shape == "dense" else [])]:
                    if label == "+pushed":  # about 5 pushed events per entity, before the reads' T
                        ws.push(f"w_{shape}", _batch(5 * keys, 7, keys, minutes=30), to="online", store=url)
                    replica = ws.online_replica([f"w_{shape}"], store=url)
                    times = interleaved(_contenders(ws, replica, shape, keys, url, at), args.reads)
                    replica.close()
                    p50 = {k: pct(v, 0.5) for k, v in times.items()}
                    p99 = {k: pct(v, 0.99) for k, v in times.items()}
                    rows.append((label, store_name, p50, p99, os.getloadavg()[0]))
                    print(
                        f"{label:7} {store_name:6} windowed p50 {p50['windowed']:.0f} µs "
                        f"(p99 {p99['windowed']:.0f}) | plain p50 {p50['plain']:.0f} µs | "
                        f"ratio {p50['windowed'] / p50['plain']:.2f}x (target ≤ 3x) | "
                        f"replica p50 {p50['replica']:.1f} µs (p99 {p99['replica']:.1f}) | "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        pushes(ws, workdir, args)
    finally:
        if server is not None:
            server.terminate()
            server.wait()


def _batch(n: int, seed: int, keys: int, minutes: int = 60) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    at = pd.Timestamp(END)
    return pd.DataFrame(
        {
            "k": rng.integers(0, keys, n),
            "ts": at + pd.to_timedelta(rng.integers(1, minutes * 60_000_000, n), unit="us"),
            "amount": rng.random(n).round(2),
        }
    )


def pushes(ws: Any, workdir: Path, args: argparse.Namespace) -> None:
    """One-row pushes (p50) and sustained 1,000-row batches (rows/s), windowed against plain,
    each view in its own SQLite file (each pays its own WAL checkpoints)."""
    keys = SHAPES["dense"][0]
    ws.register_source("ev_plain", str(events_file(workdir, *SHAPES["dense"])), timestamp="ts")
    ws.feature_view("p_dense", "SELECT k, ts, amount FROM ev_plain", entity="k", timestamp="ts")
    views = {"windowed": "w_dense", "plain": "p_dense"}
    stores, pushers = {}, {}
    handed: dict[str, list[Any]] = {}
    for label, view in views.items():
        url = f"sqlite:///{workdir}/push-{label}.db"
        ws.materialize([view], store=url, end=END, progress=False)
        store = stores[view] = ws.online_store(url)
        push = pushers[view] = store.push

        def record(view: str, rows: Any, push: Any = push, **options: Any) -> Any:
            handed.setdefault(view, []).append(rows)
            return push(view, rows, **options)

        store.push = record  # the rows ws.push hands the store, pushed again below without it
    batches = [_batch(1000, i, keys) for i in range(20)]
    singles = [_batch(1, 100 + i, keys) for i in range(50)]
    for view in views.values():
        for frame in [*batches, *singles]:
            ws.push(view, frame, to="online", store=stores[view])
        stores[view].push = pushers[view]
    n = iter(range(10**9))
    contenders = {}
    for label, view in views.items():
        contenders[f"{label} ws.push"] = lambda v=view: ws.push(
            v, singles[next(n) % 50], to="online", store=stores[v]
        )
        contenders[f"{label} store.push"] = lambda v=view: pushers[v](v, handed[v][20 + next(n) % 50])
    times = interleaved(contenders, args.pushes)
    print(f"\npushes into the dense view, SQLite (load {os.getloadavg()[0]:.1f})")
    for name, values in times.items():
        print(
            f"  1 row   {name:<20} p50 {pct(values, 0.5):8.0f} µs   p99 {pct(values, 0.99):8.0f} µs",
            flush=True,
        )
    for level in ("ws.push", "store.push"):  # the two views' batches alternate: the same load for both
        spent = dict.fromkeys(views.values(), 0.0)
        done = dict.fromkeys(views.values(), 0)
        started, i = time.perf_counter(), 0
        while time.perf_counter() - started < 2 * args.seconds:
            for view in views.values():
                t = time.perf_counter()
                if level == "ws.push":
                    done[view] += ws.push(view, batches[i % 20], to="online", store=stores[view]).rows
                else:
                    done[view] += pushers[view](view, handed[view][i % 20]).rows
                spent[view] += time.perf_counter() - t
            i += 1
        for label, view in views.items():
            print(
                f"  1,000 rows {label:<8} {level:<10} {spent[view] / i * 1000:6.1f} ms a batch, "
                f"{done[view] / spent[view]:9,.0f} rows/s (target ≥ 50k) | load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--pushes", type=int, default=1000, help="one-row pushes per contender")
    parser.add_argument("--seconds", type=float, default=5.0, help="of 1,000-row batches per contender")
    parser.add_argument("--skip-reads", action="store_true", help="only the pushes")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
