"""Faults for real: a materializing process killed midway, the Redis server stopped
midway, foreign keys of the wrong type. The previous version stays served throughout."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import IN_CI
from online_stores import cluster_store_url, drop_redis_prefix, redis_store_url, stored_versions

import jupyter_features as jf
from jupyter_features.errors import OnlineStoreError
from jupyter_features.materialize import materialize_view
from jupyter_features.online import open_store

N = 3_000
FIRST_END = datetime(2024, 1, 3)
SECOND_END = datetime(2024, 1, 10)


def _write_data(folder: Path) -> Path:
    """Every entity has value 1.0 on Jan 1 and 2.0 on Jan 5."""
    ids = np.arange(N, dtype=np.int64)
    frame = pd.DataFrame(
        {
            "user_id": np.concatenate([ids, ids]),
            "ts": pd.to_datetime(["2024-01-01"] * N + ["2024-01-05"] * N),
            "value": [1.0] * N + [2.0] * N,
        }
    )
    path = folder / "events.parquet"
    frame.to_parquet(path, index=False)
    return path


def _workspace(folder: Path, data: Path, store_url: str) -> jf.Workspace:
    ws = jf.Workspace(folder, online_store=store_url)
    ws.register_source("events", data, timestamp="ts")
    ws.feature_view("score", "SELECT user_id, ts, value FROM events", entity="user_id", timestamp="ts")
    return ws


def _values(ws: jf.Workspace) -> set[float | None]:
    rows = [{"user_id": i} for i in range(0, N, 97)]
    return set(ws.online_features(["score:value"], rows).to_dict()["score__value"])


@pytest.fixture(params=["sqlite", "redis", "redis_cluster"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, unique_prefix: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/online.db?chunk_rows=100"
        return
    if request.param == "redis_cluster":
        url = (
            cluster_store_url(request.getfixturevalue("redis_cluster_url"), unique_prefix) + "&chunk_rows=100"
        )
    else:
        url = redis_store_url(request.getfixturevalue("redis_url"), unique_prefix) + "&chunk_rows=100"
    yield url
    drop_redis_prefix(url)


_KILLED_RUN = """
import sys, time
from datetime import datetime
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_online_faults import _workspace
from jupyter_features.materialize import materialize_view

ws = _workspace(Path({folder!r}), Path({data!r}), {url!r})

def stall(view, done, total):
    if done:
        Path({marker!r}).write_text(str(done))
        time.sleep(3600)  # killed here, with part of the new version written

materialize_view(ws.engine, ws.get_view("score"), ws.online_store(), end=datetime(2024, 1, 10),
                 progress=False, on_progress=stall)
"""


def test_killed_run_leaves_previous_version_served(tmp_path: Path, store_url: str) -> None:
    data = _write_data(tmp_path)
    ws = _workspace(tmp_path / "a", data, store_url)
    first = ws.materialize(["score"], end=FIRST_END, progress=False)["score"]
    marker = tmp_path / "half-written"
    script = _KILLED_RUN.format(
        tests=str(Path(__file__).parent), folder=str(tmp_path / "b"), data=str(data), url=store_url,
        marker=str(marker),
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        assert _partial_rows(store_url, first.version + 1) > 0  # the new version is half written
        assert _values(ws) == {1.0}
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _values(ws) == {1.0}  # still the first version, never a mix
    assert _values(jf.Workspace(tmp_path / "c", online_store=store_url)) == {1.0}
    # the dead run's lock is taken over at once and its garbage removed
    second = ws.materialize(["score"], end=SECOND_END, progress=False)["score"]
    assert second.rows == N
    assert _values(ws) == {2.0}
    assert _partial_rows(store_url, first.version + 1) == 0


def _partial_rows(url: str, version: int) -> int:
    """Rows of a version that readers do not see (0 when it is gone)."""
    if url.startswith("sqlite"):
        import sqlite3

        con = sqlite3.connect(url.split("sqlite:///", 1)[1].split("?")[0])
        try:
            return int(con.execute(f'SELECT count(*) FROM "score__v{version}"').fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()
    return stored_versions(url, "score").get(version, 0)


# -- a real Redis server of our own, stopped in the middle of a run ------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(folder: Path, port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("redis-server is not installed; CI needs it", pytrace=False)
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--appendfsync", "always", "--dir", str(folder), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc
        except OSError:
            assert proc.poll() is None, "redis-server exited at start"
            time.sleep(0.02)
    proc.kill()
    pytest.fail("redis-server did not start")


def test_redis_server_stopped_midway(tmp_path: Path) -> None:
    port = _free_port()
    server = _start_redis(tmp_path, port)
    url = f"redis://127.0.0.1:{port}/0?chunk_rows=100"
    try:
        ws = _workspace(tmp_path / "ws", _write_data(tmp_path), url)
        ws.materialize(["score"], end=FIRST_END, progress=False)
        assert _values(ws) == {1.0}

        def stop_server(view: str, done: int, total: int) -> None:
            if done and server.poll() is None:
                server.kill()  # SIGKILL: no goodbye to the client
                server.wait()

        store = open_store(url)
        with pytest.raises(OnlineStoreError, match="Redis is unreachable.*previous version"):
            materialize_view(
                ws.engine,
                ws.get_view("score"),
                store,
                end=SECOND_END,
                progress=False,
                on_progress=stop_server,
            )
        store.close()
        with pytest.raises(OnlineStoreError, match="unreachable"):
            ws.online_features(["score:value"], [{"user_id": 1}])
        server = _start_redis(tmp_path, port)  # back, from its append-only file
        assert _values(ws) == {1.0}
        ws.materialize(["score"], end=SECOND_END, progress=False)
        assert _values(ws) == {2.0}
        keys = {k.decode() for k in ws.online_store(url).client.keys("*")}
        assert keys == {
            "jf:{score}:" + s for s in ("current", "next", "versions", "meta:3", "v3", "lock")
        } - {"jf:{score}:lock"}
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait()
        for path in tmp_path.glob("appendonly*"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else os.remove(path)


def test_redis_keys_of_the_wrong_type(tmp_path: Path, redis_url: str, unique_prefix: str) -> None:
    url = redis_store_url(redis_url, unique_prefix)
    try:
        ws = _workspace(tmp_path, _write_data(tmp_path), url)
        first = ws.materialize(["score"], end=FIRST_END, progress=False)["score"]
        store = ws.online_store(url)
        client = store.client
        # a foreign list where the next version's hash goes
        client.rpush(store.ks.key("score", f"v{first.version + 1}"), "foreign")
        with pytest.raises(OnlineStoreError, match="already exists as a list"):
            ws.materialize(["score"], end=SECOND_END, progress=False)
        assert _values(ws) == {1.0}
        assert client.lrange(store.ks.key("score", f"v{first.version + 1}"), 0, -1) == [
            b"foreign"
        ]  # untouched
        # the version counter replaced by a hash
        client.delete(store.ks.key("score", "next"))
        client.hset(store.ks.key("score", "next"), "x", "1")
        with pytest.raises(OnlineStoreError, match="holds a different type"):
            ws.materialize(["score"], end=SECOND_END, progress=False)
        assert _values(ws) == {1.0}
        # the pointer readers follow replaced by a hash: reads fail clearly
        client.delete(store.ks.key("score", "current"))
        client.hset(store.ks.key("score", "current"), "x", "1")
        with pytest.raises(OnlineStoreError, match="holds a different type"):
            ws.online_features(["score:value"], [{"user_id": 1}])
    finally:
        drop_redis_prefix(url)


def test_redis_damaged_push_journal_is_refused_clearly(
    tmp_path: Path, redis_url: str, unique_prefix: str
) -> None:
    url = redis_store_url(redis_url, unique_prefix)
    try:
        ws = _workspace(tmp_path, _write_data(tmp_path), url)
        ws.materialize(["score"], end=FIRST_END, progress=False)
        rows = [{"user_id": u, "ts": datetime(2024, 1, 4), "value": 3.0} for u in (1, 2)]
        pushed = ws.push("score", rows, to="online")
        store = ws.online_store(url)
        table = store.current("score")
        assert pushed.seq is not None and table is not None
        assert store.pushes_since("score", table, pushed.seq - 1)[0][1] == {
            "1": [[1704326400000000, 3.0]],
            "2": [[1704326400000000, 3.0]],
        }
        key = store.ks.key("score", f"j:{pushed.seq}")
        items = store.client.lrange(key, 0, -1)
        for damaged in (b"[1]],[[2]],[[3]", b"[1,"):  # four row lists for two entities; no JSON
            store.client.delete(key)
            store.client.rpush(key, items[0], damaged, items[2], items[3])
            with pytest.raises(OnlineStoreError, match="does not hold one row list per entity"):
                store.pushes_since("score", table, pushed.seq - 1)
    finally:
        drop_redis_prefix(url)


def test_sqlite_full_keeps_previous_version(tmp_path: Path) -> None:
    """A file that cannot grow (here a size cap: SQLite's real 'database or disk is full')."""
    data = _write_data(tmp_path)
    small = tmp_path / "small.parquet"
    pd.read_parquet(data).head(5).to_parquet(small, index=False)
    db = tmp_path / "online.db"
    ws = _workspace(tmp_path / "a", small, f"sqlite:///{db}")
    ws.materialize(["score"], end=FIRST_END, progress=False)
    capped = f"sqlite:///{db}?max_size_mb={db.stat().st_size / 1e6 + 0.05:.3f}&chunk_rows=500"
    big = _workspace(tmp_path / "b", data, capped)
    with pytest.raises(OnlineStoreError, match="full.*free disk space.*previous version"):
        big.materialize(["score"], end=SECOND_END, progress=False)
    assert ws.online_features(["score:value"], [{"user_id": i} for i in range(6)]).to_dict() == {
        "score__value": [1.0] * 5 + [None]
    }
    assert _partial_rows(capped, 2) == 0  # no garbage left
