"""Searches and view reads without the framework: the registry server's hot GET routes.

``GET /api/v1/views?…`` and ``GET /api/v1/views/{name}[?version=N]`` are answered here,
before FastAPI, when they are requests its routes would answer with 200: a token that
may read (or a server without tokens), known query parameters given once each with
values the routes accept, no body. The answer is the bytes the routes send, kept per
process by :class:`AnswerCache` under the registry's change counter, which is read on
every request: it is never older than the last write committed before the request came,
whichever worker or client wrote it. Anything else (no token or a weak one, a bad or
unknown parameter, an unknown view, a failing database) goes on to the FastAPI routes,
which answer it as they always have: the error shape, the OpenAPI schema and the checks
stay theirs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from registry_client.sql import SQLRegistry

from ..errors import FeaturesError
from ..tokens import Identity, identity_of
from .answer_cache import AnswerCache
from .counter_reads import SharedCounterReads
from .record_cache import RecordCache

__all__ = ["FastReads"]

log = logging.getLogger("jupyter_features.registry")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]{1,10}")
#: The search route's text filters and their length limit (routers/views.py).
_FILTERS = ("q", "entity", "type", "owner", "tag", "used_by")
_FILTER_CHARS = 1000
_LIMIT_MAX = 100_000
_VERSION_MAX = 2**31 - 1
_NAME_CHARS = 128
_HEADERS = [(b"content-type", b"application/json")]


class FastReads:
    """The pre-route of the registry app (``answer`` is True when it answered the request)."""

    def __init__(
        self, registry: SQLRegistry, records: RecordCache, tokens: Mapping[str, Identity], prefix: str
    ) -> None:
        self.registry = registry
        self.records = records
        self.tokens = tokens
        self.cache = AnswerCache()
        self.answered = 0  # requests this pre-route answered
        self._shared = None if registry.dialect == "sqlite" else SharedCounterReads(registry.changes_async)
        self._search_path = f"{prefix}/views"
        self._view_prefix = f"{prefix}/views/"

    async def answer(self, scope: MutableMapping[str, Any], send: Callable[[dict[str, Any]], Any]) -> bool:
        if scope["method"] != "GET" or scope.get("root_path"):
            return False
        path: str = scope["path"]
        if path == self._search_path:
            plan = self._search(scope)
        elif path.startswith(self._view_prefix):
            plan = self._view(path[len(self._view_prefix) :], scope)
        else:
            return False
        if plan is None or not self._plain(scope):
            return False
        key, compute = plan
        try:
            counter = self.registry.changes() if self._shared is None else await self._shared.value()
            data = await self.cache.answer(key, counter, compute)
        except FeaturesError:  # an unknown view, a refused value, the database: the routes say so
            return False
        except Exception:  # never worse than the routes: they answer instead
            log.warning("fast read of %s failed; the route answers it", path[:200], exc_info=True)
            return False
        if data is None:
            return False
        self.answered += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})
        return True

    async def aclose(self) -> None:
        await self.registry.aclose()

    # -- the routes ---------------------------------------------------------------------------
    def _search(self, scope: MutableMapping[str, Any]) -> tuple[tuple[Any, ...], Callable[[], bytes]] | None:
        params = _params(scope)
        if params is None:
            return None
        filters: dict[str, Any] = {}
        for name, value in params.items():
            if name in _FILTERS and len(value) <= _FILTER_CHARS:
                filters[name] = value
            elif name == "limit" and _DIGITS.fullmatch(value) and int(value) <= _LIMIT_MAX:
                filters[name] = int(value)
            else:
                return None
        text = filters.pop("q", None)

        def compute() -> bytes:
            marks = self.registry.search_marks(text, **filters)
            return self.records.json_list(marks)

        return ("search", text, *sorted(filters.items())), compute

    def _view(
        self, name: str, scope: MutableMapping[str, Any]
    ) -> tuple[tuple[Any, ...], Callable[[], bytes]] | None:
        if len(name) > _NAME_CHARS or not _NAME.fullmatch(name):
            return None  # another route under /views/, or a name the route refuses
        params = _params(scope)
        if params is None or not set(params) <= {"version"}:
            return None
        version = None
        if "version" in params:
            text = params["version"]
            if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= _VERSION_MAX:
                return None
            version = int(text)

        def compute() -> bytes:
            if version is not None:
                return orjson.dumps(self.registry.get(name, version=version).to_dict())
            mark = self.registry.mark(name)
            if mark is None:
                return orjson.dumps(self.registry.get(name).to_dict())  # raises what the route says
            return self.records.one((name, *mark))

        return ("view", name, version), compute

    # -- what every fast read needs ----------------------------------------------------------------
    def _plain(self, scope: MutableMapping[str, Any]) -> bool:
        """No body, and a token that may read (as HTTPBearer and require_scope read it)."""
        authorization = None
        for header, value in scope["headers"]:
            if header == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif (header == b"content-length" and value != b"0") or header == b"transfer-encoding":
                return False
        if not self.tokens:
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if not scheme or not credentials or scheme.lower() != "bearer":
            return False
        identity = identity_of(self.tokens, credentials)
        return identity is not None and identity.allows("read")


def _params(scope: MutableMapping[str, Any]) -> dict[str, str] | None:
    """The query's parameters, as the framework decodes them; None when one is given twice."""
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    params = dict(pairs)
    return params if len(params) == len(pairs) else None
