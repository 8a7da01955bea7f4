"""Bearer tokens with scopes: read < write < admin.

A token file has one ``TOKEN SCOPE`` per line (``#`` starts a comment). With no
tokens configured the server runs open and binds loopback only (see cli.py).
Routes declare what they need with ``Depends(require_scope("write"))``.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import AuthError, ConfigError, PermissionDeniedError

__all__ = ["SCOPES", "load_tokens", "require_scope", "scope_of"]

#: Scopes from least to most allowed.
SCOPES = ("read", "write", "admin")

_bearer = HTTPBearer(auto_error=False, description="A token from the server's --token-file")


def load_tokens(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a token file: lines 'TOKEN read|write|admin'."""
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"token file {file}: cannot read it ({exc.strerror})") from exc
    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2 or parts[1] not in SCOPES:
            raise ConfigError(
                f"token file {file}, line {number}: expected 'TOKEN SCOPE' with SCOPE one of "
                f"{', '.join(SCOPES)}, e.g. 's3cret-token write'"
            )
        if len(parts[0]) < 8:
            raise ConfigError(f"token file {file}, line {number}: tokens need at least 8 characters")
        tokens[parts[0]] = parts[1]
    if not tokens:
        raise ConfigError(f"token file {file} has no tokens; add lines like 'TOKEN read'")
    return tokens


def scope_of(tokens: Mapping[str, str], presented: str) -> str | None:
    """The scope of ``presented``, comparing in constant time."""
    found = None
    for token, scope in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode("utf-8", "replace")):
            found = scope
    return found


def require_scope(scope: str) -> Callable[..., Awaitable[str | None]]:
    """A FastAPI dependency: the request's token must grant at least ``scope``.

    Returns the caller's scope (None when the server runs without tokens).
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use one of {SCOPES}")
    needed = SCOPES.index(scope)

    async def check(  # async: FastAPI calls it inline, not through its thread pool (it does no I/O)
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> str | None:
        tokens: Mapping[str, str] | None = request.app.state.tokens
        if not tokens:
            return None
        if credentials is None or not credentials.credentials:
            raise AuthError("this registry needs a bearer token: send 'Authorization: Bearer TOKEN'")
        granted = scope_of(tokens, credentials.credentials)
        if granted is None:
            raise AuthError("the bearer token is not valid for this registry")
        if SCOPES.index(granted) < needed:
            raise PermissionDeniedError(f"this needs a '{scope}' token; yours grants '{granted}'")
        return granted

    return check
