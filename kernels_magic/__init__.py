"""The IPython extension of jupyter-features: ``%load_ext kernels_magic`` registers
``%%sql``, ``%%feature`` and ``%features``.

Importing this package loads nothing heavy; the magics load jupyter_features, DuckDB,
Altair, scikit-learn and ipywidgets only when a cell needs them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics on ``ipython`` (called by ``%load_ext kernels_magic``)."""
    from .magics import FeaturesMagics

    ipython.register_magics(FeaturesMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics again (``%unload_ext kernels_magic``)."""
    magics = ipython.magics_manager.magics
    for kind, names in (("cell", ("sql", "feature")), ("line", ("features",))):
        for name in names:
            magics[kind].pop(name, None)
    ipython.magics_manager.registry.pop("FeaturesMagics", None)
