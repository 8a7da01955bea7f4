"""Token files of the servers: who each bearer token stands for and what it may do.

One ``TOKEN SCOPE [NAME]`` per line (``#`` starts a comment), SCOPE one of read <
write < admin. NAME is the identity the servers record as the author of what the
token does (``created_by`` of versions, the actor of activity entries), whatever a
request body claims; without it the token is named ``token-XXXX`` from its SHA-256,
never from the token itself. The registry server and the feature server read the
same format (``--token-file``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["SCOPES", "Identity", "default_token_name", "identity_of", "is_loopback", "load_tokens"]

#: Scopes from least to most allowed.
SCOPES = ("read", "write", "admin")

_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")


@dataclass(frozen=True)
class Identity:
    """Who a token stands for (``name``) and what it may do (``scope``)."""

    name: str
    scope: str

    def allows(self, scope: str) -> bool:
        """True when this identity's scope is ``scope`` or a larger one."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def default_token_name(token: str) -> str:
    """'token-' and the first 4 hex digits of the token's SHA-256: tells tokens apart, reveals nothing."""
    return "token-" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:4]


def load_tokens(path: str | os.PathLike[str]) -> dict[str, Identity]:
    """Read a token file of 'TOKEN read|write|admin [NAME]' lines: token → Identity."""
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"token file {file}: cannot read it ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"token file {file}: cannot read it (it is not UTF-8 text)") from exc
    tokens: dict[str, Identity] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        where = f"token file {file}, line {number}"
        if len(parts) not in (2, 3) or parts[1] not in SCOPES:
            raise ConfigError(
                f"{where}: expected 'TOKEN SCOPE [NAME]' with SCOPE one of {', '.join(SCOPES)}, "
                "e.g. 's3cret-token write alice'"
            )
        token, scope = parts[0], parts[1]
        if len(token) < 8:
            raise ConfigError(f"{where}: tokens need at least 8 characters")
        if token in tokens:
            raise ConfigError(f"{where}: the same token is on an earlier line; give each token one line")
        if len(parts) == 3 and not _TOKEN_NAME.fullmatch(parts[2]):
            raise ConfigError(
                f"{where}: a name is 1 to 64 letters, digits or _.@+-, e.g. 'alice' or 'ci-bot'"
            )
        tokens[token] = Identity(name=parts[2] if len(parts) == 3 else default_token_name(token), scope=scope)
    if not tokens:
        raise ConfigError(f"token file {file} has no tokens; add lines like 'TOKEN read alice'")
    return tokens


def identity_of(tokens: Mapping[str, Identity], presented: str) -> Identity | None:
    """The identity of the ``presented`` token, comparing it with every token in constant time."""
    found = None
    offered = presented.encode("utf-8", "replace")
    for token, identity in tokens.items():
        if hmac.compare_digest(token.encode("utf-8"), offered):
            found = identity
    return found


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine (servers without
    tokens may only bind such an address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
