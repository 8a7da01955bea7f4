"""The online store implementations, picked by URL scheme."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import OnlineStoreError

if TYPE_CHECKING:
    from . import OnlineStore

__all__ = ["STORES", "open_store"]

#: URL scheme → "module:Class"; adding a store is adding a module and a line here.
STORES = {
    "sqlite": "jupyter_features.online.sqlite:SQLiteStore",
    "redis": "jupyter_features.online.redis:RedisStore",
    "rediss": "jupyter_features.online.redis:RedisStore",
    "unix": "jupyter_features.online.redis:RedisStore",
    "redis+cluster": "jupyter_features.online.redis_cluster:RedisClusterStore",
}


def open_store(url: str) -> OnlineStore:
    """Open the online store at ``url`` (``sqlite:///path.db``, ``redis://host:port/db`` or
    ``redis+cluster://host:port[,host:port...]``)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    target = STORES.get(scheme)
    if target is None:
        raise OnlineStoreError(
            f"online store URL {url!r} has an unknown scheme; use sqlite:///path.db, redis://host:port/db "
            "or redis+cluster://host:port[,host:port...]"
        )
    module_name, cls_name = target.split(":")
    store: OnlineStore = getattr(importlib.import_module(module_name), cls_name)(url)
    return store
