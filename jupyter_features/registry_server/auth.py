"""Bearer tokens on the registry server: scopes (read < write < admin) and identities.

Tokens come from a token file (:mod:`jupyter_features.tokens`: ``TOKEN SCOPE [NAME]``
lines). Routes declare what they need with ``Depends(require_scope("write"))``, which
gives them the caller's :class:`Identity`: the server records its name as the author
of versions and activity. With no tokens configured the server runs open and binds
loopback only (see cli.py); provenance is then what clients declare.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import AuthError, PermissionDeniedError
from ..tokens import SCOPES, Identity, default_token_name, identity_of, load_tokens

__all__ = ["SCOPES", "Identity", "identities", "load_tokens", "require_scope"]

_bearer = HTTPBearer(auto_error=False, description="A token from the server's --token-file")


def identities(tokens: Mapping[str, Identity | str] | None) -> dict[str, Identity]:
    """``tokens`` as token → Identity; a bare scope gets the token's default name."""
    return {
        token: value if isinstance(value, Identity) else Identity(default_token_name(token), value)
        for token, value in (tokens or {}).items()
    }


def require_scope(scope: str) -> Callable[..., Awaitable[Identity | None]]:
    """A FastAPI dependency: the request's token must grant at least ``scope``.

    Gives the route the caller's Identity, or None when the server runs without tokens
    (then every caller may do everything and provenance is self-declared).
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use one of {SCOPES}")

    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Identity | None:
        tokens: Mapping[str, Identity] = request.app.state.tokens
        if not tokens:
            return None
        if credentials is None or not credentials.credentials:
            raise AuthError("this registry needs a bearer token: send 'Authorization: Bearer TOKEN'")
        identity = identity_of(tokens, credentials.credentials)
        if identity is None:
            raise AuthError("the bearer token is not valid for this registry")
        if not identity.allows(scope):
            raise PermissionDeniedError(f"this needs a '{scope}' token; yours grants '{identity.scope}'")
        return identity

    return check
