"""The registry server as a real process: tokens and scopes, client mistakes, the CLI, fuzzing."""

from __future__ import annotations

import asyncio
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from test_registry_contract import (  # noqa: F401 - fixtures
    ADMIN,
    ADMIN_NAME,
    READER,
    WRITER,
    WRITER_NAME,
    make_spec,
    name,
    pg_store,
    postgres_server,
    sqlite_server,
    token_file,
)

import registry_client
from jupyter_features.cli import main as cli_main
from jupyter_features.errors import AuthError, ConfigError, PermissionDeniedError, RegistryUnavailableError
from jupyter_features.tokens import Identity, default_token_name, load_tokens


def _client(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30)


@pytest.fixture
def api(sqlite_server: str) -> Iterator[httpx.Client]:  # noqa: F811
    with _client(sqlite_server, ADMIN) as client:
        yield client


# -- tokens and scopes ---------------------------------------------------------------------
def test_health_docs_and_openapi_need_no_token(sqlite_server: str) -> None:  # noqa: F811
    health = httpx.get(f"{sqlite_server}/api/v1/health").json()
    assert health["status"] == "ok" and health["store"] == "sqlite" and health["auth"] is True
    assert health["schema_version"] >= 3
    assert httpx.get(f"{sqlite_server}/docs").status_code == 200
    paths = httpx.get(f"{sqlite_server}/openapi.json").json()["paths"]
    assert {"/api/v1/views", "/api/v1/views/{name}", "/api/v1/views/{name}/versions", "/api/v1/views/{name}/lineage",
            "/api/v1/usage", "/api/v1/activity", "/api/v1/import"} <= set(paths)  # fmt: skip


def test_requests_without_a_valid_token_get_401(sqlite_server: str) -> None:  # noqa: F811
    for token in (None, "not-a-token-at-all"):
        with _client(sqlite_server, token) as client:
            response = client.get("/views")
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "token" in response.json()["error"]
    with pytest.raises(AuthError, match="JUPYTER_FEATURES_TOKEN"):
        registry_client.connect(sqlite_server).list()


def test_scopes_read_write_admin(sqlite_server: str, name: str) -> None:  # noqa: F811
    body = {"spec": make_spec(name)}
    with _client(sqlite_server, READER) as reader:
        assert reader.get("/views").status_code == 200
        denied = reader.post("/views", json=body)
        assert denied.status_code == 403 and "'write'" in denied.json()["error"]
        assert reader.post("/activity", json={"kind": "export"}).status_code == 403
    with _client(sqlite_server, WRITER) as writer:
        record = writer.post("/views", json=body).json()
        assert record["version"] == 1
        imported = {"records": [record]}
        assert writer.post("/import", json=imported).status_code == 403
    with _client(sqlite_server, ADMIN) as admin:
        assert admin.post("/import", json=imported).status_code == 200
    with pytest.raises(PermissionDeniedError):
        registry_client.connect(sqlite_server, token=READER).apply(make_spec(name))


# -- provenance comes from the token -------------------------------------------------------------
def test_created_by_is_the_token_name_whatever_the_body_says(sqlite_server: str, name: str) -> None:  # noqa: F811
    assert WRITER_NAME == "alice"
    with _client(sqlite_server, WRITER) as alice:
        record = alice.post("/views", json={"spec": make_spec(name), "created_by": "bob"}).json()
        assert record["created_by"] == "alice"
        second = {"spec": make_spec(name, expr="amount * 3"), "created_by": "bob@bobs-laptop"}
        assert alice.post("/views", json=second).json()["created_by"] == "alice"
        stored = alice.get(f"/views/{name}/versions").json()
    assert [(v["version"], v["created_by"]) for v in stored] == [(1, "alice"), (2, "alice")]
    # The client library sends its own user@host: the server ignores that too.
    reg = registry_client.connect(sqlite_server, token=WRITER)
    try:
        assert reg.apply(make_spec(name, expr="amount * 4"), created_by="mallory").created_by == "alice"
    finally:
        reg.close()


def test_activity_actor_is_the_token_name(sqlite_server: str, name: str) -> None:  # noqa: F811
    kind = "export_" + name
    forged = {"user": "bob", "host": "bobs-laptop", "notebook": "fraud.ipynb", "views": {name: 1}}
    with _client(sqlite_server, WRITER) as alice:
        assert alice.post("/activity", json={"kind": kind, "detail": forged}).status_code == 204
    reg = registry_client.connect(sqlite_server, token=WRITER)
    try:
        reg.record_activity(kind, {"user": "mallory", "views": {name: 2}})
        entries = reg.activity(kind)
    finally:
        reg.close()
    assert [e["actor"] for e in entries] == ["alice", "alice"]
    for entry in entries:
        assert entry["detail"]["user"] == "alice"
        assert entry["detail"]["host"] == entry["detail"]["remote_addr"] == "127.0.0.1"
    assert entries[-1]["detail"]["notebook"] == "fraud.ipynb"  # the rest of the detail is kept


def test_admin_import_keeps_the_recorded_provenance(sqlite_server: str, name: str) -> None:  # noqa: F811
    with _client(sqlite_server, ADMIN) as admin:
        record = admin.post("/views", json={"spec": make_spec(name)}).json()
        assert record["created_by"] == ADMIN_NAME
        moved = {**record, "name": name + "_copy", "spec": {**record["spec"], "name": name + "_copy"}}
        moved["created_by"] = "carol@c"
        imported = admin.post("/import", json={"records": [moved]})
        assert imported.status_code == 200, imported.text
        assert imported.json()[0]["created_by"] == "carol@c"


def test_an_open_server_keeps_what_clients_declare(tmp_path: Path) -> None:
    from jupyter_features.registry_server.process import start_server

    with start_server(f"sqlite:///{tmp_path}/r.db") as server, _client(server.url) as client:
        record = client.post("/views", json={"spec": make_spec("open_view"), "created_by": "bob"}).json()
        assert record["created_by"] == "bob"
        client.post("/activity", json={"kind": "export", "detail": {"user": "bob", "host": "h"}})
        assert client.get("/activity").json()[0]["actor"] == "bob@h"


def test_token_files_name_their_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("alice-token-1 write alice\n\n  # a comment\nanonymous-token read   # no name\n")
    tokens = load_tokens(path)
    assert tokens["alice-token-1"] == Identity("alice", "write")
    unnamed = tokens["anonymous-token"]
    assert unnamed == Identity(default_token_name("anonymous-token"), "read")
    assert unnamed.name.startswith("token-") and len(unnamed.name) == 10
    assert "anonymous" not in unnamed.name and default_token_name("other-token") != unnamed.name
    for text, message in [
        ("alice-token-1 write alice extra\n", "TOKEN SCOPE"),
        ("alice-token-1 write al<script>ice\n", "a name is"),
        ("alice-token-1 write " + "a" * 65 + "\n", "a name is"),
        ("alice-token-1 write alice\nalice-token-1 read bob\n", "earlier line"),
        ("# nothing\n", "no tokens"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_tokens(path)
    path.write_bytes(b"\xff\xfe token")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_tokens(path)


# -- client mistakes are 4xx, never 500 ----------------------------------------------------------
def test_malformed_requests_get_4xx_with_a_message(api: httpx.Client, name: str) -> None:  # noqa: F811
    api.post("/views", json={"spec": make_spec(name)}).raise_for_status()
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("POST", "/views", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
        ("POST", "/views", {"json": [1, 2]}, 422),
        ("POST", "/views", {"json": {"spec": {**make_spec(name), "entity": 5}}}, 422),
        ("POST", "/views", {"json": {"spec": {**make_spec(name), "sql": "x" * 100_001}}}, 422),
        ("POST", "/views", {"json": {"spec": {**make_spec(name), "sql": "select 'unclosed"}}}, 422),
        ("POST", "/views", {"json": {"spec": {**make_spec(name), "sql": "DROP TABLE tx"}}}, 422),
        (
            "POST",
            "/views",
            {"json": {"spec": {**make_spec(name), "sql": "SELECT * FROM read_csv('/etc/passwd')"}}},
            422,
        ),
        ("POST", "/views", {"json": {"spec": {**make_spec(name), "sql": "SELECT 1; SELECT 2"}}}, 422),
        ("POST", "/views", {"json": {"spec": make_spec(name), "extra": 1}}, 422),
        ("POST", "/views", {"json": {"spec": {**make_spec(name), "ttl": "-3d"}}}, 422),
        ("POST", "/views", {"json": {"spec": {**make_spec(name), "ttl": "99999999999999999999d"}}}, 422),
        ("POST", "/views", {"json": {"spec": {**make_spec(name), "ttl": "1d99999999999h"}}}, 422),
        ("GET", f"/views/{name}x", {}, 404),
        ("GET", f"/views/{name}", {"params": {"version": "abc"}}, 422),
        ("GET", f"/views/{name}", {"params": {"version": "0"}}, 422),
        ("GET", f"/views/{name}/versions/99999999999999", {}, 422),
        ("GET", f"/views/{name}/versions/7", {}, 404),
        ("GET", "/views/bad%20name", {}, 422),
        ("GET", "/views", {"params": {"q": "a\x00b"}}, 422),
        ("GET", "/views", {"params": {"limit": "-1"}}, 422),
        ("POST", "/usage", {"json": {"model": "m", "features": ["no such ref"]}}, 400),
        ("POST", "/usage", {"json": {"model": "m", "features": [f"{name}:nope"]}}, 404),
        ("POST", "/activity", {"json": {"kind": "", "detail": {}}}, 422),
        ("POST", "/activity", {"json": {"kind": "export", "detail": {"x": "y" * 70_000}}}, 422),
        ("GET", "/nowhere", {}, 404),
        ("DELETE", "/views", {}, 405),
    ]
    record = api.get(f"/views/{name}").json()
    for when in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):  # past UTC's range
        cases.append(("POST", "/import", {"json": {"records": [{**record, "created_at": when}]}}, 422))
    for method, path, kwargs, status in cases:
        response = api.request(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.text[:300])
        assert response.json()["error"], (method, path)
        assert str(response.json()["type"]).endswith("Error"), (method, path)
    assert api.get("/nowhere").json()["type"] == "NotFoundError"
    assert api.delete("/views").json()["type"] == "MethodNotAllowedError"
    # Nothing refused was stored: the view keeps its one version and its SQL.
    versions = api.get(f"/views/{name}/versions").json()
    assert [v["version"] for v in versions] == [1]
    assert api.get(f"/views/{name}").json()["spec"]["sql"] == make_spec(name)["sql"]
    missing = api.get(f"/views/{name}x").json()
    assert f"did you mean '{name}'" in missing["error"] and missing["type"] == "NotFoundError"


def test_oversize_bodies_get_413(api: httpx.Client) -> None:
    big = b'{"spec": "' + b"x" * 9_000_000 + b'"}'
    assert api.post("/views", content=big, headers={"content-type": "application/json"}).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"spec": "'
        for _ in range(90):
            yield b"x" * 100_000
        yield b'"}'

    response = api.post("/views", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "bytes" in response.json()["error"]


@pytest.mark.parametrize("server", ["sqlite_server", "postgres_server"])
def test_fuzzed_requests_never_get_a_5xx(server: str, request: pytest.FixtureRequest) -> None:
    """Schemathesis: schema-conforming and schema-violating requests to every operation, as admin."""
    url = request.getfixturevalue(server)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 10
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                      database=None, phases=[Phase.explicit, Phase.generate])  # fmt: skip
            def run(case: Any) -> None:
                response = case.call(headers=headers, timeout=30)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                    )

            try:
                run()
            except Unsatisfiable:  # nothing to violate, e.g. GET /health in negative mode
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    assert failures == []


# -- the process and the CLI ---------------------------------------------------------------
def test_without_tokens_it_serves_loopback_only(tmp_path: Path) -> None:
    from jupyter_features.registry_server.process import start_server

    with start_server(f"sqlite:///{tmp_path}/r.db", log=tmp_path / "log") as server:
        assert "loopback only" in server.output()
        reg = registry_client.connect(server.url)
        assert reg.apply(make_spec("open_view")).version == 1
        reg.close()
    code = cli_main(["registry", "serve", "--store", f"sqlite:///{tmp_path}/r.db", "--host", "0.0.0.0"])
    assert code == 2


def test_bad_token_files_and_stores_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "tokens.txt"
    bad.write_text("short write\n")
    assert (
        cli_main(["registry", "serve", "--store", f"sqlite:///{tmp_path}/r.db", "--token-file", str(bad)])
        == 2
    )
    bad.write_text("long-enough-token superuser\n")
    assert (
        cli_main(["registry", "serve", "--store", f"sqlite:///{tmp_path}/r.db", "--token-file", str(bad)])
        == 2
    )
    assert "line 1" in capsys.readouterr().err
    assert cli_main(["registry", "serve", "--store", "http://elsewhere:1"]) == 2


def test_unreachable_server_is_a_clear_error() -> None:
    from jupyter_features.registry_server.process import free_port

    reg = registry_client.connect(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RegistryUnavailableError, match="registry serve"):
        reg.list()


def test_cli_export_and_import_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    reg = registry_client.connect(url)
    reg.apply(make_spec("cli_view"))
    reg.close()
    assert cli_main(["registry", "export", str(tmp_path / "yaml"), "--registry", url]) == 0
    assert (
        cli_main(["registry", "import", str(tmp_path / "yaml"), "--registry", f"sqlite:///{tmp_path}/b.db"])
        == 0
    )
    assert "cli_view@1" in capsys.readouterr().out


def test_optional_routers_mount_under_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A later part adds jupyter_features/registry_server/materializations.py with a ``router``."""
    from fastapi import APIRouter, Depends

    from jupyter_features.registry_server import app as app_module
    from jupyter_features.registry_server.auth import require_scope

    plugin = types.ModuleType("jf_test_plugin")
    plugin.router = APIRouter()  # type: ignore[attr-defined]

    @plugin.router.get("/materializations", dependencies=[Depends(require_scope("write"))])  # type: ignore[attr-defined]
    def jobs() -> list[str]:
        return ["job"]

    monkeypatch.setitem(sys.modules, "jf_test_plugin", plugin)
    monkeypatch.setattr(app_module, "PLUGINS", (*app_module.PLUGINS, "jf_test_plugin", "jf_absent_plugin"))
    app = app_module.create_app(f"sqlite:///{tmp_path}/r.db", {ADMIN: "admin", READER: "read"})

    async def calls() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            ok = await client.get("/api/v1/materializations", headers={"Authorization": f"Bearer {ADMIN}"})
            denied = await client.get(
                "/api/v1/materializations", headers={"Authorization": f"Bearer {READER}"}
            )
            return ok, denied

    loop = asyncio.new_event_loop()  # not asyncio.run: it would unset the thread's loop that later tests use
    try:
        ok, denied = loop.run_until_complete(calls())
    finally:
        loop.close()
        app.state.registry.close()
    assert ok.json() == ["job"]
    assert denied.status_code == 403 and json.loads(denied.text)["type"] == "PermissionDeniedError"


def test_reads_follow_writes_from_any_writer(tmp_path: Path, token_file: Path, name: str) -> None:  # noqa: F811
    """The server reuses serialized records; a write by another client of the same database shows at once."""
    from jupyter_features.registry_server.process import start_server

    store = f"sqlite:///{tmp_path}/registry.db"
    direct = registry_client.connect(store)
    direct.apply(make_spec(name, description="first words"))
    with (
        start_server(store, token_file=token_file, log=tmp_path / "server.log") as server,
        _client(server.url, READER) as client,
    ):
        assert client.get(f"/views/{name}").json()["spec"]["description"] == "first words"
        assert [r["name"] for r in client.get("/views", params={"q": "first"}).json()] == [name]
        direct.apply(make_spec(name, description="second words"))  # metadata only: same version, in place
        view = client.get(f"/views/{name}").json()
        assert view["version"] == 1 and view["spec"]["description"] == "second words"
        assert client.get("/views", params={"q": "first"}).json() == []
        assert client.get("/views", params={"q": "second"}).json()[0]["spec"]["description"] == "second words"
        direct.apply(make_spec(name, expr="amount * 3", description="third words"))  # a new version
        assert client.get(f"/views/{name}").json()["version"] == 2
        assert (
            client.get(f"/views/{name}", params={"version": 1}).json()["spec"]["description"]
            == "second words"
        )
        assert client.get("/views", params={"q": "third"}).json()[0]["version"] == 2
    direct.close()
