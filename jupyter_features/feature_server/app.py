"""The feature server's ASGI app: one route table over the online store, no framework on the way.

A read is a few dict lookups, a JSON parse (orjson), the strict key check of
read_request.py, one store read per view and a JSON dump: the same work the thinnest
hand-written server does, plus metrics. Every request goes to the store: nothing is
cached that a new materialization or a push could make stale (what is cached per
process is how each view is keyed, and every read checks it against the version read).

Errors answer in the one shape of :mod:`jupyter_features.http_errors`. Read requests
beyond ``max_in_flight`` in one process are shed with 503 and ``Retry-After``, so that
an overloaded server answers fast rather than late.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ..errors import AuthError, InvalidRequestError, PermissionDeniedError, ServerBusyError
from ..http_errors import problem, too_large
from ..online import open_store, read_features
from ..online.layout import redact
from ..tokens import Identity, identity_of
from .metrics import Metrics
from .read_request import KeyPlan, check_keys, key_plan, parse_read

if TYPE_CHECKING:
    from ..online import OnlineStore

__all__ = ["create_app", "FeatureServer", "DEFAULT_PORT", "API_PREFIX", "MAX_BODY", "MAX_IN_FLIGHT"]

DEFAULT_PORT = 6566
API_PREFIX = "/api/v1"
MAX_BODY = 1 << 20  # bytes of a request body
MAX_IN_FLIGHT = 256  # read requests one process answers at once; more are shed with 503

access_log = logging.getLogger("jupyter_features.feature_server.access")

_JSON = b"application/json"


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    views: tuple[str, ...] = ()  # read, for metrics and the access log
    entities: int = 0


Handler = Callable[[bytes, "Identity | None"], Reply]


class Route(NamedTuple):
    name: str  # the route's label in metrics
    methods: dict[str, Handler]
    scope: str | None  # the token scope it needs when the server has tokens; None: open
    limited: bool  # counts against max_in_flight


class _Status(Exception):
    """An HTTP error that is not a FeaturesError (unknown route, wrong method)."""

    def __init__(self, status_code: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code, self.detail, self.headers = status_code, detail, headers


class _Disconnected(Exception):
    """The client went away before its request was read."""


class FeatureServer:
    """The ASGI app; ``routes`` is the one place that maps a path and method to a call."""

    def __init__(
        self,
        store: OnlineStore,
        *,
        tokens: Mapping[str, Identity] | None = None,
        max_body: int = MAX_BODY,
        max_in_flight: int = MAX_IN_FLIGHT,
        log_requests: bool = False,
        push_store: OnlineStore | None = None,
    ) -> None:
        self.store = store
        self.push_store = push_store  # where pushes go (the store opened for writing); None: ``store``
        self.store_shown = redact(store.url).split("?", 1)[0]
        self.tokens = dict(tokens or {})
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.log_requests = log_requests
        self.metrics = Metrics()
        self.in_flight = 0
        self._plans: dict[tuple[str, ...], KeyPlan] = {}
        self._gauge = self.metrics.in_flight
        health = Route("health", {"GET": self.health}, None, False)
        self.routes: dict[str, Route] = {
            f"{API_PREFIX}/online-features": Route(
                "online-features", {"POST": self.online_features}, "read", True
            ),
            f"{API_PREFIX}/push": Route("push", {"POST": self.push}, "write", True),
            "/health": health,
            f"{API_PREFIX}/health": health,
            "/metrics": Route("metrics", {"GET": self.metrics_page}, "read", False),
            "/openapi.json": Route("openapi", {"GET": self.openapi}, None, False),
            "/docs": Route("docs", {"GET": self.docs}, None, False),
        }

    # -- the routes ------------------------------------------------------------------------
    def online_features(self, body: bytes, _caller: Identity | None) -> Reply:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"the request body is not JSON ({exc})") from None
        request = parse_read(data)
        plan = self._plans.get(request.features) or self._plan(request.features)
        check_keys(plan, request)
        result = read_features(self.store, request.features, request.entities, request.at)
        if not plan.matches(result.tables):  # a new materialization keyed a view differently: check again
            plan = self._plan(request.features)
            check_keys(plan, request)
            result = read_features(self.store, request.features, request.entities, request.at)
        views = tuple(view for view, _, _ in plan.views)
        return Reply(200, orjson.dumps({"results": result.to_dict()}), views=views, entities=request.size)

    def push(self, body: bytes, _caller: Identity | None) -> Reply:
        """Rows into the version the store serves, visible to the next read (online only: the
        server has no workspace whose push log training frames read)."""
        from .push_request import parse_push

        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"the request body is not JSON ({exc})") from None
        store = self.push_store or self.store
        view, rows = parse_push(data, store)
        receipt = store.push(view, rows)
        out = {"view": view, "rows": receipt.rows, "version": receipt.version, "seq": receipt.seq}
        return Reply(200, orjson.dumps(out), views=(view,), entities=receipt.rows)

    def _plan(self, features: tuple[str, ...]) -> KeyPlan:
        plan = key_plan(self.store, features)
        if len(self._plans) > 1024:
            self._plans.clear()
        self._plans[features] = plan
        return plan

    def health(self, _body: bytes, caller: Identity | None) -> Reply:
        from ..version import __version__

        try:
            tables = self.store.views()
        except Exception as exc:  # noqa: BLE001 - any failure to reach the store is "unavailable"
            status, payload, _ = problem(exc, "GET /health")
            return Reply(503 if status < 500 else status, orjson.dumps({"status": "unavailable", **payload}))
        out: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "store": self.store_shown,
            "worker": os.getpid(),
        }
        if not self.tokens or caller is not None:  # view names only to those who may read them
            out["views"] = {
                name: {
                    "version": t.version,
                    "view_version": t.view_version,
                    "end": t.end.isoformat(),
                    "rows": t.rows,
                    "written_at": t.written_at,
                }
                for name, t in tables.items()
            }
        return Reply(200, orjson.dumps(out))

    def metrics_page(self, _body: bytes, _caller: Identity | None) -> Reply:
        text, content_type = self.metrics.exposition()
        return Reply(200, text, content_type.encode())

    def openapi(self, _body: bytes, _caller: Identity | None) -> Reply:
        from ..version import __version__
        from .openapi import document

        return Reply(200, orjson.dumps(document(__version__, API_PREFIX)))

    def docs(self, _body: bytes, _caller: Identity | None) -> Reply:
        from fastapi.openapi.docs import get_swagger_ui_html

        page = get_swagger_ui_html(openapi_url="/openapi.json", title="jupyter-features feature server")
        return Reply(200, bytes(page.body), b"text/html; charset=utf-8")

    # -- ASGI --------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        start = time.perf_counter()
        route = self.routes.get(scope["path"])
        counted = False
        error_type = None
        try:
            try:
                if route is None:
                    raise _Status(
                        404, f"no route {scope['path'][:200]}; reads are POST {API_PREFIX}/online-features"
                    )
                method = scope["method"]
                handler = route.methods.get(method)
                if handler is None:
                    allowed = ", ".join(route.methods)
                    raise _Status(405, f"{route.name} takes {allowed}, not {method}", {"Allow": allowed})
                if route.limited:
                    self.in_flight += 1
                    counted = True
                    self._gauge.inc()
                    await asyncio.sleep(0)  # let every request that arrived with this one be counted
                    if self.in_flight > self.max_in_flight:
                        raise ServerBusyError(
                            f"the feature server is answering {self.max_in_flight} reads at once, its limit; "
                            "retry after 1 s or add workers"
                        )
                caller = self._grant(scope, route.scope)
                body = await self._body(scope, receive) if method == "POST" else b""
                reply = handler(body, caller)
            except _Disconnected:
                return
            except Exception as exc:  # noqa: BLE001 - every error is answered in the one shape
                status, payload, headers = problem(exc, f"{scope['method']} {scope['path'][:200]}")
                error_type = payload["type"]
                reply = Reply(
                    status,
                    orjson.dumps(payload),
                    headers=tuple((k.encode(), v.encode()) for k, v in headers.items()),
                )
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": [
                        (b"content-type", reply.content_type),
                        (b"content-length", str(len(reply.body)).encode()),
                        *reply.headers,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": reply.body})
        finally:
            if counted:
                self.in_flight -= 1
                self._gauge.dec()
        elapsed = time.perf_counter() - start
        name = route.name if route is not None else "other"
        self.metrics.request(name, reply.status, elapsed, error_type)
        if reply.views:
            self.metrics.views_read(list(reply.views), reply.entities)
        if self.log_requests:
            self._log(scope, reply, elapsed, error_type)

    def _grant(self, scope: dict[str, Any], needed: str | None) -> Identity | None:
        """Who the request's token stands for; raise if the route needs more. None: no tokens."""
        if not self.tokens:
            return None
        presented = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                kind, _, token = value.decode("latin-1").partition(" ")
                if kind.lower() == "bearer" and token.strip():
                    presented = token.strip()
        identity = identity_of(self.tokens, presented) if presented else None
        if needed is None:
            return identity
        if presented is None:
            raise AuthError("this feature server needs a bearer token: send 'Authorization: Bearer TOKEN'")
        if identity is None:
            raise AuthError("the bearer token is not valid for this feature server")
        if not identity.allows(needed):
            raise PermissionDeniedError(f"this needs a '{needed}' token; yours grants '{identity.scope}'")
        return identity

    async def _body(self, scope: dict[str, Any], receive: Any) -> bytes:
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                raise too_large(limit)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise too_large(limit)
            return body
        chunks, size = [body], len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _log(self, scope: dict[str, Any], reply: Reply, elapsed: float, error_type: str | None) -> None:
        client = scope.get("client")
        line: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "method": scope["method"],
            "path": scope["path"][:200],
            "status": reply.status,
            "ms": round(elapsed * 1000, 3),
            "client": client[0] if client else None,
            "worker": os.getpid(),
        }
        if reply.views:
            line["views"] = list(reply.views)
            line["entities"] = reply.entities
        if error_type is not None:
            line["error"] = error_type
        access_log.info(orjson.dumps(line).decode())

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        self.store.close()
        self.metrics.close()


def read_only(store_url: str) -> str:
    """``store_url`` for a server that only reads: a SQLite file is opened read-only."""
    if not store_url.lower().startswith("sqlite://") or ":memory:" in store_url or "mode=" in store_url:
        return store_url
    return store_url + ("&" if "?" in store_url else "?") + "mode=ro"


def create_app(
    store_url: str,
    tokens: Mapping[str, Identity] | None = None,
    *,
    max_body: int = MAX_BODY,
    max_in_flight: int = MAX_IN_FLIGHT,
    log_requests: bool = False,
) -> FeatureServer:
    """The feature server reading from the online store at ``store_url`` (opened read-only).

    ``tokens`` maps bearer token → Identity (:func:`jupyter_features.tokens.load_tokens`:
    the registry server's token files); reads need 'read'; None or empty means no auth. ``log_requests`` writes one JSON line per
    request to the ``jupyter_features.feature_server.access`` logger (stdout by default).
    """
    if log_requests and not access_log.handlers:
        import sys

        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
    readable = read_only(store_url)
    return FeatureServer(
        open_store(readable),
        push_store=open_store(store_url) if readable != store_url else None,
        tokens=tokens,
        max_body=max_body,
        max_in_flight=max_in_flight,
        log_requests=log_requests,
    )
