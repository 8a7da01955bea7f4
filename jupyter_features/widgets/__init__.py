"""Notebook widgets (ipywidgets): the feature browser and the export-to-registry button.

ipywidgets loads on first use of a widget class, never on ``import jupyter_features``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .browser import CatalogEntry, FeatureBrowser, catalog, search_catalog
    from .export import ExportButton, ExportedVersion, export_session, export_views

__all__ = [
    "CatalogEntry",
    "ExportButton",
    "ExportedVersion",
    "FeatureBrowser",
    "catalog",
    "export_session",
    "export_views",
    "search_catalog",
]

_LAZY = {
    "CatalogEntry": ".browser",
    "FeatureBrowser": ".browser",
    "catalog": ".browser",
    "search_catalog": ".browser",
    "ExportButton": ".export",
    "ExportedVersion": ".export",
    "export_session": ".export",
    "export_views": ".export",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_features.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
