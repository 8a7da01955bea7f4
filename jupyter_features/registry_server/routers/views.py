"""Feature views: list and search, get, versions, apply, lineage."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from registry_client.sql import SQLRegistry

from ..auth import Identity, require_scope
from ..deps import get_registry
from ..models import NAME_PATTERN, ApplyIn, LineageOut, RecordOut
from ..record_cache import RecordCache

__all__ = ["router"]

router = APIRouter(prefix="/views", tags=["feature views"])

ViewName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=128, description="feature view name")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]
Filter = Annotated[str | None, Query(max_length=1000)]
Registry = Annotated[SQLRegistry, Depends(get_registry)]
_read = [Depends(require_scope("read"))]


@router.get("", response_model=list[RecordOut], dependencies=_read, summary="List or search feature views")
def search_views(
    request: Request,
    registry: Registry,
    q: Filter = None,
    entity: Filter = None,
    type: Filter = None,
    owner: Filter = None,
    tag: Filter = None,
    used_by: Filter = None,
    limit: Annotated[int | None, Query(ge=0, le=100_000)] = None,
) -> Response:
    """The latest version of each view matching every filter given (``q``: all words, any case)."""
    marks = registry.search_marks(
        q, entity=entity, type=type, owner=owner, tag=tag, used_by=used_by, limit=limit
    )
    return Response(_cache(request).json_list(marks), media_type="application/json")


@router.post("", response_model=RecordOut, summary="Apply a feature view")
def apply_view(
    body: ApplyIn, registry: Registry, identity: Annotated[Identity | None, Depends(require_scope("write"))]
) -> dict[str, Any]:
    """Store a spec: a new version when its definition changed, else the latest (metadata refreshed).

    A new version's ``created_by`` is the token's name; ``created_by`` in the body only
    counts on a server without tokens.
    """
    spec = body.spec.model_dump()
    created_by = identity.name if identity is not None else body.created_by
    return registry.apply(spec, created_by=created_by).to_dict()


@router.get("/{name}", response_model=RecordOut, dependencies=_read, summary="One version (default latest)")
def get_view(
    request: Request,
    name: ViewName,
    registry: Registry,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    mark = registry.mark(name) if version is None else None
    if mark is None:  # a pinned version, or not there (the registry says what is)
        return Response(
            orjson.dumps(registry.get(name, version=version).to_dict()), media_type="application/json"
        )
    return Response(_cache(request).one((name, *mark)), media_type="application/json")


def _cache(request: Request) -> RecordCache:
    cache: RecordCache = request.app.state.record_cache
    return cache


@router.get("/{name}/versions", response_model=list[RecordOut], dependencies=_read, summary="Every version")
def list_versions(name: ViewName, registry: Registry) -> list[dict[str, Any]]:
    return [r.to_dict() for r in registry.versions(name)]


@router.get("/{name}/versions/{version}", response_model=RecordOut, dependencies=_read, summary="One version")
def get_version(name: ViewName, version: Version, registry: Registry) -> dict[str, Any]:
    return registry.get(name, version=version).to_dict()


@router.get("/{name}/lineage", response_model=LineageOut, dependencies=_read, summary="Sources and users")
def lineage(name: ViewName, registry: Registry) -> dict[str, Any]:
    return registry.lineage(name)
