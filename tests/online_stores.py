"""Online store URLs for tests: a SQLite file per test, Redis db 2 or the test session's Redis Cluster,
under a unique key prefix."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from jupyter_features.online.redis_partitions import partition_of

#: Redis database the online-store tests use (other suites use other numbers).
REDIS_DB = 2


def redis_store_url(base: str, prefix: str) -> str:
    """``base`` (redis://host:port/N) moved to db 2, with the keys under ``prefix:``."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{REDIS_DB}", query=f"prefix={prefix}:"))


def cluster_store_url(base: str, prefix: str) -> str:
    """The cluster URL ``base`` with the keys under ``prefix:``."""
    return f"{base}?prefix={prefix}:"


def drop_redis_prefix(url: str) -> None:
    import redis

    parts = urlsplit(url)
    prefix = parts.query.split("prefix=", 1)[1].split("&", 1)[0]
    if parts.scheme == "redis+cluster":
        from jupyter_features.online.redis_cluster import RedisClusterStore

        store = RedisClusterStore(url)
        try:
            for node in store.client.get_primaries():
                client = node.redis_connection
                keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
                for key in keys:
                    client.unlink(key)
        finally:
            store.close()
        return
    client = redis.Redis.from_url(urlunsplit(parts._replace(query="")))
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


def redis_keys(url: str) -> dict[str, object]:
    """Every key under the store's prefix, with a client of the node holding it (single node or cluster)."""
    import redis

    parts = urlsplit(url)
    prefix = parts.query.split("prefix=", 1)[1].split("&", 1)[0] if "prefix=" in parts.query else "jf:"
    escaped = "".join("\\" + c if c in "*?[]{}\\" else c for c in prefix)
    if parts.scheme == "redis+cluster":
        from jupyter_features.online.redis_cluster import RedisClusterStore

        store = RedisClusterStore(url)
        clients = [node.redis_connection for node in store.client.get_primaries()]
    else:
        clients = [redis.Redis.from_url(urlunsplit(parts._replace(query="")))]
    return {k.decode(): c for c in clients for k in c.scan_iter(match=f"{escaped}*", count=1000)}


def stored_versions(url: str, view: str) -> dict[int, int]:
    """Every version of ``view`` with data in a Redis store (served or garbage): its entities."""
    import re

    found: dict[int, int] = {}
    for key, client in redis_keys(url).items():
        m = re.search(r"\{" + view + r"(:p\d+~\d+)?\}:v(\d+)$", key)
        if m:
            found[int(m.group(2))] = found.get(int(m.group(2)), 0) + int(client.hlen(key))  # type: ignore[attr-defined]
    return found


def entity_hash(url: str, view: str, version: int, key: str) -> tuple[Any, str]:
    """A client and the hash of version ``version`` of ``view`` that holds entity ``key`` (encoded),
    in a Redis store's own layout: one hash per version, or its partition's on a cluster."""
    import redis

    parts = urlsplit(url)
    prefix = parts.query.split("prefix=", 1)[1].split("&", 1)[0] if "prefix=" in parts.query else "jf:"
    if parts.scheme != "redis+cluster":
        return redis.Redis.from_url(urlunsplit(parts._replace(query=""))), f"{prefix}{{{view}}}:v{version}"
    from jupyter_features.online.redis_cluster import RedisClusterStore
    from jupyter_features.online.redis_partitions import Partitions

    store = RedisClusterStore(url)
    store.current(view)
    store.route(view, fresh=True)
    meta = json.loads(store.client.get(store.ks.key(view, f"meta:{version}")))
    name = Partitions(prefix, view, int(meta["partitions"])).data(
        partition_of(key, int(meta["partitions"])), version
    )
    return store.client, name


def start_redis_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """A private ``redis-server`` on ``port`` with an append-only file in ``folder`` (it survives a restart)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
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
