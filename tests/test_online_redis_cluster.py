"""What only the Redis Cluster store does: partitions spread over the nodes, batch reads that never
mix versions or half a push, a pusher stopped half way, a node that goes away, a failover."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from local_redis_cluster import LocalRedisCluster
from online_stores import cluster_store_url, drop_redis_prefix, redis_keys

import jupyter_features as jf
from jupyter_features.errors import OnlineStoreError
from jupyter_features.materialize import materialize_view
from jupyter_features.online import open_store
from jupyter_features.online.redis_cluster import RedisClusterStore
from jupyter_features.online.redis_cluster_push import COMMIT
from jupyter_features.online.redis_partitions import APPLY_PART, UNPEND_PART, partition_of, partitions_of

END = datetime(2024, 1, 10)
N = 400


@pytest.fixture
def store_url(redis_cluster_url: str, unique_prefix: str) -> Iterator[str]:
    url = cluster_store_url(redis_cluster_url, unique_prefix)
    yield url
    drop_redis_prefix(url)


def _workspace(folder: Path, url: str, value: float = 1.0, n: int = N) -> jf.Workspace:
    ws = jf.Workspace(folder, online_store=url)
    frame = pd.DataFrame({"user_id": range(n), "ts": [datetime(2024, 1, 1)] * n, "score": [value] * n})
    ws.register_source("s", frame, timestamp="ts")
    ws.feature_view("score", "SELECT user_id, ts, score FROM s", entity="user_id", timestamp="ts")
    return ws


def _rows(n: int = N) -> list[dict[str, int]]:
    return [{"user_id": u} for u in range(n)]


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.text(max_size=40), min_size=1, max_size=50), n=st.integers(1, 1024))
def test_bulk_partitions_equal_one_key_partitions(keys: list[str], n: int) -> None:
    assert partitions_of(pa.array(keys), n).tolist() == [partition_of(k, n) for k in keys]


def test_bad_urls_are_clear_errors() -> None:
    with pytest.raises(OnlineStoreError, match="'nohost' is not host:port"):
        open_store("redis+cluster://nohost")
    with pytest.raises(OnlineStoreError, match="partitions= must be 1 to 16384"):
        open_store("redis+cluster://127.0.0.1:1?partitions=0")
    with pytest.raises(OnlineStoreError, match="unknown option db"):
        open_store("redis+cluster://127.0.0.1:1?db=2")
    with pytest.raises(OnlineStoreError, match="no startup node of the cluster answers") as info:
        open_store("redis+cluster://user:s3cret@127.0.0.1:1")
    assert "s3cret" not in str(info.value)


def test_partitions_spread_over_every_primary(tmp_path: Path, store_url: str) -> None:
    url = store_url.replace("?", "?partitions=12&")
    ws = _workspace(tmp_path, url, n=3000)
    result = ws.materialize(["score"], end=END, progress=False)["score"]
    assert result.rows == 3000
    keys = redis_keys(url)
    data = [k for k in keys if f":v{result.version}" in k and ":p" in k]
    assert len(data) == 12  # one hash per partition
    per_node: dict[Any, int] = {}
    for key in data:
        client = keys[key]
        per_node[id(client)] = per_node.get(id(client), 0) + int(client.hlen(key))  # type: ignore[attr-defined]
    assert len(per_node) == 3 and sum(per_node.values()) == 3000
    assert max(per_node.values()) < 3000 / 3 * 1.6  # no node holds much more than its share
    assert ws.online_features(["score:score"], _rows(3000), at=END).to_dict()["score__score"] == [1.0] * 3000
    # the default: at least four partitions per primary
    assert ws.materialize(["score"], end=END, progress=False)["score"].rows == 3000
    store = RedisClusterStore(store_url)
    try:
        assert list(store.views()) == ["score"]  # found on whichever node holds the pointer
        assert store.route("score").parts.n == 12 and store.partition_count(None) == 12
        assert store.partition_count(1_000_000) == 21  # 20, rounded up to a multiple of the primaries
    finally:
        store.close()


def test_a_batch_never_mixes_versions_across_switches(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["score"], end=END, progress=False)
    reader = jf.Workspace(tmp_path / "reader", online_store=store_url)
    mixed: list[Any] = []
    seen: set[float] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            values = set(reader.online_features(["score:score"], _rows(), at=END).to_dict()["score__score"])
            seen.update(v for v in values if v is not None)
            if len(values) != 1:
                mixed.append(values)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for value in (2.0, 3.0, 4.0, 5.0):
            _workspace(tmp_path, store_url, value).materialize(["score"], end=END, progress=False)
            got = reader.online_features(["score:score"], _rows(), at=END).to_dict()["score__score"]
            assert got == [value] * N  # the next read after a switch sees it, whatever the reader cached
    finally:
        stop.set()
        thread.join()
    assert not mixed, mixed[:3]
    assert len(seen) >= 2


def test_a_push_over_many_partitions_is_seen_whole(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["score"], end=END, progress=False)
    users = list(range(0, N, 7))  # over every partition
    mixed: list[Any] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            values = set(
                ws.online_features(["score:score"], [{"user_id": u} for u in users], at=END + timedelta(days=1))
                .to_dict()["score__score"]
            )  # fmt: skip
            if len(values) != 1:
                mixed.append(values)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(30):
            ws.push("score", [{"user_id": u, "ts": END + timedelta(minutes=i + 1), "score": 10.0 + i} for u in users],
                    to="online")  # fmt: skip
    finally:
        stop.set()
        thread.join()
    assert not mixed, mixed[:3]
    got = ws.online_features(["score:score"], [{"user_id": u} for u in users], at=END + timedelta(days=1))
    assert got.to_dict()["score__score"] == [39.0] * len(users)
    with ws.online_replica(["score"]) as replica:
        assert replica.get(
            ["score:score"], [{"user_id": u} for u in users], at=END + timedelta(days=1)
        ).to_dict() == (got.to_dict())


def test_a_pusher_stopped_half_way_is_finished_by_readers(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["score"], end=END, progress=False)
    store = RedisClusterStore(store_url)
    try:
        route = store.route("score", fresh=True)
        parts = route.parts
        users = [str(u) for u in range(0, N, 5)]
        ks = store.ks
        args: list[Any] = [route.pointer, ks.key("score", "j:"), f":0:0:{route.table.layout}"]
        ts = int(pd.Timestamp(END + timedelta(hours=1)).value // 1000)
        for u in users:
            args += [u, f"[{ts},7.0".encode()]
        ok, seq = ks.script(
            COMMIT, (ks.key("score", "current"), ks.key("score", "pseq"), ks.key("score", "journal")), args
        )
        assert ok
        by_part: dict[int, list[Any]] = {}
        for u in users:
            by_part.setdefault(parts.of(u), []).extend([u, f"[{ts},7.0,{int(seq)}]"])
        calls = [(store.calls.slot(parts.live(p)), APPLY_PART, (parts.live(p), parts.pend(p), parts.pushes(p)),
                  (route.pointer, route.data_prefix(p), int(seq), "1", *a)) for p, a in by_part.items()]  # fmt: skip
        store.calls.run(calls, "staging")
        first = next(iter(by_part))
        store.calls.run(
            [(store.calls.slot(parts.pend(first)), UNPEND_PART, (parts.pend(first),), (int(seq),))], "one"
        )
        # the push is visible in one partition and pending in the others: a batch read finishes it
        later = END + timedelta(days=1)
        got = ws.online_features(["score:score"], [{"user_id": int(u)} for u in users], at=later).to_dict()
        assert got["score__score"] == [7.0] * len(users)
        assert all(not store.client.smembers(parts.pend(p)) for p in by_part)
    finally:
        store.close()


# -- clusters of their own: a node that goes away, a failover ----------------------------------


def test_a_node_that_goes_away_is_named_and_nothing_is_half_switched(tmp_path: Path) -> None:
    cluster = LocalRedisCluster(tmp_path / "c", replicas=0, full_coverage=False).start()
    try:
        url = cluster.url + "?chunk_rows=50"
        ws = _workspace(tmp_path / "ws", url, n=2000)
        first = ws.materialize(["score"], end=END, progress=False)["score"]
        store = RedisClusterStore(url)
        pointer_node = store.calls.node(store.calls.slot(store.ks.key("score", "current"))).port
        victim = next(p for p in cluster.primaries() if p != pointer_node)

        def kill(view: str, done: int, total: int) -> None:
            if done and cluster.procs[victim].poll() is None:
                cluster.kill(victim)

        with pytest.raises(OnlineStoreError, match=rf"node 127\.0\.0\.1:{victim}.*previous version"):
            materialize_view(ws.engine, ws.get_view("score"), store, end=END + timedelta(days=1), progress=False,
                             on_progress=kill)  # fmt: skip
        served = store.current("score")
        assert served is not None and served.version == first.version  # nothing switched
        with pytest.raises(OnlineStoreError, match=rf"node 127\.0\.0\.1:{victim}"):
            ws.online_features(["score:score"], _rows(2000), at=END)
        # entities on the nodes still up are served, from the first version
        route = store.route("score", fresh=True)
        alive = [
            u for u in range(2000)
            if store.calls.node(store.calls.slot(route.parts.live(route.parts.of(str(u))))).port != victim
        ]  # fmt: skip
        got = ws.online_features(["score:score"], [{"user_id": u} for u in alive], at=END).to_dict()
        assert alive and got["score__score"] == [1.0] * len(alive)
        store.close()
    finally:
        cluster.stop()


def test_reads_continue_after_a_failover(tmp_path: Path) -> None:
    cluster = LocalRedisCluster(tmp_path / "c", replicas=1).start()
    try:
        url = cluster.url
        ws = _workspace(tmp_path / "ws", url, n=2000)
        ws.materialize(["score"], end=END, progress=False)
        ws.push("score", [{"user_id": u, "ts": END, "score": 9.0} for u in range(0, 2000, 100)], to="online")
        expected = [9.0 if u % 100 == 0 else 1.0 for u in range(2000)]
        assert ws.online_features(["score:score"], _rows(2000), at=END).to_dict()["score__score"] == expected
        store = open_store(url)
        for node in store.client.get_primaries():  # type: ignore[attr-defined]
            node.redis_connection.execute_command("WAIT", 1, 5000)  # the replicas have every write
        store.close()
        victim = cluster.primaries()[0]
        cluster.kill(victim)
        deadline = time.monotonic() + 60
        while True:  # the first reads wait out the failover inside the store, then go on
            try:
                got = ws.online_features(["score:score"], _rows(2000), at=END).to_dict()["score__score"]
                break
            except OnlineStoreError:
                assert time.monotonic() < deadline, "no failover within a minute"
        assert got == expected
        assert victim not in cluster.primaries()
        # and the store keeps working on the new primary: a run, a push
        _workspace(tmp_path / "ws", url, 2.0, n=2000).materialize(["score"], end=END, progress=False)
        ws.push("score", [{"user_id": 1, "ts": END, "score": 5.0}], to="online")
        got = ws.online_features(["score:score"], [{"user_id": 1}, {"user_id": 2}], at=END).to_dict()
        assert got["score__score"] == [5.0, 2.0]
    finally:
        cluster.stop()


def test_a_batch_retried_for_a_missing_script_runs_each_call_once(
    redis_cluster_url: str, unique_prefix: str
) -> None:
    """A script one node lacks is loaded and only the calls that node refused run again: a call
    that ran (an append of a windowed view's events) is never repeated."""
    from jupyter_features.online.redis_nodes import ClusterCalls

    store = RedisClusterStore(cluster_store_url(redis_cluster_url, unique_prefix))
    keys = [f"{unique_prefix}:{{{i}}}" for i in range(60)]  # over every primary
    try:
        source = f"-- {unique_prefix}\nreturn redis.call('INCR', KEYS[1])"  # new to every node
        calls = ClusterCalls(store.client, store.url, lambda what, exc: OnlineStoreError(what))
        primaries = {calls.node(calls.slot(k)).name for k in keys}
        assert len(primaries) > 1
        first = calls.node(calls.slot(keys[0]))
        assert first.redis_connection is not None
        first.redis_connection.script_load(source)  # one node has it, the others do not
        replies = calls.run([(calls.slot(k), source, (k,), ()) for k in keys], "counting")
        assert replies == [1] * len(keys)
        assert [int(store.client.get(k)) for k in keys] == [1] * len(keys)
    finally:
        for k in keys:
            store.client.delete(k)
        store.close()
