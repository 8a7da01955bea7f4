"""Dependencies routes share: the registry the server was started on."""

from __future__ import annotations

from fastapi import Request

from registry_client.sql import SQLRegistry

__all__ = ["get_registry"]


async def get_registry(request: Request) -> SQLRegistry:
    """The server's store (``app.state.registry``), a ``registry_client`` SQL registry.

    ``async`` only so that FastAPI calls it inline rather than through its thread pool.
    """
    registry: SQLRegistry = request.app.state.registry
    return registry
