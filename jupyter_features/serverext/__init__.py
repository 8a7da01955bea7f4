"""The Jupyter server extension: the Features sidebar's API under /jupyter-features/api/.

Enabled automatically by ``jupyter-config/server-config/jupyter_features.json``;
``jupyter_features._jupyter_server_extension_points`` points Jupyter server here.
"""

from __future__ import annotations

from typing import Any

from .catalog import FACETS, redact_url, search_views, view_detail
from .handlers import NAMESPACE, RegistryPool, setup_handlers

__all__ = [
    "FACETS",
    "NAMESPACE",
    "RegistryPool",
    "redact_url",
    "search_views",
    "setup_handlers",
    "view_detail",
]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Route the API on the running server, reading the registry configured for its root folder."""
    setup_handlers(server_app.web_app, server_app.root_dir)
    server_app.log.info("jupyter-features: Features sidebar API at /%s/api/", NAMESPACE)
