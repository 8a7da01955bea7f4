"""How the HTTP servers answer errors: one JSON shape, ``{"error": message, "type": ErrorClass}``.

:func:`problem` maps any exception to a status, that body and headers: a FeaturesError
gives its ``status_code`` and class name, an HTTP error of the framework (unknown route,
wrong method) its status and a type named for it, anything else a 500 that names no
internals. The registry server wires it in with :func:`install_error_handlers`; the
feature server's ASGI app calls it directly. :class:`BodyLimit` refuses oversize bodies.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import FeaturesError, RequestTooLargeError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "STATUS_TYPES",
    "BodyLimit",
    "clean",
    "install_error_handlers",
    "problem",
    "too_large",
]

log = logging.getLogger("jupyter_features.http")

#: The ``type`` of an error that is an HTTP status rather than a FeaturesError.
STATUS_TYPES = {
    400: "InvalidRequestError",
    401: "AuthError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    413: "RequestTooLargeError",
    422: "InvalidSpecError",
    503: "ServerBusyError",
}


def clean(text: str) -> str:
    """Text safe to send as UTF-8 JSON, whatever the request held."""
    return text.encode("utf-8", "replace").decode("utf-8")[:2000]


def _shown(value: Any) -> str | None:
    """A short repr of a refused string value, to name it in the error (other values are not shown)."""
    if not isinstance(value, str):
        return None
    return clean(repr(value[:60]) + ("…" if len(value) > 60 else ""))


def too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"request body over {limit:,} bytes; send fewer entities per request")


def problem(exc: BaseException, where: str = "") -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) answering ``exc``; ``where`` names the request in the log."""
    if isinstance(exc, FeaturesError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
        if exc.status_code == 503:
            headers["Retry-After"] = "1"
        return exc.status_code, {"error": clean(str(exc)), "type": type(exc).__name__}, headers
    status = getattr(exc, "status_code", None)
    detail = getattr(exc, "detail", None)
    if isinstance(status, int) and 400 <= status < 600 and detail is not None:  # the framework's HTTP errors
        headers = dict(getattr(exc, "headers", None) or {})
        return status, {"error": clean(str(detail)), "type": STATUS_TYPES.get(status, "HTTPError")}, headers
    log.error("unexpected error on %s", where or "a request", exc_info=exc)
    return (
        500,
        {"error": f"internal error ({type(exc).__name__}); see the server log", "type": "InternalError"},
        {},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of a FastAPI app in the one shape; request validation is 422."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        status, body, headers = problem(exc, f"{request.method} {request.url.path}")
        return JSONResponse(body, status_code=status, headers=headers or None)

    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {
                "loc": [clean(str(p)) for p in e.get("loc", ())],
                "msg": clean(str(e.get("msg", ""))),
                "type": e.get("type"),
                "got": _shown(e.get("input")),
            }
            for e in exc.errors()[:20]
        ]
        summary = "; ".join(
            f"{'.'.join(p['loc'])}: {p['msg']}" + (f" (got {p['got']})" if p["got"] else "")
            for p in problems[:5]
        )
        return JSONResponse(
            {"error": f"invalid request: {summary}", "type": "InvalidSpecError", "detail": problems}, 422
        )

    app.add_exception_handler(FeaturesError, any_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, any_error)
    app.add_exception_handler(Exception, any_error)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            from starlette.responses import JSONResponse

            status, body, headers = problem(too_large(self.limit))
            await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # an HTTPException: the framework lets it through its body parsing
                from starlette.exceptions import HTTPException

                raise HTTPException(413, str(too_large(self.limit)))
            return message

        await self.app(scope, limited, send)
