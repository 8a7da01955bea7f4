"""The registry behind a server (`jupyter-features registry serve`), over its REST API."""

from __future__ import annotations

import builtins
import os
from collections.abc import Sequence
from typing import Any

from jupyter_features import errors

from .origin import actor, origin
from .record import VersionRecord
from .spec import check_view_name

__all__ = ["HTTPRegistry"]

_BY_STATUS: dict[int, type[errors.FeaturesError]] = {
    401: errors.AuthError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.RegistryConflictError,
    413: errors.InvalidSpecError,
    422: errors.InvalidSpecError,
}


class HTTPRegistry:
    """Registry backend for ``http(s)://host:port`` URLs; ``token`` is sent as a bearer token."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"HTTPRegistry({self.url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HTTPRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        import httpx

        try:
            response = self._client.request(method, path, params=params, json=json)
        except httpx.TransportError as exc:
            raise errors.RegistryUnavailableError(
                f"registry {self.url} is not reachable ({exc}); start it with "
                "`jupyter-features registry serve` or check the URL and JUPYTER_FEATURES_REGISTRY"
            ) from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response.json() if response.content else None

    def _error(self, response: Any) -> errors.FeaturesError:
        try:
            body = response.json()
            message, kind = str(body.get("error")), str(body.get("type") or "")
        except (ValueError, AttributeError):
            message, kind = response.text[:500] or response.reason_phrase, ""
        cls = getattr(errors, kind, None) if kind else None
        if not (isinstance(cls, type) and issubclass(cls, errors.FeaturesError)):
            status = response.status_code
            cls = _BY_STATUS.get(
                status, errors.RegistryUnavailableError if status >= 500 else errors.RegistryError
            )
        if cls is errors.AuthError:
            message += " (pass token=... to registry_client.connect or set JUPYTER_FEATURES_TOKEN)"
        return cls(f"registry {self.url}: {message}")

    # -- views and versions ------------------------------------------------------------------
    def apply(self, spec: dict[str, Any], *, created_by: str | None = None) -> VersionRecord:
        body = {"spec": spec, "created_by": created_by or actor()}
        return VersionRecord.from_dict(self._call("POST", "/views", json=body))

    def get(self, name: str, version: int | None = None) -> VersionRecord:
        check_view_name(name)
        params = {"version": version} if version is not None else None
        return VersionRecord.from_dict(self._call("GET", f"/views/{name}", params=params))

    def versions(self, name: str) -> builtins.list[VersionRecord]:
        check_view_name(name)
        return [VersionRecord.from_dict(d) for d in self._call("GET", f"/views/{name}/versions")]

    def list(self) -> builtins.list[VersionRecord]:
        return [VersionRecord.from_dict(d) for d in self._call("GET", "/views")]

    def search(
        self,
        text: str | None = None,
        *,
        entity: str | None = None,
        type: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
        used_by: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[VersionRecord]:
        facets = {"q": text, "entity": entity, "type": type, "owner": owner, "tag": tag, "used_by": used_by,
                  "limit": limit}  # fmt: skip
        params = {k: v for k, v in facets.items() if v is not None}
        return [VersionRecord.from_dict(d) for d in self._call("GET", "/views", params=params)]

    def lineage(self, name: str) -> dict[str, Any]:
        check_view_name(name)
        return dict(self._call("GET", f"/views/{name}/lineage"))

    # -- usage and activity ----------------------------------------------------------------
    def record_usage(self, model_name: str, feature_refs: Sequence[str]) -> None:
        self._call("POST", "/usage", json={"model": model_name, "features": list(feature_refs)})

    def usage(self, model_name: str | None = None) -> builtins.list[dict[str, Any]]:
        params = {"model": model_name} if model_name is not None else None
        return list(self._call("GET", "/usage", params=params))

    def record_activity(self, kind: str, detail: dict[str, Any] | None = None) -> None:
        self._call("POST", "/activity", json={"kind": kind, "detail": {**origin(), **(detail or {})}})

    def activity(self, kind: str | None = None, limit: int = 100) -> builtins.list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if kind:
            params["kind"] = kind
        return list(self._call("GET", "/activity", params=params))

    # -- import / export -------------------------------------------------------------------
    def import_versions(self, records: Sequence[VersionRecord]) -> builtins.list[VersionRecord]:
        body = {"records": [r.to_dict() for r in records]}
        return [VersionRecord.from_dict(d) for d in self._call("POST", "/import", json=body)]

    def export_yaml(self, folder: str | os.PathLike[str]) -> builtins.list[str]:
        from .yaml_folder import export_yaml

        return export_yaml(self, folder)

    def import_yaml(self, folder: str | os.PathLike[str]) -> builtins.list[VersionRecord]:
        from .yaml_folder import import_yaml

        return import_yaml(self, folder)
