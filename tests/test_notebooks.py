"""Every notebook in notebooks/ runs top to bottom through a real IPython kernel."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
KERNEL = "jupyter-features-tests"


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A kernel spec that starts this very interpreter (the venv the tests run in)."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("kernels")
    install(kernel_name=KERNEL, prefix=str(prefix), display_name="jupyter-features tests")
    spec_dir = prefix / "share" / "jupyter" / "kernels"
    assert (spec_dir / KERNEL / "kernel.json").read_text().count(sys.executable) == 1
    return [str(spec_dir)]


@pytest.fixture
def clean_env() -> Iterator[None]:
    """The kernel inherits the environment: no registry/online-store overrides from outside."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("JUPYTER_FEATURES_")}
    try:
        yield
    finally:
        os.environ.update(saved)


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "fraud_end_to_end.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_errors(
    path: Path, tmp_path: Path, kernel_dirs: list[str], clean_env: None
) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    client = NotebookClient(nb, km=km, timeout=None, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", (path.name, cell.source[:80], output)
            if output["output_type"] == "stream" and output["name"] == "stderr":
                assert "Traceback" not in output["text"], (path.name, cell.source[:80], output["text"])
    assert (tmp_path / ".jupyter_features").is_dir()  # the notebook wrote its state under its folder
