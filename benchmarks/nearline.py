"""Nearline benchmark: pushes, reads as of now, and the in-process replica, side by side.

    python benchmarks/nearline.py [--entities 100000] [--reads 20000] [--seconds 3] [--redis URL]

Materializes N entities × 10 float features (the source of benchmarks/online.py) to SQLite
and to Redis (a private ``redis-server`` unless ``--redis`` names one), then, with
contenders interleaved so that machine noise hits them alike:

- reads of 1 entity × 10 features: ``ws.online_features`` of an entity without pushes and
  of one with pushes, and ``replica.get`` (target p99 < 10 µs), per store;
- pushes: one row (target p50 ≤ 1 ms), and batches of 1,000 rows sustained for
  ``--seconds`` (target ≥ 50,000 rows/s), with ``to="online"`` and ``to="both"``, once with
  both stores' replicas following in this process and once with none (a service that only
  pushes: the replicas' threads share the GIL with the pusher);
- the time from a push, and from a switch, to the replica serving it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from online import FEATURES, interleaved, pct, source_file, start_redis  # noqa: E402

END = datetime(2024, 1, 2)
TARGET_REPLICA_P99_US = 10.0
TARGET_PUSH_P50_MS = 1.0
TARGET_PUSH_ROWS_S = 50_000


def _row(user: int, value: float, at: datetime) -> dict[str, Any]:
    return {"user_id": user, "ts": at, **{f: value for f in FEATURES}}


def _batch(n: int, start: int, entities: int, at: datetime) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(start)
    frame = pd.DataFrame({"user_id": rng.integers(0, entities, n), "ts": pd.Timestamp(at)})
    for f in FEATURES:
        frame[f] = rng.random(n)
    return frame


def push_sections(workspaces: dict[str, Any], args: argparse.Namespace, view: str, during: str) -> None:
    """Single-row pushes and sustained 1,000-row batches into ``view`` in each store, ``to`` online
    and both."""
    print(f"\nsingle-row push, {during} (ms; interleaved)")
    counter = iter(range(10**9))
    contenders = {}
    for label, ws in workspaces.items():
        for to in ("online", "both"):
            contenders[f"{label} push to={to}"] = lambda ws=ws, to=to: ws.push(
                view, [_row(next(counter) % args.entities, 2.0, END + timedelta(hours=2))], to=to
            )
    times = interleaved(contenders, args.pushes)
    for name, values in times.items():
        p50 = pct(values, 0.5) / 1000
        ok = "ok" if p50 <= TARGET_PUSH_P50_MS else "MISSED"
        print(f"  {name:<30} p50 {p50:6.3f}   p99 {pct(values, 0.99) / 1000:6.3f}   {ok}")

    print(
        f"\nsustained pushes, batches of 1,000 rows for {args.seconds:g} s each (rows/s; CPU ms per "
        f"batch: the pushing thread / the whole process), {during}"
    )
    batches = [_batch(1000, i, args.entities, END + timedelta(hours=3)) for i in range(20)]
    for to in ("online", "both"):
        for label, ws in workspaces.items():
            rows, started, i = 0, time.perf_counter(), 0
            thread, process = time.thread_time(), time.process_time()
            while time.perf_counter() - started < args.seconds:
                rows += ws.push(view, batches[i % len(batches)], to=to).rows
                i += 1
            rate = rows / (time.perf_counter() - started)
            thread, process = time.thread_time() - thread, time.process_time() - process
            ok = "ok" if rate >= TARGET_PUSH_ROWS_S else "MISSED"
            print(
                f"  {label:<7} to={to:<7} {rate:10,.0f} rows/s   CPU {thread / i * 1000:5.2f} / "
                f"{process / i * 1000:5.2f} ms per batch   load {os.getloadavg()[0]:4.1f}   {ok}"
            )


def run(args: argparse.Namespace) -> None:
    import jupyter_features as jf

    workdir = Path(tempfile.mkdtemp(prefix="jf-nearline-bench-"))
    server = None
    redis_url = args.redis
    if redis_url is None:
        redis_url, server = start_redis(workdir)
    stores = {
        "sqlite": f"sqlite:///{workdir}/online.db",
        "redis": redis_url + ("&" if "?" in redis_url else "?") + "prefix=nearline:",
    }
    try:
        data = source_file(args.entities)
        workspaces = {}
        for label, url in stores.items():
            ws = jf.Workspace(workdir / f"ws-{label}", online_store=url)
            ws.register_source("events", data, timestamp="ts")
            ws.feature_view("v", "SELECT * FROM events", entity="user_id", timestamp="ts")
            ws.feature_view("p", "SELECT * FROM events", entity="user_id", timestamp="ts")
            ws.materialize(["v", "p"], end=END, progress=False)
            ws.push("v", [_row(7, 1.0, END + timedelta(hours=1))])  # user 7 has a pushed row
            workspaces[label] = ws
        print(
            f"{args.entities:,} entities × {len(FEATURES)} features; python {sys.version.split()[0]}, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start\n"
        )
        refs = [f"v:{f}" for f in FEATURES]
        replicas = {label: ws.online_replica(["v"]) for label, ws in workspaces.items()}

        print("reads, 1 entity × 10 features, as of now (µs; interleaved)")
        contenders = {}
        for label, ws in workspaces.items():
            rep = replicas[label]
            contenders[f"{label} online_features, entity without pushes"] = lambda ws=ws: ws.online_features(
                refs, [{"user_id": 42}]
            ).to_dict()
            contenders[f"{label} online_features, entity with a push"] = lambda ws=ws: ws.online_features(
                refs, [{"user_id": 7}]
            ).to_dict()
            contenders[f"{label} replica.get"] = lambda rep=rep: rep.get(refs, [{"user_id": 42}]).to_dict()
        times = interleaved(contenders, args.reads)
        for name, values in times.items():
            print(f"  {name:<52} p50 {pct(values, 0.5):8.1f}   p99 {pct(values, 0.99):8.1f}")
        for label in workspaces:
            p99 = pct(times[f"{label} replica.get"], 0.99)
            ok = "ok" if p99 < TARGET_REPLICA_P99_US else "MISSED"
            print(f"  {label}: replica p99 {p99:.1f} µs (target < {TARGET_REPLICA_P99_US:.0f} µs) {ok}")

        push_sections(workspaces, args, "v", "two replicas following in this process")
        for rep in replicas.values():
            rep.close()
        # another view of the same rows, so the journal of v (replayed by the switches below) is as before
        push_sections(workspaces, args, "p", "no replica in this process (a service that only pushes)")
        replicas = {label: ws.online_replica(["v"]) for label, ws in workspaces.items()}

        print("\nfrom a push / a switch to the replica serving it (ms)")
        for label, ws in workspaces.items():
            rep = replicas[label]
            lags = []
            for i in range(args.follow):
                value = 1000.0 + i
                ws.push("v", [_row(11, value, END + timedelta(hours=4, seconds=i))], to="online")
                pushed = time.perf_counter()
                while rep.get(["v:f0"], [{"user_id": 11}])["v__f0"] != [value]:
                    time.sleep(0.0001)
                lags.append((time.perf_counter() - pushed) * 1000)
            switches = []
            for _ in range(3):
                result = ws.materialize(["v"], end=END, progress=False)["v"]
                switched = time.perf_counter()
                while rep.get(["v:f0"], [{"user_id": 1}]).versions["v"] != result.version:
                    time.sleep(0.0005)
                switches.append((time.perf_counter() - switched) * 1000)
            print(
                f"  {label:<7} push → replica p50 {pct(lags, 0.5):6.2f}  p99 {pct(lags, 0.99):6.2f}   "
                f"switch → replica (reload of {args.entities:,} entities) median {sorted(switches)[1]:8.1f}"
            )
        for rep in replicas.values():
            rep.close()
        for ws in workspaces.values():
            ws.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--pushes", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--follow", type=int, default=100)
    parser.add_argument("--redis", help="an existing Redis (default: a private redis-server)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
