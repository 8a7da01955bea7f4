"""`jupyter-features serve`: a real HTTP server process answering online-feature reads."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

import jupyter_features as jf


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[str]:
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "amount": [1.5, float("nan")],
            "country": ["US", "GB"],
        }
    )
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    ws.register_source("tx", frame, timestamp="ts")
    ws.feature_view("spend", "SELECT *, ts AS seen FROM tx", entity="user_id", timestamp="ts")
    ws.materialize(["spend"], end=datetime(2024, 1, 10), progress=False)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_features.cli", "serve", "--store", store_url, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_online_features_over_http(server: str) -> None:
    body = {
        "features": ["spend:amount", "spend:country", "spend:seen"],
        "entities": [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}],
    }
    r = httpx.post(f"{server}/api/v1/online-features", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "results": {
            "spend__amount": [1.5, None, None],
            "spend__country": ["US", "GB", None],
            "spend__seen": ["2024-01-01T00:00:00", "2024-01-02T00:00:00", None],
        }
    }
    columnar = {"features": ["spend:country"], "entities": {"user_id": [2, 1]}}
    assert httpx.post(f"{server}/api/v1/online-features", json=columnar).json() == {
        "results": {"spend__country": ["GB", "US"]}
    }


def test_errors_are_json_with_status(server: str) -> None:
    url = f"{server}/api/v1/online-features"
    r = httpx.post(url, json={"features": ["spend:amout"], "entities": [{"user_id": 1}]})
    assert r.status_code == 404 and "did you mean 'amount'" in r.json()["error"]
    r = httpx.post(url, json={"features": ["nope:x"], "entities": [{"user_id": 1}]})
    assert r.status_code == 404 and r.json()["type"] == "NotMaterializedError"
    r = httpx.post(url, json={"features": ["spend"], "entities": [{"user_id": 1}]})
    assert r.status_code == 400 and "view:feature" in r.json()["error"]
    r = httpx.post(url, json={"features": ["spend:amount"], "entities": [{"id": 1}]})
    assert r.status_code == 400 and "no key 'user_id'" in r.json()["error"]
    assert httpx.post(url, json={"entities": []}).status_code == 422
