"""Tornado handlers under /jupyter-features/api/: HTTP in, catalog functions, JSON out.

Every handler reads the registry configured for the server's root folder
(features.toml, then the environment) and maps errors to JSON in one place: a
client's mistake is a 4xx ``{"error": message, "type": class, "message": message}``
(``message`` is what the sidebar shows), never a 500.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado.ioloop import IOLoop

from ..config import load_settings
from ..errors import FeaturesError, InvalidSpecError
from .catalog import FACETS, redact_url, search_views, view_detail

__all__ = ["NAMESPACE", "RegistryPool", "setup_handlers"]

#: URL prefix of everything this extension serves.
NAMESPACE = "jupyter-features"

_HINT = "set [registry] url in features.toml or JUPYTER_FEATURES_REGISTRY, then press Refresh"
_VERSION = re.compile(r"[0-9]{1,9}")


def error_body(message: str, kind: str, **extra: Any) -> dict[str, Any]:
    """The JSON of an error answer: the project's shape, plus ``message`` for the sidebar."""
    return {"error": message, "type": kind, "message": message, **extra}


class RegistryPool:
    """One registry client per (URL, token), opened on first use and shared by requests."""

    def __init__(self, root_dir: str) -> None:
        self.root_dir = root_dir
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jupyter-features")
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()

    def url(self) -> str:
        return load_settings(self.root_dir).registry_url

    def sqlite_file_missing(self, url: str) -> Path | None:
        """The file of a sqlite:/// registry that does not exist yet (nothing was exported)."""
        if not url.startswith("sqlite:///"):
            return None
        path = Path(url[len("sqlite:///") :].split("?", 1)[0])
        return None if path.exists() else path

    def client(self) -> Any:
        settings = load_settings(self.root_dir)
        key = (settings.registry_url, settings.token)
        with self._lock:
            registry = self._clients.get(key)
            if registry is None:
                import registry_client

                registry = registry_client.connect(settings.registry_url, token=settings.token)
                self._clients[key] = registry
            return registry

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for registry in clients:
            registry.close()
        self.executor.shutdown(wait=False)


class _RegistryHandler(APIHandler):
    """Runs blocking registry work off the event loop and answers JSON, errors included."""

    @property
    def pool(self) -> RegistryPool:
        pool: RegistryPool = self.settings["jupyter_features_pool"]
        return pool

    async def answer(
        self, work: Callable[[Any], dict[str, Any]], empty: Callable[[str, Path], dict[str, Any]]
    ) -> None:
        """Answer ``work(registry)``, or ``empty(url, path)`` while the embedded registry file does not exist."""
        pool = self.pool
        url = ""
        try:
            raw_url = pool.url()  # reads features.toml: a malformed one is a ConfigError
            url = redact_url(raw_url)
            missing = pool.sqlite_file_missing(raw_url)
            if missing is not None:
                body = empty(url, missing)
                self.set_status(int(body.pop("status", 200)))
                self.finish(json.dumps(body))
                return
            body = await IOLoop.current().run_in_executor(pool.executor, lambda: work(pool.client()))
        except FeaturesError as exc:
            self.set_status(exc.status_code)
            body = error_body(str(exc), type(exc).__name__, url=url)
        except Exception as exc:  # noqa: BLE001 - any other failure means the registry cannot answer
            self.set_status(503)
            message = f"registry at {url} is unreachable: {type(exc).__name__}: {exc}; {_HINT}"
            body = error_body(message, type(exc).__name__, url=url)
        self.finish(json.dumps(body))

    def refuse(self, message: str) -> None:
        """Answer 400: the request itself is wrong (an InvalidSpecError, as the registry names it)."""
        self.set_status(400)
        self.finish(json.dumps(error_body(message, InvalidSpecError.__name__)))


def _no_registry_yet(path: Path) -> str:
    return f"no registry yet at {path}: export a feature view from a notebook to create it"


class StatusHandler(_RegistryHandler):
    """GET /jupyter-features/api/registry: the configured registry and how many views it holds."""

    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(
            lambda registry: {"url": registry.url, "exists": True, "views": len(registry.list())},
            lambda url, path: {"url": url, "exists": False, "views": 0, "message": _no_registry_yet(path)},
        )


class ViewsHandler(_RegistryHandler):
    """GET /jupyter-features/api/views?q=&entity=&type=&owner=&tag=&used_by=: search."""

    @tornado.web.authenticated
    async def get(self) -> None:
        text = self.get_query_argument("q", None)
        filters = {name: self.get_query_argument(name, None) for name in FACETS}
        await self.answer(
            lambda registry: search_views(registry, text, **filters),
            lambda url, path: {
                "url": url,
                "total": 0,
                "matched": 0,
                "views": [],
                "facets": {name: [] for name in FACETS},
                "message": _no_registry_yet(path),
            },  # fmt: skip
        )


class ViewHandler(_RegistryHandler):
    """GET /jupyter-features/api/views/NAME[?version=N]: one version, its history and lineage."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        raw = self.get_query_argument("version", None)
        version = None
        if raw is not None:
            # ASCII digits only: str.isdigit() accepts '²', which int() then refuses.
            if _VERSION.fullmatch(raw) is None or int(raw) < 1:
                shown = repr(raw[:40]) + ("…" if len(raw) > 40 else "")
                self.refuse(f"version must be a positive integer like 3, not {shown}")
                return
            version = int(raw)
        await self.answer(
            lambda registry: view_detail(registry, name, version),
            lambda url, path: {
                "status": 404,
                "url": url,
                "message": f"feature view '{name}': {_no_registry_yet(path)}",
            },
        )


def setup_handlers(web_app: Any, root_dir: str) -> RegistryPool:
    """Route /jupyter-features/api/... on ``web_app``, reading the registry configured for ``root_dir``."""
    pool = RegistryPool(root_dir)
    web_app.settings["jupyter_features_pool"] = pool
    base = url_path_join(web_app.settings["base_url"], NAMESPACE, "api")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "registry"), StatusHandler),
            (url_path_join(base, "views"), ViewsHandler),
            (url_path_join(base, "views", r"([A-Za-z_][A-Za-z0-9_]*)"), ViewHandler),
        ],
    )
    return pool
