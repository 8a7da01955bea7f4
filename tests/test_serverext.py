"""The Jupyter server extension behind the Features sidebar, through a real Jupyter server (jp_fetch).

The pytest-jupyter fixtures are imported into this module only, so their autouse
fixtures (an event loop and a server clean-up per test) touch no other test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures for this module only
from tornado.httpclient import HTTPClientError

import jupyter_features as jf
import registry_client
from jupyter_features.serverext import FACETS, redact_url, search_views, view_detail


def _views(root: Path) -> dict[str, dict[str, Any]]:
    """Two real feature views over a small transactions source, as specs."""
    ws = jf.Workspace(root)
    tx = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "merchant_id": [10, 11, 10, 12],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
            "amount": [5.0, 7.5, 1.0, 20.0],
        }
    )
    ws.register_source("tx", tx, timestamp="ts")
    spend = ws.feature_view(
        "user_spend",
        "SELECT user_id, ts, sum(amount) OVER (PARTITION BY user_id ORDER BY ts) AS spend_total, "
        "count(*) OVER (PARTITION BY user_id ORDER BY ts) AS tx_count FROM tx",
        entity="user_id", timestamp="ts", ttl="30d", description="Running spend of a user",
        owner="fraud-team", tags=["payments"],
    )  # fmt: skip
    merchant = ws.feature_view(
        "merchant_amount",
        "SELECT merchant_id, ts, amount AS last_amount FROM tx",
        entity="merchant_id", timestamp="ts", description="Last amount seen at a merchant",
        owner="risk-team", tags=["merchants"],
    )  # fmt: skip
    spend_v2 = ws.feature_view(
        "user_spend",
        "SELECT user_id, ts, sum(amount) OVER (PARTITION BY user_id ORDER BY ts) AS spend_total, "
        "count(*) OVER (PARTITION BY user_id ORDER BY ts) AS tx_count, amount > 10 AS big FROM tx",
        entity="user_id", timestamp="ts", ttl="30d", description="Running spend of a user",
        owner="fraud-team", tags=["payments"],
    )  # fmt: skip
    return {"spend": spend.to_spec(), "merchant": merchant.to_spec(), "spend_v2": spend_v2.to_spec()}


@pytest.fixture
def seeded(jp_root_dir: Path, tmp_path: Path) -> str:
    """A SQLite registry with user_spend (2 versions, used by a model) and merchant_amount."""
    url = f"sqlite:///{tmp_path / 'seeded' / 'registry.db'}"
    specs = _views(tmp_path)
    registry = registry_client.connect(url)
    registry.apply(specs["spend"], created_by="alice")
    registry.apply(specs["merchant"], created_by="bob")
    registry.apply(specs["spend_v2"], created_by="alice")
    registry.record_usage("fraud_model", ["user_spend:spend_total"])
    registry.close()
    (jp_root_dir / "features.toml").write_text(f'[registry]\nurl = "{url}"\n')
    return url


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"jupyter_features": True}}}


@pytest.fixture(autouse=True)
def _no_env_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JUPYTER_FEATURES_REGISTRY", "JUPYTER_FEATURES_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _get(loop: Any, fetch: Any, *parts: str, **params: str) -> tuple[int, dict[str, Any]]:
    try:
        response = loop.run_until_complete(fetch("jupyter-features", "api", *parts, params=params))
    except HTTPClientError as exc:
        assert exc.response is not None
        return exc.code, json.loads(exc.response.body)
    return response.code, json.loads(response.body)


def test_lists_views_with_features_and_facets(seeded: str, jp_fetch: Any, jp_asyncio_loop: Any) -> None:
    code, body = _get(jp_asyncio_loop, jp_fetch, "views")
    assert code == 200
    assert body["url"] == seeded and body["total"] == body["matched"] == 2
    views = {v["name"]: v for v in body["views"]}
    assert views["user_spend"]["version"] == 2
    assert [f["name"] for f in views["user_spend"]["features"]] == ["spend_total", "tx_count", "big"]
    assert {f["name"]: f["type"] for f in views["user_spend"]["features"]}["big"] == "bool"
    assert views["merchant_amount"]["owner"] == "risk-team"
    facets = {k: {v["value"]: v["count"] for v in values} for k, values in body["facets"].items()}
    assert set(facets) == set(FACETS)
    assert facets["entity"] == {"merchant_id": 1, "user_id": 1}
    assert facets["owner"] == {"fraud-team": 1, "risk-team": 1}
    assert facets["tag"] == {"merchants": 1, "payments": 1}
    assert facets["type"] == {"bool": 1, "float64": 2, "int64": 1}
    assert facets["used_by"] == {"fraud_model": 1}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "merchant"}, ["merchant_amount"]),
        ({"q": "running spend"}, ["user_spend"]),
        ({"q": "nothing-like-this"}, []),
        ({"entity": "user_id"}, ["user_spend"]),
        ({"type": "bool"}, ["user_spend"]),
        ({"owner": "risk-team"}, ["merchant_amount"]),
        ({"tag": "payments"}, ["user_spend"]),
        ({"used_by": "fraud_model"}, ["user_spend"]),
        ({"q": "spend", "owner": "risk-team"}, []),
    ],
)
def test_search_text_and_facets(
    seeded: str, jp_fetch: Any, jp_asyncio_loop: Any, params: dict[str, str], expected: list[str]
) -> None:
    code, body = _get(jp_asyncio_loop, jp_fetch, "views", **params)
    assert code == 200
    assert [v["name"] for v in body["views"]] == expected
    assert body["matched"] == len(expected) and body["total"] == 2
    assert len(body["facets"]["owner"]) == 2  # facets always describe the whole registry


def test_view_detail_has_schema_sql_versions_and_lineage(
    seeded: str, jp_fetch: Any, jp_asyncio_loop: Any
) -> None:
    code, body = _get(jp_asyncio_loop, jp_fetch, "views", "user_spend")
    assert code == 200
    assert body["version"] == body["latest_version"] == 2
    assert [(f["name"], f["type"]) for f in body["features"]] == [
        ("spend_total", "float64"), ("tx_count", "int64"), ("big", "bool"),
    ]  # fmt: skip
    assert body["entity"] == ["user_id"] and body["timestamp"] == "ts" and body["ttl"] == "30d"
    assert "sum(amount)" in body["sql"]
    assert body["sources"] == ["tx"]
    assert "tx.amount" in body["lineage"]["spend_total"]
    assert body["used_by"] == {"fraud_model": ["user_spend:spend_total"]}
    assert [(v["version"], v["created_by"]) for v in body["versions"]] == [(2, "alice"), (1, "alice")]
    assert all(v["created_at"] and len(v["hash"]) == 64 for v in body["versions"])
    assert body["stats"] is None

    code, old = _get(jp_asyncio_loop, jp_fetch, "views", "user_spend", version="1")
    assert code == 200 and old["version"] == 1 and old["latest_version"] == 2
    assert [f["name"] for f in old["features"]] == ["spend_total", "tx_count"]


def test_unknown_view_and_version_are_404_with_a_message(
    seeded: str, jp_fetch: Any, jp_asyncio_loop: Any
) -> None:
    code, body = _get(jp_asyncio_loop, jp_fetch, "views", "user_spnd")
    assert code == 404 and "user_spnd" in body["message"]
    code, body = _get(jp_asyncio_loop, jp_fetch, "views", "user_spend", version="9")
    assert code == 404 and "9" in body["message"]
    code, body = _get(jp_asyncio_loop, jp_fetch, "views", "user_spend", version="two")
    assert code == 400 and "positive integer" in body["message"]


def test_status_reports_the_registry(seeded: str, jp_fetch: Any, jp_asyncio_loop: Any) -> None:
    code, body = _get(jp_asyncio_loop, jp_fetch, "registry")
    assert (code, body["url"], body["exists"], body["views"]) == (200, seeded, True, 2)


def test_missing_registry_is_empty_and_not_created(
    jp_root_dir: Path, jp_fetch: Any, jp_asyncio_loop: Any
) -> None:
    code, body = _get(jp_asyncio_loop, jp_fetch, "views")
    assert code == 200 and body["views"] == [] and body["total"] == 0
    assert "no registry yet" in body["message"] and "export" in body["message"]
    code, body = _get(jp_asyncio_loop, jp_fetch, "views", "user_spend")
    assert code == 404 and "no registry yet" in body["message"]
    code, body = _get(jp_asyncio_loop, jp_fetch, "registry")
    assert code == 200 and body["exists"] is False
    assert not (jp_root_dir / ".jupyter_features").exists()


def test_unreachable_registry_is_503_naming_the_url(
    jp_root_dir: Path, jp_fetch: Any, jp_asyncio_loop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("JUPYTER_FEATURES_REGISTRY", url)
    code, body = _get(jp_asyncio_loop, jp_fetch, "views")
    assert code == 503
    assert url in body["message"] and body["url"] == url


def test_requests_without_a_token_are_refused(seeded: str, jp_fetch: Any, jp_asyncio_loop: Any) -> None:
    with pytest.raises(HTTPClientError) as info:
        jp_asyncio_loop.run_until_complete(
            jp_fetch("jupyter-features", "api", "views", headers={"Authorization": "token wrong"})
        )
    assert info.value.code in (401, 403)


def test_catalog_functions_work_on_a_registry_directly(tmp_path: Path) -> None:
    specs = _views(tmp_path)
    registry = registry_client.connect(f"sqlite:///{tmp_path / 'r.db'}")
    registry.apply(
        {**specs["merchant"], "stats": {"last_amount": {"null_rate": 0.0, "bins": [[0, 10, 3], [10, 20, 1]]}}}
    )
    found = search_views(registry, "last amount")
    assert [v["name"] for v in found["views"]] == ["merchant_amount"]
    detail = view_detail(registry, "merchant_amount")
    assert detail["stats"]["last_amount"]["bins"] == [[0, 10, 3], [10, 20, 1]]
    with pytest.raises(jf.errors.ConfigError, match="unknown search filter"):
        search_views(registry, colour="red")
    registry.close()


def test_redact_url_hides_passwords() -> None:
    assert redact_url("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert redact_url("sqlite:////tmp/r.db") == "sqlite:////tmp/r.db"


def test_extension_hooks_and_a_light_import() -> None:
    assert jf._jupyter_server_extension_points() == [{"module": "jupyter_features.serverext"}]
    assert jf._jupyter_labextension_paths() == [{"src": "labextension", "dest": "jupyter-features"}]
    code = "import sys, jupyter_features; print('tornado' in sys.modules, 'jupyter_features.serverext' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_detail_shows_where_a_view_is_online_and_its_last_check(
    jp_root_dir: Path, tmp_path: Path, jp_fetch: Any, jp_asyncio_loop: Any
) -> None:
    """Materializations and check_online results come from the registry's activity log; a model
    using a view that no store serves gets a warning in the list and in the detail pane."""
    url = f"sqlite:///{tmp_path / 'health' / 'registry.db'}"
    ws = jf.Workspace(tmp_path / "ws", registry=url, online_store=f"sqlite:///{tmp_path / 'online.db'}")
    tx = pd.DataFrame({"user_id": [1, 2], "merchant_id": [10, 11], "amount": [5.0, 7.5],
                       "ts": pd.to_datetime(["2024-01-01", "2024-01-02"])})  # fmt: skip
    ws.register_source("tx", tx, timestamp="ts")
    ws.feature_view("user_spend", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts")
    ws.feature_view("merchant_amount", "SELECT merchant_id, ts, amount AS last_amount FROM tx",
                    entity="merchant_id", timestamp="ts")  # fmt: skip
    ws.export(stats=False)
    ws.registry.record_usage("fraud_model", ["user_spend:amount", "merchant_amount:last_amount"])
    ws.materialize(["user_spend"], end="2024-01-10", progress=False)
    ws.check_online(["user_spend"], progress=False)
    # What any write token can put in the log is cleaned, never shown as is.
    ws.registry.record_activity(
        "materialize", {"runs": [{"view": "user_spend", "version": "<b>", "features": 3}]}
    )
    ws.registry.record_activity("check", {"results": "not a list"})
    ws.close()
    (jp_root_dir / "features.toml").write_text(f'[registry]\nurl = "{url}"\n')

    code, body = _get(jp_asyncio_loop, jp_fetch, "views", "user_spend")
    assert code == 200 and body["warnings"] == []
    online = [r for r in body["online"] if r["store"] != "unknown store"]
    assert len(online) == 1 and online[0]["end"] == "2024-01-10T00:00:00"
    assert (
        online[0]["version"] == 1 and online[0]["view_version"] == 1 and online[0]["features"] == ["amount"]
    )
    hostile = [r for r in body["online"] if r["store"] == "unknown store"]
    assert hostile and hostile[0]["version"] is None and hostile[0]["features"] is None
    check = body["last_check"]
    assert check["ok"] is True and check["entities"] == 2 and check["values"] == 0 and check["version"] == 1

    code, body = _get(jp_asyncio_loop, jp_fetch, "views", "merchant_amount")
    assert code == 200 and body["online"] == [] and body["last_check"] is None
    assert body["warnings"] == ["fraud_model uses it, but it is not materialized in any online store"]
    code, body = _get(jp_asyncio_loop, jp_fetch, "views")
    warnings = {v["name"]: v["warnings"] for v in body["views"]}
    assert warnings == {"merchant_amount": body["views"][0]["warnings"], "user_spend": []}
    assert "not materialized" in warnings["merchant_amount"][0]
