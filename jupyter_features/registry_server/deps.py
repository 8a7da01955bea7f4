"""Dependencies routes share: the registry the server was started on."""

from __future__ import annotations

from fastapi import Request

from registry_client.sql import SQLRegistry

__all__ = ["get_registry"]


def get_registry(request: Request) -> SQLRegistry:
    """The server's store (``app.state.registry``), a ``registry_client`` SQL registry."""
    registry: SQLRegistry = request.app.state.registry
    return registry
