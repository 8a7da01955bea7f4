"""`jupyter-features serve`: online features over HTTP for services that are not in Python.

``POST /api/v1/online-features`` with ``{"features": ["view:feature", ...],
"entities": [{"user_id": 42}, ...]}`` (or columnar ``{"user_id": [42, 7]}``) answers
``{"results": {"view__feature": [...]}}``, the same as ``ws.online_features(...).to_dict()``;
timestamps are ISO 8601 text and NaN/inf floats are null. Errors are JSON from one handler.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import FeaturesError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app", "serve", "add_cli", "DEFAULT_PORT"]

DEFAULT_PORT = 6566
API_PREFIX = "/api/v1"
MAX_ENTITIES = 10_000


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _json_column(values: list[Any]) -> list[Any]:
    if all(type(v) in (int, str, bool) or v is None for v in values):
        return values
    return [_json_value(v) for v in values]


def create_app(store_url: str) -> FastAPI:
    """The feature server reading from the online store at ``store_url``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field

    from .online import open_store, read_features
    from .version import __version__

    store = open_store(store_url)

    class OnlineFeaturesIn(BaseModel):
        features: list[str] = Field(min_length=1, max_length=1000, examples=[["user_spend:spend_7d"]])
        entities: list[dict[str, Any]] | dict[str, list[Any]] = Field(examples=[[{"user_id": 42}]])

    app = FastAPI(
        title="jupyter-features feature server",
        version=__version__,
        description="Latest feature values by entity key, from the online store.",
    )
    app.state.store = store

    @app.exception_handler(FeaturesError)
    async def features_error(_request: Request, exc: FeaturesError) -> JSONResponse:
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=exc.status_code)

    @app.get(f"{API_PREFIX}/health", tags=["server"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "store": store.url.split("?", 1)[0]}  # redacted

    def online_features(body: OnlineFeaturesIn) -> dict[str, Any]:
        rows = body.entities
        count = len(rows) if isinstance(rows, list) else max((len(v) for v in rows.values()), default=0)
        if count > MAX_ENTITIES:
            from .errors import FeatureReferenceError

            raise FeatureReferenceError(f"{count} entities in one request; send at most {MAX_ENTITIES:,}")
        result = read_features(store, body.features, rows)
        return {"results": {k: _json_column(v) for k, v in result.to_dict().items()}}

    online_features.__annotations__["body"] = OnlineFeaturesIn  # a local class: resolve it here
    app.post(f"{API_PREFIX}/online-features", tags=["online"], summary="Read features by entity key")(
        online_features
    )

    return app


def serve(store_url: str, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the feature server in the foreground until interrupted."""
    import uvicorn

    app = create_app(store_url)
    print(
        f"jupyter-features feature server on http://{host}:{port} (store {app.state.store.url.split('?', 1)[0]}); "
        f"POST {API_PREFIX}/online-features, docs at /docs",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def add_cli(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("serve", help="serve online features over HTTP (POST /api/v1/online-features)")
    p.add_argument("--store", help="online store URL (default: the workspace's, from features.toml)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")

    def handle(args: argparse.Namespace) -> int:
        from .config import load_settings

        serve(args.store or load_settings(".").online_store_url, host=args.host, port=args.port)
        return 0

    return handle
