"""Shared fixtures: real PostgreSQL and Redis servers, found through environment URLs.

When CI runs (CI=true) a missing service fails the test loudly; locally it skips.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from online_stores import cluster_store_url, drop_redis_prefix, redis_store_url

POSTGRES_URL = os.environ.get("JUPYTER_FEATURES_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("JUPYTER_FEATURES_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def require_service(url: str, default_port: int, what: str) -> None:
    if _reachable(url, default_port):
        return
    message = f"{what} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}; CI needs it (start it or set the URL)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require_service(POSTGRES_URL, 5432, "PostgreSQL (JUPYTER_FEATURES_TEST_POSTGRES)")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service(REDIS_URL, 6379, "Redis (JUPYTER_FEATURES_TEST_REDIS)")
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster of our own for the whole session: 3 primaries, each with a replica, on loopback
    ports (``redis-server --cluster-enabled yes`` + ``redis-cli --cluster create``), stopped at its end."""
    from local_redis_cluster import LocalRedisCluster

    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        try:
            cluster.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield cluster.url
    finally:
        cluster.stop()


def require_pyspark() -> None:
    """Without pyspark the Spark tests skip locally and fail in CI."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"pyspark is not installed ({exc}); CI runs the Spark tests", pytrace=False)
        pytest.skip("pyspark is not installed")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Spark allows one SparkContext per process: the tests on the standalone cluster run after
    every other test, so the local session stops once, when the cluster session starts."""
    items.sort(key=lambda item: item.get_closest_marker("spark_cluster") is not None)


@pytest.fixture(scope="session")
def spark_session() -> Iterator[Any]:
    """One local SparkSession for the whole test session: small, quiet and in UTC."""
    require_pyspark()
    import warnings

    from jupyter_features.engines.spark import default_session

    warnings.filterwarnings("ignore", category=FutureWarning)
    session = default_session(
        "local[2]",
        {
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.sql.adaptive.enabled": "false",  # tiny test frames: skip re-planning
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session


@pytest.fixture(scope="session")
def spark_cluster() -> Iterator[Any]:
    """A Spark standalone master and two one-core workers, each its own process on this machine,
    for the whole test session; stopped at its end, whatever happened."""
    require_pyspark()
    from spark_cluster import StandaloneCluster

    cluster = StandaloneCluster(workers=2, cores=1, memory="1g")
    try:
        try:
            cluster.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield cluster
    finally:  # also when starting fails or is interrupted
        cluster.stop()


@pytest.fixture(scope="session")
def spark_cluster_session(spark_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The SparkSession of a workspace whose features.toml points the Spark engine at the
    standalone cluster. The local session stops first (one SparkContext per process)."""
    import warnings

    from pyspark.sql import SparkSession

    import jupyter_features as jf

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    warnings.filterwarnings("ignore", category=FutureWarning)
    root = tmp_path_factory.mktemp("cluster-workspace")
    (root / "features.toml").write_text(
        f"""[engine]
name = "spark"
master = "{spark_cluster.master_url}"
[engine.spark_conf]
"spark.driver.host" = "127.0.0.1"           # the executors connect back to the driver here
"spark.driver.bindAddress" = "127.0.0.1"
"spark.pyspark.python" = {json.dumps(sys.executable)}   # the executors' Python: this venv's
"spark.executor.memory" = "512m"
"spark.cores.max" = 2
"spark.sql.shuffle.partitions" = 4
"spark.default.parallelism" = 2
"spark.sql.adaptive.enabled" = false
"""
    )
    session = jf.Workspace(root).engine.session  # type: ignore[attr-defined]
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def unique_prefix() -> str:
    """A key prefix / schema suffix no other test uses."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["sqlite", "redis", "redis_cluster"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, unique_prefix: str) -> Iterator[str]:
    """Each online store in turn: a SQLite file, Redis db 2 and the session's Redis Cluster, the
    last two under a unique key prefix."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/online.db"
        return
    if request.param == "redis_cluster":
        url = cluster_store_url(request.getfixturevalue("redis_cluster_url"), unique_prefix)
    else:
        url = redis_store_url(request.getfixturevalue("redis_url"), unique_prefix)
    yield url
    drop_redis_prefix(url)


@pytest.fixture
def ws(tmp_path: os.PathLike[str]) -> Iterator[object]:
    """A fresh workspace in a temporary folder, with no environment overrides."""
    import jupyter_features as jf

    old = {
        k: os.environ.pop(k)
        for k in list(os.environ)
        if k.startswith("JUPYTER_FEATURES_") and not k.startswith("JUPYTER_FEATURES_TEST")
    }
    try:
        yield jf.Workspace(tmp_path)
    finally:
        os.environ.update(old)
