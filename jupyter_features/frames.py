"""Training frames larger than memory: label frames given as parquet paths, and frames
written to parquet from a stream of Arrow record batches."""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LabelFrameError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["parquet_location", "write_parquet", "RESULT_KINDS"]

#: What ``Workspace.training_frame(..., to=...)`` can return.
RESULT_KINDS = ("pandas", "arrow", "parquet", "spark")


def parquet_location(labels: str | os.PathLike[str], root: Path) -> str | None:
    """The absolute path or glob of ``labels`` when it names existing ``.parquet`` files
    (relative to ``root``, like sources); None for any other text, which is SQL.

    A ``pathlib.Path`` is always a path: one that matches nothing is refused.
    """
    text = os.fspath(labels)
    looks_like_path = isinstance(labels, os.PathLike) or (
        text.strip().lower().endswith(".parquet") and not any(c.isspace() for c in text.strip())
    )
    if not looks_like_path:
        return None
    path = Path(text.strip()).expanduser()
    location = (path if path.is_absolute() else root / path).as_posix()
    if globlib.glob(location, recursive=True) and location.lower().endswith(".parquet"):
        return location
    if isinstance(labels, os.PathLike):
        raise LabelFrameError(
            f"label frame: no .parquet file matches {location!r}; pass an existing parquet path or glob, "
            "a DataFrame or a SQL query"
        )
    return None


def write_parquet(reader: pa.RecordBatchReader, path: str | os.PathLike[str], *, desc: str) -> int:
    """Write every batch of ``reader`` into the parquet file ``path`` as it comes; the rows written.

    The batches go to ``path``'s folder under a temporary name first and replace ``path`` only
    when all are written, so a failed or interrupted run leaves no half-written file.
    """
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial")
    rows = 0
    try:
        with (
            pq.ParquetWriter(tmp, reader.schema) as writer,
            tqdm(desc=desc, unit="rows", unit_scale=True, leave=False) as bar,
        ):
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
                bar.update(batch.num_rows)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return rows
