"""Health check benchmark: ``ws.check_online`` side by side with the materialization it checks.

    python benchmarks/health.py [--entities 1000000] [--repeat 3] [--redis URL]

Builds (once, cached under benchmarks/.data/, shared with online.py) a source of N entities ×
10 float features, then, round after round, materializes it to SQLite and to Redis and checks
each store with ``ws.check_online`` — every value of every entity: the offline recompute
(``engine.latest``), ``store.scan`` and the DuckDB comparison — so that machine noise hits every
contender alike. It reports the best and median wall time of each, the CPU time it used (this
process's threads and the Redis server's), the check's parts, and the check's time as a ratio
of the materialization's (target: a check of 1M entities × 10 features under 15 s).
Redis runs as a private ``redis-server`` on a free port unless ``--redis`` names one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from online import END, FEATURES, source_file, start_redis  # noqa: E402

TARGET_CHECK_S = 15.0


def _parts(ws: Any, url: str) -> dict[str, float]:
    """The check's parts, timed one by one: recompute, scan, compare."""
    from jupyter_features.featureview import ViewJoin
    from jupyter_features.online import canonical_rows
    from jupyter_features.online_checks import compare

    store = ws.online_store(url)
    view = ws.get_view("v")
    out = {}
    t = time.perf_counter()
    table = store.current("v")
    expected = canonical_rows(ws.engine.latest(ViewJoin.of(view), table.end), table)
    out["recompute"] = time.perf_counter() - t
    t = time.perf_counter()
    _, served = store.scan("v")
    served_rows = served.read_all()
    out["scan"] = time.perf_counter() - t
    t = time.perf_counter()
    compare(expected, served_rows, table)
    out["compare"] = time.perf_counter() - t
    return out


def run(args: argparse.Namespace) -> None:
    import jupyter_features as jf

    workdir = Path(tempfile.mkdtemp(prefix="jf-health-bench-"))
    server = None
    redis_url = args.redis
    if redis_url is None:
        redis_url, server = start_redis(workdir)
    stores = {
        "sqlite": f"sqlite:///{workdir}/online.db",
        "redis": redis_url + ("&" if "?" in redis_url else "?") + "prefix=bench_health:",
    }
    try:
        data = source_file(args.entities)
        ws = jf.Workspace(workdir / "ws", online_store=stores["sqlite"])
        ws.register_source("events", data, timestamp="ts")
        ws.feature_view("v", "SELECT * FROM events", entity="user_id", timestamp="ts")
        print(f"{args.entities:,} entities × {len(FEATURES)} features; python {sys.version.split()[0]}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start\n")  # fmt: skip
        import redis

        server_client = redis.Redis.from_url(redis_url)

        def cpu() -> float:
            """CPU seconds of this process (all its threads) and of the Redis server so far."""
            info = server_client.info("cpu")
            return time.process_time() + float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

        times: dict[str, list[float]] = {}
        cpus: dict[str, list[float]] = {}
        for round_ in range(args.repeat):
            for name, url in stores.items():
                for what in ("materialize", "check"):
                    t, c = time.perf_counter(), cpu()
                    if what == "materialize":
                        ws.materialize(["v"], store=url, end=END, progress=False)
                    else:
                        report = ws.check_online(["v"], store=url, progress=False)
                        assert report.ok and report.checks[0].entities == args.entities, report.lines()
                    times.setdefault(f"{what} {name}", []).append(time.perf_counter() - t)
                    cpus.setdefault(f"{what} {name}", []).append(cpu() - c)
            print(f"round {round_ + 1} (load {os.getloadavg()[0]:.1f}): "
                  + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))  # fmt: skip
        print()
        print(f"{'':24} {'best':>8} {'median':>8} {'CPU (best)':>11}")
        for name, values in times.items():
            ordered = sorted(values)
            print(f"{name:24} {ordered[0]:7.2f}s {ordered[len(ordered) // 2]:7.2f}s {min(cpus[name]):10.2f}s")
        print()
        for name, url in stores.items():
            parts = _parts(ws, url)
            ratio = min(times[f"check {name}"]) / min(times[f"materialize {name}"])
            verdict = "ok" if min(times[f"check {name}"]) < TARGET_CHECK_S else "OVER TARGET"
            print(
                f"{name}: check / materialize = {ratio:.2f}x; check best {min(times[f'check {name}']):.2f}s "
                f"(target < {TARGET_CHECK_S:.0f}s: {verdict}); parts: "
                + ", ".join(f"{k} {v:.2f}s" for k, v in parts.items())
            )
        ws.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis", help="a Redis URL to use instead of a private redis-server")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
