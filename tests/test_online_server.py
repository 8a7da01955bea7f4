"""`jupyter-features serve`: real HTTP server processes answering online-feature reads."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from online_stores import start_redis_server

import jupyter_features as jf

READ = "/api/v1/online-features"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A `jupyter-features serve` process; ``lines`` collects what it prints."""

    def __init__(self, proc: subprocess.Popen[str], base: str) -> None:
        self.proc = proc
        self.base = base
        self.port = int(base.rsplit(":", 1)[1])
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def read(self, body: dict[str, object], **kwargs: object) -> httpx.Response:
        return httpx.post(f"{self.base}{READ}", json=body, **kwargs)  # type: ignore[arg-type]


@contextmanager
def run_server(store_url: str, *args: str) -> Iterator[Server]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_features.cli", "serve", "--store", store_url, "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    server = Server(proc, f"http://127.0.0.1:{port}")
    try:
        for _ in range(1200):
            assert proc.poll() is None, server.output()
            try:
                if httpx.get(f"{server.base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)


def _materialize(ws: jf.Workspace, amount: list[float], store: str | None = None) -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "amount": amount,
            "country": ["US", "GB"],
        }
    )
    ws.register_source("tx", frame, timestamp="ts")
    ws.feature_view("spend", "SELECT *, ts AS seen FROM tx", entity="user_id", timestamp="ts")
    ws.feature_view(
        "by_country", "SELECT country, ts, amount AS spent FROM tx", entity="country", timestamp="ts"
    )
    ws.materialize(["spend", "by_country"], end=datetime(2024, 1, 10), progress=False, store=store)


@pytest.fixture
def workspace(store_url: str, tmp_path: Path) -> jf.Workspace:
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    _materialize(ws, [1.5, float("nan")])
    return ws


@pytest.fixture
def server(store_url: str, workspace: jf.Workspace) -> Iterator[Server]:
    with run_server(store_url) as s:
        yield s


def test_online_features_over_http(server: Server) -> None:
    body = {
        "features": ["spend:amount", "spend:country", "spend:seen"],
        "entities": [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}],
    }
    r = server.read(body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "results": {
            "spend__amount": [1.5, None, None],
            "spend__country": ["US", "GB", None],
            "spend__seen": ["2024-01-01T00:00:00", "2024-01-02T00:00:00", None],
        }
    }
    columnar = {
        "features": ["spend:country", "by_country:spent"],
        "entities": {"user_id": [2, 1], "country": ["GB", "US"]},
    }
    assert server.read(columnar).json() == {
        "results": {"spend__country": ["GB", "US"], "by_country__spent": [None, 1.5]}
    }
    assert server.read({"features": ["by_country:*"], "entities": []}).json() == {
        "results": {"by_country__spent": []}
    }


def test_errors_are_json_with_status(server: Server) -> None:
    def error(r: httpx.Response, status: int, kind: str) -> str:
        assert r.status_code == status, r.text
        assert r.json()["type"] == kind, r.text
        return str(r.json()["error"])

    assert "did you mean 'amount'" in error(
        server.read({"features": ["spend:amout"], "entities": [{"user_id": 1}]}), 404, "UnknownFeatureError"
    )
    error(server.read({"features": ["nope:x"], "entities": [{"user_id": 1}]}), 404, "NotMaterializedError")
    assert "view:feature" in error(
        server.read({"features": ["spend"], "entities": [{"user_id": 1}]}), 400, "FeatureReferenceError"
    )
    assert "no key 'user_id'" in error(
        server.read({"features": ["spend:amount"], "entities": [{"id": 1}]}), 400, "InvalidRequestError"
    )
    assert "no features" in error(server.read({"entities": []}), 400, "InvalidRequestError")
    assert "'entites'" in error(
        server.read({"features": ["spend:amount"], "entites": [{"user_id": 1}]}), 400, "InvalidRequestError"
    )
    assert "same length" in error(
        server.read({"features": ["spend:amount"], "entities": {"user_id": [1], "x": [1, 2]}}),
        400,
        "InvalidRequestError",
    )
    for content in (b"{not json", b"[1, 2]", b'"x"', b"\xff\xfe", b""):
        error(httpx.post(f"{server.base}{READ}", content=content), 400, "InvalidRequestError")
    too_many = {"features": ["spend:amount"], "entities": {"user_id": list(range(10_001))}}
    assert "at most 10,000" in error(server.read(too_many), 400, "InvalidRequestError")
    error(httpx.get(f"{server.base}/nowhere"), 404, "NotFoundError")
    r = httpx.get(f"{server.base}{READ}")
    assert error(r, 405, "MethodNotAllowedError") and r.headers["allow"] == "POST"


INT_KEYS = [(10**30, "out of the int64 range"), (1.9, "1.9"), (True, "True"), ("42", "'42'"), (None, "None"),
            (2**63, "out of the int64 range"), (-(2**63) - 1, "out of the int64 range"), ([1], "[1]")]  # fmt: skip


def test_entity_keys_must_be_exactly_of_the_key_type(server: Server) -> None:
    for key, shown in INT_KEYS:
        for entities in ([{"user_id": 1}, {"user_id": key}], {"user_id": [1, key]}):
            r = server.read({"features": ["spend:amount"], "entities": entities})
            assert r.status_code == 400, (key, r.text)
            body = r.json()
            assert body["type"] == "InvalidRequestError"
            assert "'user_id'" in body["error"] and "'spend'" in body["error"] and shown in body["error"]
    edge = server.read({"features": ["spend:amount"], "entities": {"user_id": [2**63 - 1, -(2**63)]}})
    assert edge.json() == {"results": {"spend__amount": [None, None]}}
    for key in (42, 1.5, False, None, {"a": 1}):
        r = server.read({"features": ["by_country:spent"], "entities": [{"country": key}]})
        assert r.status_code == 400 and r.json()["type"] == "InvalidRequestError", r.text
        assert "'country'" in r.json()["error"] and "'by_country'" in r.json()["error"]


def test_body_limit_is_413(store_url: str, workspace: jf.Workspace) -> None:
    with run_server(store_url, "--max-body", "2000") as server:
        big = {"features": ["spend:amount"], "entities": {"user_id": list(range(1000))}}
        r = server.read(big)
        assert r.status_code == 413 and r.json()["type"] == "RequestTooLargeError", r.text

        def chunks() -> Iterator[bytes]:  # no content-length: the server counts what streams in
            yield b'{"features": ["spend:amount"], "entities": {"user_id": ['
            for i in range(500):
                yield f"{i}, ".encode()
            yield b"1]}}"

        r = httpx.post(f"{server.base}{READ}", content=chunks())
        assert r.status_code == 413 and "2,000 bytes" in r.json()["error"]
        assert server.read({"features": ["spend:amount"], "entities": [{"user_id": 1}]}).status_code == 200


def test_health_lists_the_views_served(server: Server) -> None:
    health = httpx.get(f"{server.base}/health").json()
    assert health["status"] == "ok" and set(health["views"]) == {"spend", "by_country"}
    assert health["views"]["spend"]["end"] == "2024-01-10T00:00:00"
    assert health["views"]["spend"]["version"] == 1 and health["views"]["spend"]["rows"] == 2
    assert httpx.get(f"{server.base}/api/v1/health").json()["views"] == health["views"]


def test_metrics_count_requests_errors_and_views(server: Server) -> None:
    for _ in range(3):
        assert server.read({"features": ["spend:amount"], "entities": {"user_id": [1, 2]}}).status_code == 200
    assert server.read({"features": ["spend:nope"], "entities": [{"user_id": 1}]}).status_code == 404
    text = httpx.get(f"{server.base}/metrics").text
    assert _metric(text, "requests_total", route="online-features", status="200") == 3
    assert (
        _metric(text, "errors_total", route="online-features", status="404", type="UnknownFeatureError") == 1
    )
    assert _metric(text, "view_reads_total", view="spend") == 3
    assert _metric(text, "view_entities_total", view="spend") == 6
    assert _metric(text, "request_duration_seconds_count", route="online-features") == 4
    assert _metric(text, "request_duration_seconds_bucket", route="online-features", le="+Inf") == 4


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^jupyter_features_server_{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_docs_and_openapi(server: Server) -> None:
    spec = httpx.get(f"{server.base}/openapi.json").json()
    assert "post" in spec["paths"][READ]
    assert "swagger" in httpx.get(f"{server.base}/docs").text.lower()


def test_every_worker_serves_a_new_materialization(store_url: str, workspace: jf.Workspace) -> None:
    """Two workers; materialize again; each worker serves the new values, read through new connections."""
    body = {"features": ["spend:amount"], "entities": [{"user_id": 1}]}
    with run_server(store_url, "--workers", "2", "--access-log") as server:

        def read_until_both_workers(expected: float) -> None:
            workers: set[int] = set()
            for _ in range(400):  # new connections spread over the workers
                start = len(server.lines)
                assert server.read(body).json() == {"results": {"spend__amount": [expected]}}
                workers |= _logged_workers(server, start)
                if len(workers) == 2:
                    return
            raise AssertionError(f"only workers {workers} answered")

        read_until_both_workers(1.5)
        _materialize(workspace, [7.0, 8.0])
        read_until_both_workers(7.0)
        _materialize(workspace, [9.0, 8.0])
        read_until_both_workers(9.0)
        health = httpx.get(f"{server.base}/health").json()
        assert health["views"]["spend"]["version"] == 3
        # /metrics answers for every worker, whichever one serves it
        reads = sum(1 for line in server.lines if '"/api/v1/online-features"' in line)
        for _ in range(4):
            text = httpx.get(f"{server.base}/metrics").text
            assert _metric(text, "requests_total", route="online-features", status="200") == reads


def _logged_workers(server: Server, start: int) -> set[int]:
    for _ in range(200):  # the access log line is written after the response
        found = {json.loads(ln)["worker"] for ln in server.lines[start:] if ln.startswith("{") and READ in ln}
        if found:
            return found
        time.sleep(0.01)
    return set()


def _held_request(port: int, body: bytes) -> socket.socket:
    """A read whose body has not all arrived: in flight until the rest is sent."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST {READ} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:10])
    return sock


def _finish(sock: socket.socket, body: bytes) -> tuple[int, dict[str, object]]:
    sock.sendall(body[10:])
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    head, payload = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(payload)


def _length(data: bytes) -> int:
    m = re.search(rb"content-length: (\d+)", data.split(b"\r\n\r\n", 1)[0], re.IGNORECASE)
    return int(m.group(1)) if m else 0


def _wait_in_flight(server: Server, count: int) -> None:
    for _ in range(1000):
        if _metric(httpx.get(f"{server.base}/metrics").text, "requests_in_flight") == count:
            return
        time.sleep(0.01)
    raise AssertionError(f"never {count} request(s) in flight")


def test_overload_is_shed_with_503(store_url: str, workspace: jf.Workspace) -> None:
    body = json.dumps({"features": ["spend:amount"], "entities": [{"user_id": 1}]}).encode()
    with run_server(store_url, "--max-in-flight", "1") as server:
        held = _held_request(server.port, body)
        _wait_in_flight(server, 1)
        shed = server.read(json.loads(body))
        assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
        assert shed.json()["type"] == "ServerBusyError" and "limit" in shed.json()["error"]
        assert httpx.get(f"{server.base}/health").status_code == 200  # operators still get answers
        assert _finish(held, body) == (200, {"results": {"spend__amount": [1.5]}})
        _wait_in_flight(server, 0)
        assert server.read(json.loads(body)).status_code == 200
        text = httpx.get(f"{server.base}/metrics").text
        assert _metric(text, "errors_total", status="503", type="ServerBusyError") == 1


def test_sigterm_lets_requests_in_flight_finish(store_url: str, workspace: jf.Workspace) -> None:
    body = json.dumps({"features": ["spend:country"], "entities": [{"user_id": 2}]}).encode()
    with run_server(store_url) as server:
        held = _held_request(server.port, body)
        _wait_in_flight(server, 1)
        server.proc.send_signal(signal.SIGTERM)
        for _ in range(500):  # it stops taking connections ...
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                time.sleep(0.01)
            except OSError:
                break
        else:
            raise AssertionError("still accepting connections after SIGTERM")
        assert _finish(held, body) == (
            200,
            {"results": {"spend__country": ["GB"]}},
        )  # ... and finishes this one
        assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once done


def test_tokens_guard_reads_and_metrics(store_url: str, workspace: jf.Workspace, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("reader-token-1 read service-a\nwriter-token-1 write\n# comment\n")
    body = {"features": ["spend:amount"], "entities": [{"user_id": 1}]}
    with run_server(store_url, "--token-file", str(tokens)) as server:
        r = server.read(body)
        assert (
            r.status_code == 401
            and r.json()["type"] == "AuthError"
            and r.headers["www-authenticate"] == "Bearer"
        )
        r = server.read(body, headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401 and r.json()["type"] == "AuthError"
        for token in ("reader-token-1", "writer-token-1"):
            r = server.read(body, headers={"Authorization": f"Bearer {token}"})
            assert r.json() == {"results": {"spend__amount": [1.5]}}
        assert httpx.get(f"{server.base}/metrics").status_code == 401
        auth = {"Authorization": "Bearer reader-token-1"}
        assert "requests_total" in httpx.get(f"{server.base}/metrics", headers=auth).text
        assert "views" not in httpx.get(f"{server.base}/health").json()  # no view names without a token
        assert "spend" in httpx.get(f"{server.base}/health", headers=auth).json()["views"]


def test_a_public_address_needs_a_token_file(store_url: str, workspace: jf.Workspace, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "jupyter_features.cli", "serve", "--store", store_url, "--host", "0.0.0.0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--token-file" in proc.stderr and "0.0.0.0" in proc.stderr
    bad = tmp_path / "bad"
    bad.write_text("tok read extra words here\n")
    proc = subprocess.run([*cmd, "--token-file", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "line 1" in proc.stderr


def test_access_log_is_one_json_line_per_request(store_url: str, workspace: jf.Workspace) -> None:
    with run_server(store_url, "--access-log") as server:
        start = len(server.lines)
        server.read({"features": ["spend:amount"], "entities": {"user_id": [1, 2, 3]}})
        server.read({"features": ["spend:x"], "entities": [{"user_id": 1}]})
        for _ in range(500):
            lines = [json.loads(ln) for ln in server.lines[start:] if ln.startswith("{")]
            logged = [
                entry for entry in lines if entry["path"] != "/health"
            ]  # the start-up probe may log late
            if len(logged) >= 2:
                break
            time.sleep(0.01)
        ok, failed = logged[-2:]
        assert ok["status"] == 200 and ok["path"] == READ and ok["views"] == ["spend"] and ok["entities"] == 3
        assert failed["status"] == 404 and failed["error"] == "UnknownFeatureError"
        assert {"time", "method", "ms", "client", "worker"} <= set(ok)


def test_health_and_reads_say_503_while_the_store_is_down(tmp_path: Path) -> None:
    port = _free_port()
    redis_server = start_redis_server(tmp_path, port)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _materialize(jf.Workspace(tmp_path / "ws", online_store=url), [1.5, 2.5])
        body = {"features": ["spend:amount"], "entities": [{"user_id": 2}]}
        with run_server(url) as server:
            assert server.read(body).json() == {"results": {"spend__amount": [2.5]}}
            redis_server.terminate()
            redis_server.wait()
            health = httpx.get(f"{server.base}/health")
            assert health.status_code == 503 and health.json()["status"] == "unavailable"
            assert health.json()["type"] == "OnlineStoreError" and "unreachable" in health.json()["error"]
            r = server.read(body)
            assert (
                r.status_code == 503
                and r.json()["type"] == "OnlineStoreError"
                and r.headers["retry-after"] == "1"
            )
            redis_server = start_redis_server(tmp_path, port)  # back, from its append-only file
            assert server.read(body).json() == {"results": {"spend__amount": [2.5]}}
            assert httpx.get(f"{server.base}/health").json()["views"]["spend"]["version"] == 1
    finally:
        redis_server.terminate()
        redis_server.wait()


def test_reads_as_of_a_time_and_pushes(store_url: str, workspace: jf.Workspace, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("reader-token-1 read\nwriter-token-1 write\n")
    reader, writer = {"Authorization": "Bearer reader-token-1"}, {"Authorization": "Bearer writer-token-1"}
    row = {
        "user_id": 1,
        "ts": "2024-01-11T00:00:00",
        "amount": 9.0,
        "country": "FR",
        "seen": "2024-01-11T00:00:00Z",
    }
    push = {"view": "spend", "rows": [row]}

    def amount(server: Server, at: str) -> object:
        body = {"features": ["spend:amount"], "entities": [{"user_id": 1}], "at": at}
        r = server.read(body, headers=reader)
        assert r.status_code == 200, r.text
        return r.json()["results"]["spend__amount"][0]

    with run_server(store_url, "--token-file", str(tokens)) as server:
        url = f"{server.base}/api/v1/push"
        assert httpx.post(url, json=push).status_code == 401
        r = httpx.post(url, json=push, headers=reader)
        assert r.status_code == 403 and r.json()["type"] == "PermissionDeniedError"
        state = workspace.online_store().push_state("spend")
        refused = [
            ({"view": "spend", "rows": [{**row, "amount": "lots"}]}, "float64", 400),
            (
                {"view": "spend", "rows": [{k: v for k, v in row.items() if k != "country"}]},
                "lacks country",
                400,
            ),
            ({"view": "spend", "rows": [{**row, "ts": "yesterday"}]}, "not a time", 400),
            ({"view": "spend", "rows": [{**row, "user_id": "1"}]}, "int64", 400),
            ({"view": "spend", "rows": [row], "to": "x"}, "unknown field", 400),
            ({"view": "nope", "rows": [row]}, "not materialized", 404),
        ]
        for body, message, status in refused:
            r = httpx.post(url, json=body, headers=writer)
            assert r.status_code == status and message in r.json()["error"], (body, r.text)
        assert workspace.online_store().push_state("spend") == state  # nothing written
        r = server.read(
            {"features": ["spend:amount"], "entities": [{"user_id": 1}], "at": "soon"}, headers=reader
        )
        assert r.status_code == 400 and '"at"' in r.json()["error"]
        r = httpx.post(url, json=push, headers=writer)
        assert r.status_code == 200 and r.json()["rows"] == 1, r.text
        assert amount(server, "2024-01-10T00:00:00") == 1.5
        assert amount(server, "2024-01-12T00:00:00Z") == 9.0
    got = workspace.online_features(["spend:country"], [{"user_id": 1}], at=datetime(2024, 1, 12))
    assert got.to_dict() == {"spend__country": ["FR"]}
