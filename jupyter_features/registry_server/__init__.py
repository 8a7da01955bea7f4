"""The registry server (`jupyter-features registry serve`): FastAPI over a SQL registry.

FastAPI loads on first use (PEP 562), so the CLI stays quick to start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .auth import load_tokens, require_scope

__all__ = ["create_app", "load_tokens", "require_scope"]

_LAZY = {
    "create_app": "jupyter_features.registry_server.app",
    "load_tokens": "jupyter_features.registry_server.auth",
    "require_scope": "jupyter_features.registry_server.auth",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_features.registry_server' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
