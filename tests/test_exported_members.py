"""Each package's __all__ is exactly what it exposes publicly."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "jupyter_features",
    "jupyter_features.errors",
    "jupyter_features.engines",
    "jupyter_features.online",
    "jupyter_features.widgets",
    "jupyter_features.serverext",
    "jupyter_features.registry_server",
    "registry_client",
    "kernels_magic",
]
HEAVY = (
    "duckdb", "pandas", "pyarrow", "sqlglot", "sklearn", "altair", "ipywidgets", "fastapi", "sqlalchemy", "redis",
)  # fmt: skip


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_the_public_surface(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(getattr(module, "__all__", []))
    for item in exported:
        assert getattr(module, item) is not None, item
    public = {
        n for n, v in vars(module).items()
        if not n.startswith("_") and n not in ("TYPE_CHECKING", "annotations")
        and getattr(v, "__module__", name).startswith(name.split(".")[0])
        and not isinstance(v, type(sys)) or n in exported
    }  # fmt: skip
    submodules = {n for n, v in vars(module).items() if isinstance(v, type(sys))}
    assert public - submodules - exported == set(), "public names missing from __all__"


def test_import_is_light() -> None:
    code = f"import sys, jupyter_features; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"heavy modules imported eagerly: {out}"


def test_lazy_functions_are_not_shadowed_by_submodules() -> None:
    import jupyter_features as jf

    for module in ("jupyter_features.evaluation", "jupyter_features.drift_detection"):
        importlib.import_module(module)  # the modules behind the lazy names

    for name in ("evaluate", "ablate", "drift"):
        assert callable(getattr(jf, name)) and not isinstance(getattr(jf, name), type(sys)), name
    for name in jf.__all__:
        assert not isinstance(getattr(jf, name), type(sys)) or name == "errors", name
