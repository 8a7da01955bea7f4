"""The Spark engine on a standalone cluster whose executors are processes of their own
(tests/spark_cluster.py), and the rules that decide what the executors may reach.

The point-in-time contract runs on the cluster as the ``spark-cluster`` engine of
tests/test_pit.py, and materialization from its executors in tests/test_spark.py
(``executors`` = ``cluster``); here: that the executors really share nothing with the
driver, the settings that point the engine at a cluster, what executors elsewhere may
write, and materialization from file sources giving DuckDB's values.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from online_stores import drop_redis_prefix, redis_store_url
from spark_cluster import WORKER_TZ

import jupyter_features as jf
from jupyter_features.config import load_settings
from jupyter_features.errors import ConfigError, EngineError, OnlineStoreError

# -- what the executors may reach (no Spark needed) ------------------------------------------


def test_only_local_masters_keep_the_executors_on_this_host() -> None:
    from jupyter_features.engines.spark.executors import on_this_host

    for master in ("local", "local[2]", "local[*]", "local-cluster[2,1,1024]"):
        assert on_this_host(master), master
    # a standalone master on 127.0.0.1 may also listen on other addresses, for other machines' workers
    for master in ("spark://127.0.0.1:7077", "spark://10.0.0.5:7077", "yarn", "k8s://https://10.0.0.1:6443"):
        assert not on_this_host(master), master


def test_stores_hand_executors_only_what_they_reach(
    tmp_path: Path, redis_url: str, unique_prefix: str
) -> None:
    """A SQLite file lives on the driver's machine: executors elsewhere get no handle (the rows
    go through the driver). A Redis handle works anywhere the URL reaches the run's server —
    and a process that reaches another server (here: another database) is refused before writing."""
    from dataclasses import replace

    from jupyter_features.online import OnlineTable, open_store

    table = OnlineTable(view="v", entity=("a",), key_types=("int64",), features=(), end_us=0)
    redis = redis_store_url(redis_url, unique_prefix)
    try:
        for url in (f"sqlite:///{tmp_path}/online.db", redis):
            store = open_store(url)
            try:
                with store.lock("v") as lease:
                    writer = store.begin(table, lease=lease)
                    try:
                        assert writer.handle(other_host=False) is not None, url
                        handle = writer.handle(other_host=True)
                        if url.startswith("sqlite"):
                            assert handle is None
                            continue
                        assert handle is not None
                        handle.resume().close()  # the run's own server: fine
                        elsewhere = replace(handle, url=handle.url.replace("/2?", "/3?"))  # not the run's
                        with pytest.raises(OnlineStoreError, match="address every Spark executor reaches"):
                            elsewhere.resume()
                    finally:
                        writer.abort()
            finally:
                store.close()
    finally:
        drop_redis_prefix(redis)


def test_spark_settings_come_from_features_toml_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "features.toml").write_text(
        '[engine]\nname = "spark"\nmaster = "spark://head:7077"\n'
        '[engine.spark_conf]\n"spark.executor.memory" = "4g"\n"spark.executor.cores" = 2\n'
        '"spark.dynamicAllocation.enabled" = true\n'
    )
    settings = load_settings(tmp_path, environ={})
    assert settings.spark_master == "spark://head:7077"
    assert settings.spark_conf == {
        "spark.executor.memory": "4g", "spark.executor.cores": "2", "spark.dynamicAllocation.enabled": "true",
    }  # fmt: skip
    env = {"JUPYTER_FEATURES_SPARK_MASTER": "yarn"}
    assert load_settings(tmp_path, environ=env).spark_master == "yarn"
    assert load_settings(tmp_path / "nowhere", environ={}).spark_master is None  # active session or local[*]
    for bad, match in (
        ('master = ""', "master URL"),
        ("master = 7077", "master URL"),
        ('spark_conf = "x"', "must be a table"),
        ('spark_conf = { "executor.memory" = "4g" }', "not a Spark setting"),
        ('spark_conf = { "spark.jars.packages" = ["a"] }', "string, number or boolean"),
    ):
        (tmp_path / "features.toml").write_text(f'[engine]\nname = "spark"\n{bad}\n')
        with pytest.raises(ConfigError, match=match):
            load_settings(tmp_path, environ={})


# -- on the standalone cluster ------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.spark_cluster
def test_executors_are_processes_of_their_own(spark_cluster: Any, spark_cluster_session: Any) -> None:
    """Each executor is another process with its own working directory under its worker, its
    own clock settings, and jupyter_features imported from the copy the driver shipped."""
    from jupyter_features.engines.spark.executors import package_zip

    def probe(_: Any) -> Any:
        import os
        import time

        import jupyter_features

        yield os.getpid(), os.getcwd(), jupyter_features.__file__, time.strftime("%z")

    rows = spark_cluster_session.sparkContext.parallelize(range(8), 8).mapPartitions(probe).collect()
    pids, folders, files, zones = (set(column) for column in zip(*rows, strict=True))
    assert os.getpid() not in pids
    workers = {Path(f).relative_to(spark_cluster.folder).parts[0] for f in folders}
    assert workers <= {"worker0", "worker1"} and os.getcwd() not in folders
    assert all(package_zip().name in f for f in files), files  # not the installed copy
    assert zones == {datetime.now(ZoneInfo(WORKER_TZ)).strftime("%z")}  # not the driver's clock
    apps = spark_cluster.state()["activeapps"]
    assert [app["cores"] for app in apps] == [2]  # one executor on each one-core worker


def _spend(folder: Path) -> None:
    base = datetime(2024, 1, 1)
    rows = [
        (u, base + timedelta(hours=h), float(u * 100 + h)) for u in range(40) for h in range(0, 72, 7 + u % 5)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "amount"])
    folder.mkdir()
    for part, chunk in frame.groupby(frame.user_id % 3):
        chunk.to_parquet(folder / f"part{part}.parquet")


@pytest.mark.spark
@pytest.mark.spark_cluster
@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_file_source_materialized_from_the_executors_equals_duckdb(
    spark_cluster_session: Any, tmp_path: Path, store: str, unique_prefix: str, request: pytest.FixtureRequest
) -> None:
    """Parquet read by the executors at its path, the latest rows written into Redis by the
    executors (into SQLite through the driver, the master not being a local one): DuckDB's
    values, although the executors' clocks run at UTC+14."""
    _spend(tmp_path / "tx")
    results = {}
    for engine in ("duckdb", spark_cluster_session):
        name = "duckdb" if engine == "duckdb" else "spark"
        if store == "sqlite":
            url = f"sqlite:///{tmp_path}/{name}.db"
        else:
            url = redis_store_url(request.getfixturevalue("redis_url"), f"{unique_prefix}{name}")
        ws = jf.Workspace(tmp_path / name, online_store=url, engine=engine)
        ws.register_source("tx", tmp_path / "tx" / "*.parquet", timestamp="ts")
        ws.feature_view(
            "spend", "SELECT user_id, ts, amount, amount * 2 AS doubled FROM tx", entity="user_id",
            timestamp="ts", ttl="2d",
        )  # fmt: skip
        run = ws.materialize(["spend"], end=datetime(2024, 1, 3, 12), progress=False)["spend"]
        rows = [{"user_id": u} for u in range(-1, 41)]
        results[name] = (run.rows, ws.online_features(["spend:*"], rows).to_pandas())
        if store == "redis":
            drop_redis_prefix(url)
    assert results["spark"][0] == results["duckdb"][0] > 0
    pd.testing.assert_frame_equal(results["spark"][1], results["duckdb"][1])


@pytest.mark.spark
@pytest.mark.spark_cluster
def test_features_toml_points_the_engine_at_the_cluster(
    spark_cluster: Any, spark_cluster_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "features.toml"
    toml.write_text(f'[engine]\nname = "spark"\nmaster = "{spark_cluster.master_url}"\n')
    ws = jf.Workspace(tmp_path)
    assert ws.engine.session is spark_cluster_session  # type: ignore[attr-defined]
    toml.write_text('[engine]\nname = "spark"\nmaster = "local[2]"\n')
    with pytest.raises(EngineError, match=r"spark://127\.0\.0\.1.*already running.*stop it first"):
        jf.Workspace(tmp_path)
    monkeypatch.setenv("JUPYTER_FEATURES_SPARK_MASTER", spark_cluster.master_url)  # overrides the file
    assert jf.Workspace(tmp_path).engine.session is spark_cluster_session  # type: ignore[attr-defined]
