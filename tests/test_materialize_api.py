"""Materialization jobs on a real registry server process: POST starts one, GET follows it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

import jupyter_features as jf
from jupyter_features.registry_server.process import start_server

TOKENS = "writer-token-123 write\nadmin-token-1234 admin\nreader-token-123 read\n"


def _wait(client: httpx.Client, url: str, job_id: str) -> dict[str, Any]:
    for _ in range(3000):
        job: dict[str, Any] = client.get(f"{url}/api/v1/materializations/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {job['status']}")


def test_materialization_job_over_http(tmp_path: Path) -> None:
    data = tmp_path / "tx.parquet"
    pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-02"]),
            "amount": [10.0, 20.0, 7.0],
        }
    ).to_parquet(data, index=False)
    registry_url = f"sqlite:///{tmp_path}/registry.db"
    online = f"sqlite:///{tmp_path}/online.db"
    ws = jf.Workspace(tmp_path / "ws", registry=registry_url, online_store=online)
    ws.register_source("tx", data, timestamp="ts")
    view = ws.feature_view("spend", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts")
    ws.registry.apply(view.to_spec())
    (tmp_path / "tokens.txt").write_text(TOKENS)
    body = {
        "views": ["spend"], "store": online, "end": "2024-01-10T00:00:00",
        "sources": {"tx": {"path": str(data), "timestamp": "ts"}},
    }  # fmt: skip
    with start_server(registry_url, token_file=tmp_path / "tokens.txt") as server:
        admin = httpx.Client(headers={"Authorization": "Bearer admin-token-1234"}, timeout=30)
        writer = httpx.Client(headers={"Authorization": "Bearer writer-token-123"}, timeout=30)
        reader = httpx.Client(headers={"Authorization": "Bearer reader-token-123"}, timeout=30)
        url = f"{server.url}/api/v1/materializations"

        r = admin.post(url, json=body)
        assert r.status_code == 202, r.text
        job = _wait(reader, server.url, r.json()["id"])
        assert job["status"] == "succeeded", job
        assert job["rows_written"] == 2 and job["progress"] == {"spend": {"done": 2, "total": 2}}
        assert (job["results"][0]["version"], job["results"][0]["mode"]) == (1, "full")
        res = ws.online_features(["spend:amount"], [{"user_id": 1}, {"user_id": 2}])
        assert res.to_dict() == {"spend__amount": [20.0, 7.0]}

        # a failing job reports why; the served version stays
        bad = {**body, "views": ["spend", "nope"]}
        job = _wait(reader, server.url, admin.post(url, json=bad).json()["id"])
        assert job["status"] == "failed" and job["error_type"] == "UnknownFeatureViewError"
        assert "unknown feature view 'nope'" in job["error"]

        # scopes: sources/store need admin; read tokens cannot start jobs; no token is 401
        r = writer.post(url, json=body)
        assert r.status_code == 403 and "admin" in r.json()["error"]
        assert reader.post(url, json={"views": ["spend"]}).status_code == 403
        assert httpx.post(url, json=body).status_code == 401
        assert reader.get(f"{url}/{'0' * 32}").status_code == 404
        assert admin.post(url, json={"views": ["bad name"]}).status_code == 422
