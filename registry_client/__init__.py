"""The one way Python code talks to a jupyter-features registry.

    reg = registry_client.connect("sqlite:///.jupyter_features/registry.db")  # embedded file
    reg = registry_client.connect("postgresql://user@host/db?schema=features")  # direct
    reg = registry_client.connect("http://registry:8765", token="...")          # a registry server

Every backend implements :class:`Registry`; the URL's scheme picks the module from
``BACKENDS``, so adding a backend is adding a module and a line there.
"""

from __future__ import annotations

import importlib

from jupyter_features.errors import ConfigError

from .protocol import Registry
from .record import VersionRecord

__all__ = ["BACKENDS", "Registry", "VersionRecord", "connect"]

#: URL scheme → "module:class" implementing Registry.
BACKENDS: dict[str, str] = {
    "sqlite": "registry_client.sql:SQLRegistry",
    "postgresql": "registry_client.sql:SQLRegistry",
    "postgres": "registry_client.sql:SQLRegistry",
    "http": "registry_client.http:HTTPRegistry",
    "https": "registry_client.http:HTTPRegistry",
}


def connect(url: str, token: str | None = None) -> Registry:
    """Open the registry at ``url``; ``token`` authenticates to a registry server."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"registry URL {url!r} has no scheme; use sqlite:///path.db, postgresql://... or http://host:port"
        )
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    target = BACKENDS.get(scheme)
    if target is None:
        raise ConfigError(
            f"registry URL {url!r}: unknown scheme '{scheme}'; use one of {', '.join(sorted(BACKENDS))}"
        )
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    registry: Registry = cls(url, token=token)
    return registry
