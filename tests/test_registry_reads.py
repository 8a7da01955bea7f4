"""The registry server's read path: the change counter, kept answers, the pre-route and workers.

The oracle is the server's own FastAPI routes (``fast_reads=False``): for any request,
before and after any write, the pre-route answers exactly what they answer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_registry_contract import (  # noqa: F401 - fixtures
    ADMIN,
    READER,
    WRITER,
    drop_pg_schema,
    make_spec,
    pg_schema_url,
    token_file,
)

import registry_client
from jupyter_features.cli import main as cli_main
from jupyter_features.registry_server.answer_cache import AnswerCache
from jupyter_features.registry_server.app import RegistryApp, create_app
from jupyter_features.registry_server.counter_reads import SharedCounterReads
from jupyter_features.registry_server.process import start_server
from registry_client.sql import SQLRegistry

TOKENS = {ADMIN: "admin", WRITER: "write", READER: "read"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty registry store of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/registry.db"
        return
    postgres_url = request.getfixturevalue("postgres_url")
    schema = "jfreads_" + uuid.uuid4().hex[:10]
    yield pg_schema_url(postgres_url, schema)
    drop_pg_schema(postgres_url, schema)


# -- the change counter --------------------------------------------------------------------------
def test_every_write_a_read_could_see_changes_the_counter(store: str) -> None:
    reg = SQLRegistry(store)
    other = SQLRegistry(store)  # another client of the same database reads the same number
    try:
        seen = [reg.changes()]

        def changed(expected: bool) -> None:
            now = reg.changes()
            assert (now != seen[-1]) is expected and other.changes() == now
            seen.append(now)

        reg.apply(make_spec("a"))
        changed(True)
        reg.apply(make_spec("a"))  # unchanged: nothing a read could see
        changed(False)
        reg.apply(make_spec("a", description="new words"))  # metadata, in place
        changed(True)
        reg.apply(make_spec("a", expr="amount * 3"))  # a new version
        changed(True)
        reg.record_usage("model", ["a:*"])
        changed(True)
        reg.record_activity("export", {"views": {"a": 2}})  # activity is not read through the cache
        changed(False)
        reg.import_versions([reg.get("a", version=1)])  # the same version again: still a write
        changed(True)
    finally:
        reg.close()
        other.close()


def test_the_counter_read_for_an_event_loop(store: str) -> None:
    reg = SQLRegistry(store)
    loop = asyncio.new_event_loop()
    try:
        before = loop.run_until_complete(reg.changes_async())
        assert before == reg.changes()
        reg.apply(make_spec("b"))
        assert loop.run_until_complete(reg.changes_async()) == reg.changes() != before
    finally:
        loop.run_until_complete(reg.aclose())
        loop.close()
        reg.close()


# -- the pre-route against the routes -----------------------------------------------------------------
NAMES = ["spend", "merchant", "profile"]
WORDS = ["spend", "words", "fraud", "payments", "user_id", "merchant_id", "float64", "int64", "fraud-team",
         "risk-team", "m1", "m2", "doc", ""]  # fmt: skip
AUTH = [f"Bearer {READER}", f"Bearer {WRITER}", f"Bearer {ADMIN}", f"bearer   {READER} ", None, "Bearer nope-token",
        f"Basic {READER}", "Bearer", ""]  # fmt: skip

values = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(["0", "1", "2", "3", "007", "100000", "100001", "2147483648", "-1", "1.0", " 2", "x"]),
    st.sampled_from(["a" * 1000, "a" * 1001, "\x00", "two words", "100%_sure", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")]),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=8),
)  # fmt: skip
keys = st.sampled_from(["q", "entity", "type", "owner", "tag", "used_by", "limit", "version", "other"])
paths = st.one_of(
    st.just("/api/v1/views"),
    st.builds(
        lambda n: f"/api/v1/views/{n}", st.sampled_from([*NAMES, "missing", "bad-name", "x" * 129, "_"])
    ),
    st.builds(lambda n: f"/api/v1/views/{n}/versions", st.sampled_from(NAMES)),
    st.just("/api/v1/views/"),
)
reads = st.tuples(
    st.just("read"), paths, st.lists(st.tuples(keys, values), max_size=3), st.sampled_from(AUTH)
)
plain_reads = st.tuples(
    st.just("read"),
    st.one_of(st.just("/api/v1/views"), st.sampled_from([f"/api/v1/views/{n}" for n in NAMES])),
    st.lists(
        st.tuples(st.sampled_from(["q", "tag", "used_by", "entity"]), st.sampled_from(WORDS)), max_size=2
    ),
    st.just(f"Bearer {READER}"),
)
writes = st.one_of(
    st.tuples(st.just("apply"), st.sampled_from(NAMES), st.sampled_from(["desc", "version", "tags", "same"])),
    st.tuples(st.just("usage"), st.sampled_from(["m1", "m2"]), st.lists(st.sampled_from(NAMES), max_size=2)),
    st.tuples(st.just("post"), st.sampled_from(NAMES), st.sampled_from(["desc", "version"])),
)


class TwoApps:
    """The app with its pre-route and the app without, on one store, called in process on one loop."""

    def __init__(self, store: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.fast = create_app(store, TOKENS)
        self.routes = create_app(store, TOKENS, fast_reads=False)
        self.writer = SQLRegistry(store)
        self.round = 0

    def call(self, app: RegistryApp, method: str, target: str, auth: str | None, body: Any = None) -> Any:
        async def go() -> Any:
            transport = httpx.ASGITransport(app=app)
            headers = {} if auth is None else {"Authorization": auth}
            async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
                response = await client.request(method, target, headers=headers, json=body)
            return response.status_code, response.headers.get("content-type"), response.content

        return self.loop.run_until_complete(go())

    def write(self, action: tuple[Any, ...]) -> None:
        self.round += 1
        kind, name, how = action
        if kind == "usage":
            self.writer.record_usage(name, [f"{view}:*" for view in how if self._exists(view)])
            return
        spec = {
            "desc": make_spec(name, description=f"words {self.round}"),
            "version": make_spec(name, expr=f"amount * {self.round}"),
            "tags": make_spec(name, tags=("fraud", f"t{self.round}")),
            "same": make_spec(name),
        }[how]
        if kind == "apply":
            self.writer.apply(spec)
        else:  # through the app's write route
            status, _, _ = self.call(self.fast, "POST", "/api/v1/views", f"Bearer {WRITER}", {"spec": spec})
            assert status == 200

    def _exists(self, view: str) -> bool:
        return self.writer.mark(view) is not None

    def close(self) -> None:
        for app in (self.fast, self.routes):
            if app.fast_reads is not None:
                self.loop.run_until_complete(app.fast_reads.aclose())
            app.state.registry.close()
        self.writer.close()
        self.loop.close()


def test_the_pre_route_answers_what_the_routes_answer_before_and_after_writes(store: str) -> None:
    apps = TwoApps(store)
    try:
        for name in NAMES:
            apps.writer.apply(make_spec(name))

        @given(st.lists(st.one_of(plain_reads, reads, writes), min_size=1, max_size=25))
        @settings(max_examples=60, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(actions: list[tuple[Any, ...]]) -> None:
            for action in actions:
                if action[0] != "read":
                    apps.write(action)
                    continue
                _, path, params, auth = action
                target = path + ("?" + urlencode(params) if params else "")
                fast = apps.call(apps.fast, "GET", target, auth)
                assert fast == apps.call(apps.routes, "GET", target, auth), target
                if (
                    fast[0] == 200 and path.count("/") == 4 and not params
                ):  # a latest view: the last write shows
                    assert json.loads(fast[2])["spec"] == apps.writer.get(path.rsplit("/", 1)[1]).spec

        run()
        assert apps.fast.fast_reads is not None and apps.fast.fast_reads.answered > 30
    finally:
        apps.close()


# -- workers ---------------------------------------------------------------------------------------------
def _clients_per_worker(url: str, token: str, workers: int) -> dict[int, httpx.Client]:
    """One kept-alive connection to each worker, by the worker's pid."""
    found: dict[int, httpx.Client] = {}
    for _ in range(200):
        client = httpx.Client(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        pid = client.get("/health").json()["worker"]
        if pid in found:
            client.close()
        else:
            found[pid] = client
        if len(found) == workers:
            return found
    for client in found.values():
        client.close()
    raise AssertionError(f"200 connections reached {len(found)} of {workers} workers")


def test_workers_answer_writes_made_through_another_worker_at_once(
    store: str,
    token_file: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = "v" + uuid.uuid4().hex[:10]
    direct = registry_client.connect(store)
    direct.apply(make_spec(name, description="words 0"))
    with start_server(store, token_file=token_file, workers=2, log=tmp_path / "server.log") as server:
        assert "2 worker(s)" in server.output()
        clients = _clients_per_worker(server.url, WRITER, 2)
        try:
            pids = list(clients)
            step = 0
            for writer_pid, reader_pid in [(pids[0], pids[1]), (pids[1], pids[0])] * 3:
                writer, reader = clients[writer_pid], clients[reader_pid]
                for client in clients.values():  # every worker keeps its answers
                    assert client.get(f"/views/{name}").status_code == 200
                    assert client.get("/views", params={"q": f"{name} words"}).status_code == 200
                    client.get("/views", params={"used_by": f"model_{name}"})
                step += 1
                spec = make_spec(name, description=f"words {step}", expr=f"amount * {1 + step % 2}")
                written = writer.post("/views", json={"spec": spec}).json()
                view = reader.get(f"/views/{name}").json()
                assert (view["version"], view["spec"]["description"]) == (written["version"], f"words {step}")
                found = reader.get("/views", params={"q": f"{name} words"}).json()
                assert [r["spec"]["description"] for r in found] == [f"words {step}"]
                assert (
                    writer.post(
                        "/usage", json={"model": f"model_{name}", "features": [f"{name}:*"]}
                    ).status_code
                    == 204
                )
                assert [
                    r["name"] for r in reader.get("/views", params={"used_by": f"model_{name}"}).json()
                ] == [name]
                assert (
                    writer.post("/usage", json={"model": f"model_{name}", "features": []}).status_code == 204
                )
                assert reader.get("/views", params={"used_by": f"model_{name}"}).json() == []
                direct.apply(make_spec(name, description=f"direct {step}", expr=f"amount * {1 + step % 2}"))
                assert writer.get(f"/views/{name}").json()["spec"]["description"] == f"direct {step}"
                assert reader.get(f"/views/{name}").json()["spec"]["description"] == f"direct {step}"
                for pid, client in clients.items():  # the same connections, the same workers
                    assert client.get("/health").json()["worker"] == pid
        finally:
            for client in clients.values():
                client.close()
            direct.close()


def test_workers_must_be_at_least_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["registry", "serve", "--store", f"sqlite:///{tmp_path}/r.db", "--workers", "0"]) == 2
    assert "--workers 0" in capsys.readouterr().err


# -- the parts -----------------------------------------------------------------------------------------------
def test_kept_answers_last_as_long_as_the_counter() -> None:
    async def scenario() -> None:
        cache = AnswerCache(max_bytes=400)
        computed: list[str] = []

        def compute(text: str) -> Any:
            def run() -> bytes:
                computed.append(text)
                return text.encode() * 20

            return run

        assert await cache.answer("a", 1, compute("a")) == b"a" * 20
        assert await cache.answer("a", 1, compute("a!")) == b"a" * 20  # kept
        assert await cache.answer("a", 2, compute("b")) == b"b" * 20  # another number: computed again
        assert await cache.answer("a", 1, compute("c")) == b"c" * 20  # and back: nothing outlives a change
        assert computed == ["a", "b", "c"]
        for i in range(30):  # over the byte budget: the least recently used go
            await cache.answer(i, 1, compute(str(i % 10)))
        assert 0 < len(cache) <= 400 // 20

        # Requests for one missing answer share one computation; a failure reaches them all.
        computed.clear()
        results = await asyncio.gather(*(cache.answer("shared", 3, compute("s")) for _ in range(5)))
        assert results == [b"s" * 20] * 5 and computed == ["s"]

        def fail() -> bytes:
            raise RuntimeError("the database failed")

        outcomes = await asyncio.gather(
            *(cache.answer("failing", 3, fail) for _ in range(3)), return_exceptions=True
        )
        assert isinstance(outcomes[0], RuntimeError) and outcomes[1:] == [None, None]
        assert await cache.answer("failing", 3, compute("ok")) == b"ok" * 20

    asyncio.run(scenario())


def test_a_shared_counter_read_starts_after_every_request_it_answers() -> None:
    async def scenario() -> None:
        number = 0
        release: list[asyncio.Event] = []

        async def read() -> int:
            nonlocal number
            number += 1
            mine = number
            release.append(asyncio.Event())
            await release[-1].wait()
            return mine

        async def settle() -> None:  # let every task that can run, run
            for _ in range(10):
                await asyncio.sleep(0)

        reads = SharedCounterReads(read)
        first = asyncio.ensure_future(reads.value())
        await settle()
        assert number == 1  # the first read started for the first request
        later = [asyncio.ensure_future(reads.value()) for _ in range(4)]  # came while it ran
        await settle()
        assert number == 1
        release[0].set()
        assert await first == 1
        await settle()
        assert number == 2  # one more read, started after they came, for all four
        release[1].set()
        assert await asyncio.gather(*later) == [2, 2, 2, 2]

        async def broken() -> int:
            raise OSError("connection lost")

        failing = SharedCounterReads(broken)
        with pytest.raises(OSError):
            await failing.value()

    asyncio.run(scenario())
