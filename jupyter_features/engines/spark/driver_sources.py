"""The product's own file sources on the Spark engine: the push log, kept on the driver's machine.

Executors on other machines cannot read the driver's files, and a Spark view over a file glob
keeps the files it listed when it was made. So these sources are read here, on the driver, each
time a query names them, and handed to Spark as data (like DataFrame sources): the executors
need no shared filesystem, and every query sees the log as it is then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import SourceError
from ...sqltext import RESERVED_PREFIX

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from ...sources import Source

__all__ = ["DriverSources"]


class DriverSources:
    """Parquet file sources of jupyter-features' own (named with ``RESERVED_PREFIX``), read on
    the driver at each use."""

    def __init__(self) -> None:
        self._sources: dict[str, Source] = {}
        self._schemas: dict[str, pa.Schema] = {}

    @staticmethod
    def takes(source: Source) -> bool:
        """Whether ``source`` is one of the product's own parquet files (not a user's source)."""
        return (
            source.name.startswith(RESERVED_PREFIX)
            and source.kind == "file"
            and (source.format or "parquet") == "parquet"
            and "://" not in str(source.location)
        )

    def register(self, session: SparkSession, source: Source) -> None:
        """Keep ``source`` and make it a temporary view of ``session`` as its files are now."""
        self._sources[source.name] = source
        self._load(session, source)

    def refresh(self, session: SparkSession, query: str) -> None:
        """Re-read every source ``query`` names, so that it sees their files as they are now."""
        for name, source in self._sources.items():
            if name in query:
                self._load(session, source)

    def _load(self, session: SparkSession, source: Source) -> None:
        table = self._read(source)
        session.createDataFrame(table).createOrReplaceTempView(source.name)

    def _read(self, source: Source) -> pa.Table:
        from pathlib import Path

        from ...push_files import read_live

        try:  # the live files: a compaction racing the read or stopped part way shows no push twice
            table = read_live(Path(str(source.location)).parent)
        except OSError as exc:
            raise SourceError(
                f"source '{source.name}': cannot read its files {source.location} on the driver ({exc}); "
                "check that they exist and are readable"
            ) from exc
        if table is not None:
            self._schemas[source.name] = table.schema
            return table
        known = self._schemas.get(source.name)
        if known is not None:
            return known.empty_table()
        raise SourceError(
            f"source '{source.name}': cannot read its files {source.location} on the driver; "
            "check that they exist and are readable"
        )
