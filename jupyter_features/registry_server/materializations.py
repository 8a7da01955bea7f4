"""Materialization jobs on the registry server: ``POST /materializations`` starts one,
``GET /materializations/{id}`` reports its status, progress and rows written.

A job runs in a thread of the server: it opens a workspace in the server's working
directory on this registry, registers the ``sources`` the request names (files on the
server), and materializes the views (registry versions) into ``store`` (default: the
online store configured for that workspace). Naming ``sources`` or ``store`` reads or
writes the server's files, so with tokens configured it needs the admin scope; a write
token may start jobs that use the server's own configuration.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import FeaturesError, NotFoundError, PermissionDeniedError
from .auth import Identity, require_scope

__all__ = ["router", "MaterializationIn", "MaterializationOut", "SourceIn"]

router = APIRouter(prefix="/materializations", tags=["materializations"])

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_KEPT_JOBS = 500
_STATE_LOCK = threading.Lock()


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Annotated[str, Field(min_length=1, max_length=4096, description="file or glob on the server")]
    timestamp: Annotated[str | None, Field(max_length=256)] = None
    format: Literal["parquet", "csv", "json"] | None = None


class MaterializationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    views: Annotated[
        list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(@[0-9]{1,9})?$", max_length=200)]],
        Field(min_length=1, max_length=100, description="view names, NAME or NAME@VERSION"),
    ]
    store: Annotated[str | None, Field(max_length=2048, description="online store URL")] = None
    end: datetime | None = Field(default=None, description="materialize as of (default: now, UTC)")
    incremental: bool = False
    sources: Annotated[
        dict[Annotated[str, Field(pattern=_NAME, max_length=200)], SourceIn], Field(max_length=200)
    ] = {}


class ViewProgress(BaseModel):
    done: int
    total: int


class MaterializationOut(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    views: list[str]
    store: str | None
    incremental: bool
    end: datetime | None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: dict[str, ViewProgress] = {}
    rows_written: int = 0
    results: list[dict[str, Any]] = []
    error: str | None = None
    error_type: str | None = None
    started_by: str | None = Field(None, description="the name of the token that started the job")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Jobs:
    """The server's jobs, newest last; finished ones beyond ``_KEPT_JOBS`` are forgotten."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}

    def add(self, job: dict[str, Any]) -> None:
        with self.lock:
            self.jobs[job["id"]] = job
            finished = [k for k, j in self.jobs.items() if j["status"] in ("succeeded", "failed")]
            for key in finished[: max(0, len(self.jobs) - _KEPT_JOBS)]:
                del self.jobs[key]

    def snapshot(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise NotFoundError(
                    f"no materialization job '{job_id}' on this server (jobs are kept in memory)"
                )
            return {**job, "progress": dict(job["progress"]), "results": list(job["results"])}

    def update(self, job_id: str, **changes: Any) -> None:
        with self.lock:
            self.jobs[job_id].update(changes)


def _jobs(request: Request) -> _Jobs:
    state = request.app.state
    jobs = getattr(state, "materializations", None)
    if jobs is None:
        with _STATE_LOCK:
            jobs = getattr(state, "materializations", None) or _Jobs()
            state.materializations = jobs
    return jobs


def _run(jobs: _Jobs, job_id: str, body: MaterializationIn, registry: Any) -> None:
    from ..workspace import Workspace

    jobs.update(job_id, status="running", started_at=_now())
    ws = None

    def on_progress(view: str, done: int, total: int) -> None:
        with jobs.lock:
            job = jobs.jobs[job_id]
            job["progress"][view] = {"done": done, "total": total}
            job["rows_written"] = sum(p["done"] for p in job["progress"].values())

    try:
        ws = Workspace(".", registry=registry, online_store=body.store)  # the server's own connection
        for name, source in body.sources.items():
            ws.register_source(name, source.path, timestamp=source.timestamp, format=source.format)
        results = ws.materialize(
            body.views,
            end=body.end,
            incremental=body.incremental,
            progress=False,
            on_progress=on_progress,
        )
        jobs.update(
            job_id, status="succeeded", finished_at=_now(), results=[r.to_dict() for r in results.values()],
            store=ws.settings.online_store_url, rows_written=sum(r.rows_written for r in results.values()),
        )  # fmt: skip
    except FeaturesError as exc:
        jobs.update(
            job_id, status="failed", finished_at=_now(), error=str(exc), error_type=type(exc).__name__
        )
    except Exception as exc:  # noqa: BLE001 - a job reports every failure in its status
        jobs.update(
            job_id, status="failed", finished_at=_now(), error=f"{type(exc).__name__}: {exc}",
            error_type=type(exc).__name__,
        )  # fmt: skip
    finally:
        if ws is not None:
            ws.close()


@router.post("", response_model=MaterializationOut, status_code=202, summary="Start a materialization job")
def start_materialization(
    body: MaterializationIn,
    request: Request,
    identity: Annotated[Identity | None, Depends(require_scope("write"))],
) -> dict[str, Any]:
    """Materialize registry views into an online store in the background; poll the job."""
    if identity is not None and not identity.allows("admin") and (body.sources or body.store):
        raise PermissionDeniedError(
            "naming 'sources' or 'store' reads and writes files on the server: that needs an 'admin' token; "
            "leave them out to use the server's own configuration"
        )
    jobs = _jobs(request)
    job: dict[str, Any] = {
        "id": uuid.uuid4().hex, "status": "queued", "views": list(body.views), "store": body.store,
        "incremental": body.incremental, "end": body.end, "created_at": _now(), "started_at": None,
        "finished_at": None, "progress": {}, "rows_written": 0, "results": [], "error": None, "error_type": None,
        "started_by": identity.name if identity is not None else None,
    }  # fmt: skip
    jobs.add(job)
    threading.Thread(
        target=_run,
        args=(jobs, job["id"], body, request.app.state.registry),
        name=f"materialize-{job['id'][:8]}",
        daemon=True,
    ).start()
    return jobs.snapshot(job["id"])


@router.get(
    "/{job_id}",
    response_model=MaterializationOut,
    dependencies=[Depends(require_scope("read"))],
    summary="A materialization job's status and progress",
)
def get_materialization(
    job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], request: Request
) -> dict[str, Any]:
    return _jobs(request).snapshot(job_id)
