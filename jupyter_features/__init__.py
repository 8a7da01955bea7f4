"""jupyter-features: explore with DuckDB, define features in SQL, join them point-in-time,
evaluate, export to a registry and serve them online — from the notebook.

Heavy parts (evaluation, widgets, stores, servers) load on first use (PEP 562).
"""

from __future__ import annotations

import importlib
import typing
from typing import Any

from . import errors
from .featureview import FeatureView, format_ttl, parse_ttl
from .schema import Feature
from .sources import Source
from .version import __version__
from .workspace import Workspace, set_workspace, workspace

if typing.TYPE_CHECKING:
    from .drift_detection import drift
    from .drift_report import DriftReport
    from .evaluation import EvaluationReport, ablate, evaluate
    from .online import OnlineResult

__all__ = [
    "DriftReport",
    "EvaluationReport",
    "Feature",
    "FeatureView",
    "OnlineResult",
    "Source",
    "Workspace",
    "__version__",
    "ablate",
    "drift",
    "errors",
    "evaluate",
    "format_ttl",
    "parse_ttl",
    "set_workspace",
    "workspace",
]

_LAZY = {
    "evaluate": "jupyter_features.evaluation",
    "ablate": "jupyter_features.evaluation",
    "EvaluationReport": "jupyter_features.evaluation",
    "OnlineResult": "jupyter_features.online",
    "drift": "jupyter_features.drift_detection",
    "DriftReport": "jupyter_features.drift_report",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_features' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension lives in this package (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "jupyter-features"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension (the Features sidebar's API); imported only when the server loads it."""
    return [{"module": "jupyter_features.serverext"}]
