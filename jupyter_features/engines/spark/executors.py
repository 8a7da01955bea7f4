"""What Spark's executors get from the driver, and where they run.

Executors are processes of their own — on a cluster, on other machines — sharing no
memory, files or environment with the driver. They run Python for the materialization
writes (``writes.py``), which unpickle a ``WriterHandle`` and so import jupyter_features:
``ship_package`` adds the driver's own copy of the package to the executors' Python
path, so they run exactly the code the driver runs, whatever is installed there.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import zipfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import EngineError

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

__all__ = ["on_this_host", "package_zip", "ship_package", "spark_context"]

#: The package directory (this file is jupyter_features/engines/spark/executors.py).
_PACKAGE = Path(__file__).resolve().parents[2]


def on_this_host(master: str) -> bool:
    """Whether the executors of ``master`` are processes of this machine, sharing its files and
    its loopback address: only the local modes (``local[N]``, ``local-cluster[...]``). Any other
    master may place them elsewhere — even ``spark://127.0.0.1``, whose master may also listen on
    other addresses and serve workers on other machines — so the rule stays conservative."""
    return master.strip().startswith("local")


@cache
def package_zip() -> Path:
    """The package's Python files in a zip named by their content, built once per process in a
    private temporary folder (a shared one would let another user plant the file)."""
    files = sorted(
        p for p in _PACKAGE.rglob("*") if p.is_file() and (p.suffix == ".py" or p.name == "py.typed")
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    folder = Path(tempfile.mkdtemp(prefix="jupyter-features-spark-"))  # mode 0700
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    target = folder / f"{_PACKAGE.name}-{digest.hexdigest()[:16]}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, (Path(_PACKAGE.name) / path.relative_to(_PACKAGE)).as_posix())
    return target


def spark_context(session: SparkSession) -> SparkContext:
    """The session's SparkContext; a Spark Connect session (Databricks Connect, ``sc://``) has none."""
    from pyspark.errors import PySparkException

    try:
        return session.sparkContext
    except PySparkException as exc:
        raise EngineError(
            "Spark engine: this is a Spark Connect session (Databricks Connect, sc://...), which has no "
            "SparkContext; the engine needs one to ship its code to the executors and to know where they "
            "run. Use a classic SparkSession: a notebook attached to the cluster, or a master URL "
            "([engine] master in features.toml)"
        ) from exc


def ship_package(session: SparkSession) -> None:
    """Put the driver's jupyter_features first on the executors' Python path (once per context)."""
    context = spark_context(session)
    archive = package_zip()
    if any(Path(f).name == archive.name for f in context.listFiles):
        return
    context.addPyFile(str(archive))
