"""Registry benchmark: search latency over HTTP and concurrent exports per second.

    python benchmarks/registry.py                       # 1,000 views x 20 features, SQLite store
    python benchmarks/registry.py --postgres postgresql://postgres@127.0.0.1:5432/test

Targets: search p50 under 20 ms over HTTP; at least 50 concurrent exports per second on
SQLite. An "export" is what ws.export does per changed view: apply a new definition
(hashing its normalized SQL) and record the activity.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import registry_client
from jupyter_features.registry_server.process import start_server

TOKEN = "benchmark-token-0001"
ENTITIES = ["user_id", "merchant_id", "card_id", "device_id", "account_id"]
TEAMS = [f"team-{i}" for i in range(10)]
TAGS = ["payments", "fraud", "profile", "risk", "marketing", "growth", "ads", "search"]
AGGS = [("sum", "float64", "DOUBLE"), ("count", "int64", "BIGINT"), ("avg", "float64", "DOUBLE"),
        ("max", "float64", "DOUBLE")]  # fmt: skip


def make_spec(i: int, n_features: int, rng: random.Random, salt: str = "") -> dict[str, Any]:
    entity = ENTITIES[i % len(ENTITIES)]
    features, columns = [], []
    for j in range(n_features):
        agg, ftype, dtype = AGGS[j % len(AGGS)]
        days = 1 + (j * 7) % 90
        name = f"{agg}_amount_{days}d_{j}"
        columns.append(
            f"{agg}(amount{salt}) OVER (PARTITION BY {entity} ORDER BY ts "
            f"RANGE BETWEEN INTERVAL {days} DAYS PRECEDING AND CURRENT ROW) AS {name}"
        )
        features.append(
            {
                "name": name,
                "type": ftype,
                "duckdb_type": dtype,
                "description": f"{agg} of amount over {days} days",
            }
        )
    return {
        "name": f"view_{i:05d}",
        "sql": f"SELECT {entity}, ts,\n  " + ",\n  ".join(columns) + "\nFROM transactions",
        "entity": [entity],
        "timestamp": "ts",
        "created_timestamp": None,
        "ttl": "30d",
        "description": f"view {i} for domain{i % 97} about {rng.choice(TAGS)} signals",
        "owner": TEAMS[i % len(TEAMS)],
        "tags": rng.sample(TAGS, 2),
        "features": features,
        "lineage": {
            f["name"]: ["transactions.amount", f"transactions.{entity}", "transactions.ts"] for f in features
        },
        "sources": ["transactions"],
    }


def populate(url: str, n_views: int, n_features: int) -> float:
    rng = random.Random(7)
    reg = registry_client.connect(url)
    t0 = time.perf_counter()
    for i in range(n_views):
        reg.apply(make_spec(i, n_features, rng), created_by="benchmark@host")
    for m in range(20):
        reg.record_usage(f"model_{m}", [f"view_{i:05d}:*" for i in range(m, n_views, 50)])
    elapsed = time.perf_counter() - t0
    reg.close()
    return elapsed


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def search_latency(server_url: str, rounds: int) -> dict[str, tuple[float, float, float]]:
    """Per query kind: p50 and p95 in ms, and the mean number of results."""
    queries: dict[str, Callable[[int], dict[str, Any]]] = {
        "text (one word)": lambda k: {"q": f"domain{k % 97}"},
        "text (two words)": lambda k: {"q": f"domain{k % 97} {TAGS[k % len(TAGS)]}"},
        "tag + owner": lambda k: {"tag": TAGS[k % len(TAGS)], "owner": TEAMS[k % len(TEAMS)]},
        "entity + type + text": lambda k: {
            "entity": ENTITIES[k % 5],
            "type": "int64",
            "q": f"domain{k % 97}",
        },
        "used_by": lambda k: {"used_by": f"model_{k % 20}"},
    }
    out = {}
    with httpx.Client(
        base_url=f"{server_url}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        client.get("/views", params={"q": "warmup"}).raise_for_status()
        for label, make in queries.items():
            times, sizes = [], []
            for k in range(rounds):
                t0 = time.perf_counter()
                response = client.get("/views", params=make(k))
                response.raise_for_status()
                sizes.append(len(response.json()))
                times.append((time.perf_counter() - t0) * 1000)
            out[label] = (statistics.median(times), percentile(times, 0.95), statistics.mean(sizes))
    return out


def concurrent_exports(
    url: str, threads: int, seconds: float, n_features: int, *, changed: bool = True, token: str | None = None
) -> float:
    """Exports per second: each thread applies definitions of its own 20 views and audits each.

    ``changed``: every export is a new definition (a new version; its SQL is parsed);
    otherwise the views are re-exported unchanged (the usual ``ws.export()`` of a session).
    """
    done = [0] * threads
    stop = time.perf_counter() + seconds
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    run = uuid.uuid4().hex[:6]

    def work(t: int) -> None:
        reg = registry_client.connect(url, token=token)
        try:
            barrier.wait()
            n = 0
            while time.perf_counter() < stop:
                spec = make_spec(
                    t * 1000 + n % 20, n_features, random.Random(n % 20), salt=f" + {n}" if changed else ""
                )
                spec["name"] = f"export_{run}_{t}_{n % 20}"
                record = reg.apply(spec, created_by=f"thread-{t}")
                reg.record_activity("export", {"views": {record.name: record.version}})
                n += 1
            done[t] = n
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)
        finally:
            reg.close()

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    if errors:
        raise errors[0]
    return sum(done) / (time.perf_counter() - t0)


def run_store(label: str, store_url: str, folder: Path, args: argparse.Namespace) -> None:
    print(f"\n== {label}: {args.views:,} views x {args.features} features")
    elapsed = populate(store_url, args.views, args.features)
    print(f"populated in {elapsed:.1f}s ({args.views / elapsed:.0f} applies/s, one client)")
    tokens = folder / f"tokens-{label}.txt"
    tokens.write_text(f"{TOKEN} admin\n")
    with start_server(store_url, token_file=tokens, log=folder / f"server-{label}.log") as server:
        print(f"search over HTTP ({args.rounds} queries each; target p50 < 20 ms):")
        for kind, (p50, p95, size) in search_latency(server.url, args.rounds).items():
            print(f"  {kind:<22} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms   ~{size:.0f} results")
        t0 = time.perf_counter()
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            count = len(client.get(f"{server.url}/api/v1/views").json())
        print(f"  list all ({count:,} views)     {(time.perf_counter() - t0) * 1000:6.1f} ms")
        for changed in (True, False):
            rate = concurrent_exports(
                server.url, args.threads, args.seconds, args.features, changed=changed, token=TOKEN
            )
            kind = "new definitions" if changed else "unchanged re-exports"
            print(f"concurrent exports over HTTP, {args.threads} threads, {kind}: {rate:.0f}/s")
    for changed in (True, False):
        rate = concurrent_exports(store_url, args.threads, args.seconds, args.features, changed=changed)
        kind = "new definitions" if changed else "unchanged re-exports"
        print(f"concurrent exports, embedded, {args.threads} threads, {kind}: {rate:.0f}/s (target >= 50/s)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200, help="queries per search kind")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--postgres", help="also run against this PostgreSQL (a throwaway schema)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jf-registry-bench-") as tmp:
        folder = Path(tmp)
        run_store("sqlite", f"sqlite:///{folder}/registry.db", folder, args)
        if args.postgres:
            schema = "jfbench_" + uuid.uuid4().hex[:8]
            sep = "&" if "?" in args.postgres else "?"
            try:
                run_store("postgresql", f"{args.postgres}{sep}schema={schema}", folder, args)
            finally:
                from sqlalchemy import create_engine, text

                engine = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1))
                with engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                engine.dispose()


if __name__ == "__main__":
    main()
