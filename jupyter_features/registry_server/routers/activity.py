"""Usage (which models use which features), the activity log, and importing versions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from registry_client.record import VersionRecord
from registry_client.sql import SQLRegistry

from ..auth import Identity, require_scope
from ..deps import get_registry
from ..models import ActivityIn, ActivityOut, ImportIn, RecordOut, UsageIn, UsageOut

__all__ = ["router"]

router = APIRouter()

Registry = Annotated[SQLRegistry, Depends(get_registry)]
_read = [Depends(require_scope("read"))]
_write = [Depends(require_scope("write"))]


@router.post(
    "/usage", status_code=204, dependencies=_write, tags=["usage"], summary="Record a model's features"
)
def record_usage(body: UsageIn, registry: Registry) -> None:
    """Replace what ``model`` uses with ``features`` (references like 'user_spend@2:spend_7d')."""
    registry.record_usage(body.model, body.features)


@router.get(
    "/usage", response_model=list[UsageOut], dependencies=_read, tags=["usage"], summary="Recorded usage"
)
def usage(
    registry: Registry, model: Annotated[str | None, Query(max_length=256)] = None
) -> list[dict[str, Any]]:
    return registry.usage(model)


@router.post("/activity", status_code=204, tags=["activity"], summary="Audit an action")
def record_activity(
    body: ActivityIn,
    request: Request,
    registry: Registry,
    identity: Annotated[Identity | None, Depends(require_scope("write"))],
) -> None:
    """Record an export or materialization with the caller's address as ``remote_addr``.

    The actor and ``detail.user`` are the token's name and ``detail.host`` the caller's
    address, whatever the body says; without tokens they are what the body declares.
    """
    client = request.client.host if request.client else "unknown"
    if identity is None:
        detail = {"user": "unknown", "host": client, **body.detail, "remote_addr": client}
        registry.record_activity(body.kind, detail)
        return
    detail = {**body.detail, "user": identity.name, "host": client, "remote_addr": client}
    registry.record_activity(body.kind, detail, actor=identity.name)


@router.get(
    "/activity", response_model=list[ActivityOut], dependencies=_read, tags=["activity"], summary="Audit log"
)
def activity(
    registry: Registry,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    """The most recent entries, newest first."""
    return registry.activity(kind, limit)


@router.post(
    "/import", response_model=list[RecordOut], dependencies=[Depends(require_scope("admin"))], tags=["admin"],
    summary="Import versions with their provenance",
)  # fmt: skip
def import_versions(body: ImportIn, registry: Registry) -> list[dict[str, Any]]:
    """Add versions keeping their numbers, dates and authors (what import_yaml sends)."""
    records = [
        VersionRecord(r.name, r.version, r.created_at, r.created_by, r.hash, r.spec.model_dump())
        for r in body.records
    ]
    return [r.to_dict() for r in registry.import_versions(records)]
