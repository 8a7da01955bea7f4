"""The registry server: a FastAPI app over a SQL registry, REST under /api/v1.

Errors reach clients from one place, :func:`_install_error_handlers`: a FeaturesError
becomes its ``status_code`` with ``{"error": message, "type": class name}``, a
malformed request 422, an oversize body 413. Nothing a client sends can cause a 500.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry_client.spec import LIMITS
from registry_client.sql import SQLRegistry

from ..errors import ConfigError, FeaturesError
from .auth import Identity, identities
from .models import Health

__all__ = ["create_app", "API_PREFIX"]

API_PREFIX = "/api/v1"
#: Optional routers other parts add (module with a ``router``), mounted under API_PREFIX.
PLUGINS = ("jupyter_features.registry_server.materializations",)

log = logging.getLogger("jupyter_features.registry")


def create_app(store_url: str, tokens: Mapping[str, Identity | str] | None = None) -> FastAPI:
    """The registry app storing into ``store_url`` (sqlite:///… or postgresql://…).

    ``tokens`` maps bearer token → Identity (``load_tokens``) or a bare scope (read,
    write, admin); None or empty means no auth.
    """
    from ..version import __version__
    from .routers import activity, views

    if store_url.split("://", 1)[0].lower() in ("http", "https"):
        raise ConfigError(
            "the registry server stores into a database: give --store sqlite:///… or postgresql://…"
        )
    registry = SQLRegistry(store_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        registry.close()

    app = FastAPI(
        title="jupyter-features registry",
        version=__version__,
        description="Shared, versioned feature view definitions: search, versions, lineage, usage, audit.",
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.tokens = identities(tokens)
    app.state.store_url = registry.url
    app.add_middleware(_BodyLimit, limit=LIMITS["body_bytes"])
    _install_error_handlers(app)

    @app.get(f"{API_PREFIX}/health", response_model=Health, tags=["server"], summary="Liveness and store")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "store": registry.dialect,
            "schema_version": registry.schema_version,
            "auth": bool(app.state.tokens),
        }

    app.include_router(views.router, prefix=API_PREFIX)
    app.include_router(activity.router, prefix=API_PREFIX)
    for module_name in PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        app.include_router(module.router, prefix=API_PREFIX)
    return app


def _clean(text: str) -> str:
    """Text safe to send as UTF-8 JSON, whatever the request held."""
    return text.encode("utf-8", "replace").decode("utf-8")[:2000]


def _shown(value: Any) -> str | None:
    """A short repr of a refused string value, to name it in the error (other values are not shown)."""
    if not isinstance(value, str):
        return None
    return _clean(repr(value[:60]) + ("…" if len(value) > 60 else ""))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FeaturesError)
    async def features_error(_request: Request, exc: FeaturesError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        body = {"error": _clean(str(exc)), "type": type(exc).__name__}
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "loc": [_clean(str(p)) for p in e.get("loc", ())],
                "msg": _clean(str(e.get("msg", ""))),
                "type": e.get("type"),
                "got": _shown(e.get("input")),
            }
            for e in exc.errors()[:20]
        ]
        summary = "; ".join(
            f"{'.'.join(p['loc'])}: {p['msg']}" + (f" (got {p['got']})" if p["got"] else "")
            for p in problems[:5]
        )
        return JSONResponse(
            {"error": f"invalid request: {summary}", "type": "InvalidSpecError", "detail": problems}, 422
        )

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": _clean(str(exc.detail))}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"}, 500)


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            response = JSONResponse({"error": f"request body over {self.limit:,} bytes"}, status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"request body over {self.limit:,} bytes")
            return message

        await self.app(scope, limited, send)
