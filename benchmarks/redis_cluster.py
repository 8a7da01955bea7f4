"""Redis Cluster online store against one Redis, side by side in one run.

    python benchmarks/redis_cluster.py [--entities 1000000] [--reads 20000] [--repeat 2]
                                       [--masters 3] [--partitions N]

Starts a private ``redis-server`` and a private cluster of ``--masters`` primaries (no replicas;
``redis-server --cluster-enabled yes`` + ``redis-cli --cluster create``) on free loopback ports,
and runs against both, interleaved so that machine noise hits them alike:

- ``ws.materialize`` of N entities × 10 float features (best of ``--repeat``; target: the
  cluster within 1.5× of one Redis), with the CPU time of this process and of the servers;
- ``ws.online_features(...).to_dict()`` of 1 entity × 10 features (p50 target ≤ 1.3×) and of
  100 entities in one call (p50 target ≤ 2×);
- the memory each node holds (``used_memory`` after the run, less before it);
- how a 100-entity batch's partition calls travel: one write per node then every reply (what
  the store does), redis-py's ``ClusterPipeline``, or one thread per node.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from local_redis_cluster import LocalRedisCluster  # noqa: E402
from online import END, FEATURES, interleaved, pct, source_file, start_redis  # noqa: E402
from online import _cpu_seconds as cpu_seconds  # noqa: E402 - the same measure as online.py

TARGET_MATERIALIZE = 1.5
TARGET_SINGLE = 1.3
TARGET_BATCH = 2.0


def _memory(clients: list[Any]) -> list[int]:
    """``used_memory`` of each server once the versions it unlinked are freed (lazily, in the background)."""
    for _ in range(600):
        if all(int(c.info("memory").get("lazyfree_pending_objects", 0)) == 0 for c in clients):
            break
        time.sleep(0.1)
    return [int(c.info("memory")["used_memory"]) for c in clients]


def _server_cpu(clients: list[Any]) -> float:
    total = 0.0
    for c in clients:
        info = c.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def run(args: argparse.Namespace) -> None:
    import redis

    import jupyter_features as jf
    from jupyter_features.online.layout import encode_key
    from jupyter_features.online.redis_cluster import RedisClusterStore
    from jupyter_features.online.redis_partitions import READ_PART

    workdir = Path(tempfile.mkdtemp(prefix="jf-cluster-bench-"))
    single_url, server = start_redis(workdir)
    cluster = LocalRedisCluster(workdir / "cluster", masters=args.masters, replicas=0).start()
    try:
        single = single_url + "?prefix=bench:"
        clustered = (
            cluster.url + "?prefix=bench:" + (f"&partitions={args.partitions}" if args.partitions else "")
        )
        single_client = redis.Redis.from_url(single_url)
        nodes = [redis.Redis(port=p) for p in cluster.primaries()]
        data = source_file(args.entities)
        ws = jf.Workspace(workdir / "ws", online_store=single)
        ws.register_source("events", data, timestamp="ts")
        ws.feature_view("v", "SELECT * FROM events", entity="user_id", timestamp="ts")
        print(f"{args.entities:,} entities × {len(FEATURES)} features; one Redis vs a cluster of {args.masters} "
              f"primaries; python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} at start\n")  # fmt: skip

        before = {"redis": _memory([single_client]), "cluster": _memory(nodes)}
        servers = {"redis": [single_client], "cluster": nodes}
        urls = {"redis": single, "cluster": clustered}
        mat: dict[str, list[float]] = {"redis": [], "cluster": []}
        cpu: dict[str, list[str]] = {"redis": [], "cluster": []}
        print(f"materialize (ws.materialize, full run; interleaved, best of {args.repeat})")
        for _ in range(args.repeat):
            for label in ("redis", "cluster"):
                c0, s0 = cpu_seconds(), _server_cpu(servers[label])
                t = time.perf_counter()
                result = ws.materialize(["v"], store=urls[label], end=END, progress=False)["v"]
                mat[label].append(time.perf_counter() - t)
                cpu[label].append(f"{cpu_seconds() - c0:.1f}+{_server_cpu(servers[label]) - s0:.1f}")
                assert result.rows == args.entities
        for label in ("redis", "cluster"):
            print(f"  {label:<8}{min(mat[label]):6.2f} s   runs {', '.join(f'{r:.2f}' for r in mat[label])} s; "
                  f"CPU this process + servers {', '.join(cpu[label])} s")  # fmt: skip
        ratio = min(mat["cluster"]) / min(mat["redis"])
        print(f"  cluster / redis {ratio:.2f}× (target ≤ {TARGET_MATERIALIZE}×: "
              f"{'ok' if ratio <= TARGET_MATERIALIZE else 'MISSED'})")  # fmt: skip
        store = RedisClusterStore(clustered)
        parts = store.route("v").parts
        print(f"  the cluster version has {parts.n} partitions")

        after = {"redis": _memory([single_client]), "cluster": _memory(nodes)}
        print("\nmemory held (used_memory after the runs and the lazy frees, less before), MB")
        one = (after["redis"][0] - before["redis"][0]) / 1e6
        per_node = [(a - b) / 1e6 for a, b in zip(after["cluster"], before["cluster"], strict=True)]
        print(f"  redis    {one:7.1f}")
        print(f"  cluster  {' + '.join(f'{m:.1f}' for m in per_node)} = {sum(per_node):.1f} "
              f"(largest node {max(per_node) / (sum(per_node) / len(per_node)):.2f}× the mean)")  # fmt: skip
        route = store.route("v")
        held: dict[str, int] = {}
        for p in range(parts.n):
            node = store.calls.node(store.calls.slot(parts.live(p)))
            held[node.name] = held.get(node.name, 0) + int(
                store.client.hlen(parts.data(p, route.table.version))
            )
        print(f"  entities per node: {', '.join(f'{n:,}' for n in held.values())}")

        rng = random.Random(7)
        refs = [f"v:{f}" for f in FEATURES]
        ids = itertools.cycle([rng.randrange(args.entities) for _ in range(4096)])
        nxt = ids.__next__
        probe = [{"user_id": 17}, {"user_id": args.entities - 1}]
        assert (ws.online_features(refs, probe, store=single).to_dict()
                == ws.online_features(refs, probe, store=clustered).to_dict())  # fmt: skip
        times = interleaved(
            {
                "redis 1×10": lambda: ws.online_features(refs, [{"user_id": nxt()}], store=single).to_dict(),
                "cluster 1×10": lambda: ws.online_features(
                    refs, [{"user_id": nxt()}], store=clustered
                ).to_dict(),
            },
            args.reads,
        )
        batches = itertools.cycle(
            [[{"user_id": rng.randrange(args.entities)} for _ in range(100)] for _ in range(64)]
        )
        bn = batches.__next__
        big = interleaved(
            {
                "redis 100×10": lambda: ws.online_features(refs, bn(), store=single).to_dict(),
                "cluster 100×10": lambda: ws.online_features(refs, bn(), store=clustered).to_dict(),
            },
            max(args.reads // 10, 200),
        )
        print(
            f"\nreads, ws.online_features(...).to_dict() (interleaved; load average {os.getloadavg()[0]:.1f}), µs"
        )
        print(f"  {'':<18}{'p50':>8}{'p99':>9}")
        for name, values in {**times, **big}.items():
            print(f"  {name:<18}{pct(values, 0.5):8.1f}{pct(values, 0.99):9.1f}")
        r1 = pct(times["cluster 1×10"], 0.5) / pct(times["redis 1×10"], 0.5)
        r100 = pct(big["cluster 100×10"], 0.5) / pct(big["redis 100×10"], 0.5)
        print(f"  1 entity:    cluster / redis p50 {r1:.2f}× (target ≤ {TARGET_SINGLE}×: "
              f"{'ok' if r1 <= TARGET_SINGLE else 'MISSED'})")  # fmt: skip
        print(f"  100 entities: cluster / redis p50 {r100:.2f}× (target ≤ {TARGET_BATCH}×: "
              f"{'ok' if r100 <= TARGET_BATCH else 'MISSED'})")  # fmt: skip

        # -- how a batch's partition calls travel --------------------------------------------
        route = store.route("v")
        sha = store.calls.sha(READ_PART)
        store.calls.run([], "warming up")
        for node in store.client.get_primaries():
            node.redis_connection.script_load(READ_PART)

        def calls_of(batch: list[dict[str, int]]) -> list[Any]:
            groups: dict[int, list[str]] = {}
            for row in batch:
                key = encode_key((row["user_id"],), ("int64",))
                groups.setdefault(route.parts.of(key), []).append(key)
            return [(store.calls.slot(route.parts.live(p)), READ_PART, (route.parts.live(p), route.parts.pend(p), route.parts.pushes(p)),
                     (route.pointer, route.data_prefix(p), *keys)) for p, keys in groups.items()]  # fmt: skip

        plans = itertools.cycle([calls_of(bn()) for _ in range(64)])
        pn = plans.__next__
        pool = ThreadPoolExecutor(max_workers=len(nodes))

        def pipeline(calls: list[Any]) -> Any:
            pipe = store.client.pipeline()
            for _, _, keys, argv in calls:
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *argv)
            return pipe.execute()

        def threads(calls: list[Any]) -> Any:
            by_node: dict[str, list[Any]] = {}
            for call in calls:
                by_node.setdefault(store.calls.node(call[0]).name, []).append(call)
            return list(pool.map(lambda group: store.calls.run(group, "reading"), by_node.values()))

        transport = interleaved(
            {
                "one write per node": lambda: store.calls.run(pn(), "reading"),
                "ClusterPipeline": lambda: pipeline(pn()),
                "a thread per node": lambda: threads(pn()),
            },
            max(args.reads // 10, 200),
        )
        print("\na 100-entity batch's partition reads (the scripts alone, no decoding), µs")
        for name, values in transport.items():
            print(f"  {name:<20}{pct(values, 0.5):8.1f}{pct(values, 0.99):9.1f}")
        pool.shutdown()
        store.close()
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    finally:
        cluster.stop()
        if server is not None:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument(
        "--partitions", type=int, default=None, help="default: the store's choice from the size"
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
