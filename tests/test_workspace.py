"""Workspace basics: sources, configuration, the default workspace."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

import jupyter_features as jf
from jupyter_features.config import load_settings
from jupyter_features.errors import ConfigError, SourceError, UnknownColumnError


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 2, 2],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
            "amount": [1.0, 2.0, 3.0],
        }
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_file_sources(ws: jf.Workspace, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"tx.{fmt}"
    frame = _frame()
    if fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, date_format="iso")
    ws.register_source("tx", path, timestamp="ts")
    assert ws.sql("SELECT count(*) AS n FROM tx")["n"][0] == 3
    assert set(ws.sources["tx"].schema) == {"user_id", "ts", "amount"}


def test_relative_glob_and_duckdb_table(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    _frame().to_parquet(tmp_path / "data" / "a.parquet")
    _frame().to_parquet(tmp_path / "data" / "b.parquet")
    ws = jf.Workspace(tmp_path)
    ws.register_source("tx", "data/*.parquet", timestamp="ts")
    assert ws.sql("SELECT count(*) AS n FROM tx")["n"][0] == 6
    ws.sql("CREATE TABLE merchants AS SELECT 1 AS merchant_id, 'shop' AS name")
    ws.register_source("m", "merchants")
    assert ws.sql("SELECT name FROM m")["name"][0] == "shop"


def test_refused_sources_change_nothing(ws: jf.Workspace, tmp_path: Path) -> None:
    ws.register_source("tx", _frame(), timestamp="ts")
    with pytest.raises(UnknownColumnError, match="did you mean 'tss'"):
        ws.register_source("tx", _frame().rename(columns={"ts": "tss"}), timestamp="ts")
    assert ws.sql("SELECT count(*) AS n FROM tx")["n"][0] == 3
    assert "ts" in ws.sources["tx"].schema
    with pytest.raises(SourceError, match="no file matches"):
        ws.register_source("tx", tmp_path / "missing" / "*.parquet")
    with pytest.raises(SourceError, match="valid identifier"):
        ws.register_source("my-source", _frame())
    with pytest.raises(SourceError, match="format"):
        (tmp_path / "x.bin").write_bytes(b"1")
        ws.register_source("x", tmp_path / "x.bin")
    with pytest.raises(SourceError, match="DataFrame"):
        ws.register_source("x", 42)
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(SourceError, match="cannot read"):
        ws.register_source("tx", bad)
    assert ws.sql("SELECT count(*) AS n FROM tx")["n"][0] == 3
    assert sorted(ws.sources) == ["tx"]


def test_sql_sees_dataframes_and_returns_pandas(ws: jf.Workspace) -> None:
    ws.register_source("tx", _frame())
    out = ws.sql("SELECT user_id, sum(amount) AS s FROM tx GROUP BY 1 ORDER BY 1")
    assert isinstance(out, pd.DataFrame)
    assert out["s"].tolist() == [1.0, 5.0]


def test_settings_precedence(tmp_path: Path) -> None:
    (tmp_path / "features.toml").write_text(
        '[registry]\nurl = "http://registry:8765"\n[online_store]\nurl = "sqlite:///state/online.db"\n'
    )
    s = load_settings(tmp_path, environ={})
    assert s.registry_url == "http://registry:8765"
    assert s.online_store_url == f"sqlite:///{tmp_path.resolve()}/state/online.db"
    s = load_settings(
        tmp_path, environ={"JUPYTER_FEATURES_REGISTRY": "http://env:1", "JUPYTER_FEATURES_TOKEN": "t"}
    )
    assert s.registry_url == "http://env:1" and s.token == "t"
    s = load_settings(
        tmp_path, registry="sqlite:///x.db", environ={"JUPYTER_FEATURES_REGISTRY": "http://env:1"}
    )
    assert s.registry_url == f"sqlite:///{tmp_path.resolve()}/x.db"
    empty = tmp_path / "empty"
    empty.mkdir()
    s = load_settings(empty, environ={})
    assert s.registry_url.endswith("/empty/.jupyter_features/registry.db")
    assert s.online_store_url.endswith("/empty/.jupyter_features/online.db")
    (tmp_path / "features.toml").write_text("[registry\n")
    with pytest.raises(ConfigError, match="features.toml"):
        load_settings(tmp_path, environ={})


def test_workspace_arguments_override(tmp_path: Path) -> None:
    ws = jf.Workspace(
        tmp_path, registry="sqlite:///r.db", online_store="redis://localhost:6379/3", token="tok"
    )
    assert ws.settings.registry_url.endswith("/r.db")
    assert ws.settings.online_store_url == "redis://localhost:6379/3"
    assert ws.settings.token == "tok"


def test_default_workspace_is_shared(tmp_path: Path) -> None:
    old = os.getcwd()
    try:
        os.chdir(tmp_path)
        jf.set_workspace(None)
        assert jf.workspace() is jf.workspace()
        assert jf.workspace().root == tmp_path.resolve()
    finally:
        jf.set_workspace(None)
        os.chdir(old)


def test_views_and_sources_share_no_names(ws: jf.Workspace) -> None:
    ws.register_source("tx", _frame(), timestamp="ts")
    ws.feature_view("spend", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts")
    with pytest.raises(SourceError, match="already a feature view"):
        ws.register_source("spend", _frame())
    with pytest.raises(jf.errors.FeatureViewError, match="already a source"):
        ws.feature_view("tx", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts")
    assert datetime(2024, 1, 1) <= ws.sql("SELECT max(ts) AS m FROM tx")["m"][0]
