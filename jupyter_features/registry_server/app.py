"""The registry server: a FastAPI app over a SQL registry, REST under /api/v1.

Errors reach clients from one place, :func:`jupyter_features.http_errors.install_error_handlers`
(shared with the feature server): a FeaturesError becomes its ``status_code`` with
``{"error": message, "type": class name}``, a malformed request 422, an oversize body 413.
Nothing a client sends can cause a 500.

Searches and view reads that the routes would answer with 200 are answered before
FastAPI by :mod:`.fast_reads`, from answers kept under the registry's change counter;
everything else, errors included, goes through the routes.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from registry_client.spec import LIMITS
from registry_client.sql import SQLRegistry

from ..errors import ConfigError
from ..http_errors import BodyLimit, install_error_handlers
from .auth import Identity, identities
from .fast_reads import FastReads
from .models import Health
from .record_cache import RecordCache

__all__ = ["create_app", "API_PREFIX", "RegistryApp"]

API_PREFIX = "/api/v1"
#: Threads answering requests at once (the route functions that touch the database).
THREADS = 4
#: Optional routers other parts add (module with a ``router``), mounted under API_PREFIX.
PLUGINS = ("jupyter_features.registry_server.materializations",)

log = logging.getLogger("jupyter_features.registry")


class RegistryApp(FastAPI):
    """FastAPI with a pre-route: ``fast_reads`` answers the hot reads it can, the routes the rest."""

    fast_reads: FastReads | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fast_reads is not None
            and scope["type"] == "http"
            and await self.fast_reads.answer(scope, send)
        ):
            return
        await super().__call__(scope, receive, send)


def create_app(
    store_url: str, tokens: Mapping[str, Identity | str] | None = None, *, fast_reads: bool = True
) -> RegistryApp:
    """The registry app storing into ``store_url`` (sqlite:///… or postgresql://…).

    ``tokens`` maps bearer token → Identity (``load_tokens``) or a bare scope (read,
    write, admin); None or empty means no auth. ``fast_reads=False`` answers every
    request through the FastAPI routes (the same answers, slower: for comparison).
    """
    from ..version import __version__
    from .routers import activity, views

    if store_url.split("://", 1)[0].lower() in ("http", "https"):
        raise ConfigError(
            "the registry server stores into a database: give --store sqlite:///… or postgresql://…"
        )
    registry = SQLRegistry(store_url)

    @asynccontextmanager
    async def lifespan(_app: RegistryApp) -> AsyncIterator[None]:
        import anyio.to_thread

        # Routes hold the GIL for most of their work: a few threads answer a burst sooner
        # than FastAPI's default 40 contending for it (p99 at 50 connections, see README).
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        yield
        if _app.fast_reads is not None:
            await _app.fast_reads.aclose()
        registry.close()

    app = RegistryApp(
        title="jupyter-features registry",
        version=__version__,
        description="Shared, versioned feature view definitions: search, versions, lineage, usage, audit.",
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.record_cache = RecordCache(registry)
    app.state.tokens = identities(tokens)
    if fast_reads:
        app.fast_reads = FastReads(registry, app.state.record_cache, app.state.tokens, API_PREFIX)
    app.state.store_url = registry.url
    app.add_middleware(BodyLimit, limit=LIMITS["body_bytes"])
    install_error_handlers(app)

    @app.get(f"{API_PREFIX}/health", response_model=Health, tags=["server"], summary="Liveness and store")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "store": registry.dialect,
            "schema_version": registry.schema_version,
            "auth": bool(app.state.tokens),
            "worker": os.getpid(),
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
