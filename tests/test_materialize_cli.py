"""`jupyter-features materialize`: views from the workspace's registry, sources from a
Python file, the same result as ws.materialize."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

import jupyter_features as jf
from jupyter_features.cli import main

SOURCES = """
ws.register_source("tx", "data/tx.parquet", timestamp="ts")
"""


def _project(tmp_path: Path) -> jf.Workspace:
    (tmp_path / "data").mkdir()
    pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-02"]),
            "amount": [10.0, 20.0, 7.0],
        }
    ).to_parquet(tmp_path / "data" / "tx.parquet", index=False)
    (tmp_path / "sources.py").write_text(SOURCES)
    ws = jf.Workspace(tmp_path)
    ws.register_source("tx", tmp_path / "data" / "tx.parquet", timestamp="ts")
    view = ws.feature_view(
        "spend", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts", ttl="30d"
    )
    ws.registry.apply(view.to_spec())
    view = ws.feature_view(
        "spend", "SELECT user_id, ts, amount * 2 AS amount FROM tx", entity="user_id", timestamp="ts"
    )
    ws.registry.apply(view.to_spec())  # version 2
    return ws


def test_cli_materializes_registry_views(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _project(tmp_path)
    store = f"sqlite:///{tmp_path}/cli-online.db"
    code = main(
        ["materialize", "spend", "--dir", str(tmp_path), "--store", store, "--sources-from",
         str(tmp_path / "sources.py"), "--end", "2024-01-10", "--no-progress"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "spend: version 1 now served" in out and "2 entities" in out
    res = ws.online_features(["spend:amount"], [{"user_id": 1}, {"user_id": 2}], store=store)
    assert res.to_dict() == {"spend__amount": [40.0, 14.0]}  # the registry's latest version
    assert ws.online_store(store).current("spend").view_version == 2
    # a pinned version, incrementally from there
    code = main(
        ["materialize", "spend@1", "--dir", str(tmp_path), "--store", store, "--sources-from",
         str(tmp_path / "sources.py"), "--end", "2024-01-11", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    assert ws.online_features(
        ["spend@1:amount"], [{"user_id": 1}], store=store, at=datetime(2024, 1, 11)
    ).to_dict() == {"spend__amount": [20.0]}
    assert ws.online_store(store).current("spend").end == datetime(2024, 1, 11)


def test_cli_errors_name_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _project(tmp_path)
    store = f"sqlite:///{tmp_path}/cli-online.db"
    assert main(["materialize", "spend", "--dir", str(tmp_path), "--store", store, "--no-progress"]) == 2
    assert "register them" in capsys.readouterr().err
    args = ["--dir", str(tmp_path), "--store", store, "--sources-from", str(tmp_path / "sources.py")]
    assert main(["materialize", "spnd", *args]) == 2
    assert "unknown feature view 'spnd'" in capsys.readouterr().err
