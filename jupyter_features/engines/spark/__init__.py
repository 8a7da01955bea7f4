"""The Spark engine: the same feature views on Apache Spark, their SQL transpiled by sqlglot.

Sources become temporary views of the session. Spark has no ASOF join, so the
point-in-time join is a union of label rows and feature rows per entity, ordered by
time (feature rows before label rows at equal times, the tie-break winner last among
feature rows), where each label row takes the last feature row before it: one shuffle
per view. Nothing is collected to the driver but the final result.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...errors import EngineError, LabelFrameError, SourceError
from ...featureview import ViewJoin
from ...sources import Source, format_of
from ...sqltext import CREATED_TS, EVENT_TS, LABEL_TS, ROW
from ...times import duration_micros, naive_utc, naive_utc_column, naive_utc_table
from ...transpile import transpile
from .driver_sources import DriverSources
from .executors import on_this_host, ship_package, spark_context
from .spark_types import duckdb_type

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

    from ...windows import WindowPlan
    from ..duckdb import DuckDBEngine
    from .writes import SparkLatestRows

__all__ = ["SparkEngine", "default_session"]

_AT = "__jf_at"  # time of a row in the union: label time or event time
_KIND = "__jf_kind"  # 0 for a feature row, 1 for a label row (features first at equal times)
_VALUE = "__jf_v"  # the feature row as a struct; null on label rows
_MATCH = "__jf_m"  # the last feature row at or before the label row
_RANK = "__jf_rank"
_CREATED = "__jf_created"


def default_session(master: str | None = None, config: Mapping[str, str] | None = None) -> SparkSession:
    """The active SparkSession, or a new one tuned for a notebook (UTC, no UI) on ``master``
    (default ``local[*]``) with the Spark ``config`` on top.

    Executors run ``config["spark.pyspark.python"]`` if given (pyspark itself reads it only
    under spark-submit), else the ``PYSPARK_PYTHON`` pyspark reads, else — when they run on
    this machine — this very interpreter, so they import the same packages as the kernel.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        _check_master(active, master)
        return active
    builder = SparkSession.builder.master(master or "local[*]").appName("jupyter-features")
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        **(config or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    _check_master(session, master)  # a context started elsewhere (another thread) is reused as is
    python = settings.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON")
    if python is None and on_this_host(str(session.sparkContext.master)):
        python = sys.executable
    if python is not None:
        session.sparkContext.pythonExec = python  # read whenever a Python function is shipped
    return session


def _check_master(session: SparkSession, master: str | None) -> None:
    running = str(spark_context(session).master)
    if master is not None and master != running:
        raise EngineError(
            f"Spark engine: a SparkSession on {running!r} is already running in this process and Spark "
            f"allows one per process, so it cannot also run on {master!r}; stop it first (spark.stop()) "
            "or drop the master setting ([engine] master, JUPYTER_FEATURES_SPARK_MASTER) to use it"
        )


def _col(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _utc_literal(value: Any) -> Column:
    """A timestamp literal read in UTC whatever the driver's local time zone is."""
    import pandas as pd
    from pyspark.sql import functions as F

    if not isinstance(value, (str, datetime, pd.Timestamp)):
        raise EngineError(f"cannot read {value!r} as a time; pass a datetime or an ISO string")
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return F.lit(stamp.isoformat(sep=" ")).cast("timestamp")


def label_times(labels: pd.DataFrame, timestamp: str) -> pd.Series:
    """The label frame's time column as naive UTC datetimes (refused if it is not a time)."""
    series: pd.Series = naive_utc_column(labels, timestamp)
    return series


class SparkEngine:
    """Sources are temporary views of a SparkSession; joins are union + window per view."""

    name = "spark"

    def __init__(
        self,
        session: SparkSession | None = None,
        *,
        master: str | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*")
        try:
            self.session = session if session is not None else default_session(master, config)
        except ImportError as exc:
            raise EngineError(
                "the Spark engine needs pyspark and Java: pip install 'jupyter-features[spark]'"
            ) from exc
        #: Where the executors run: ``local[*]``, ``spark://host:7077``, ``yarn``, ``k8s://...``
        self.master = str(spark_context(self.session).master)
        # Feature SQL is DuckDB SQL over naive UTC times: run the session in UTC too.
        self.session.conf.set("spark.sql.session.timeZone", "UTC")
        ship_package(self.session)  # the executors' Python runs the driver's jupyter_features
        self._schemas: dict[str, dict[str, str]] = {}
        self._driver_sources = DriverSources()  # the push log: read on the driver at each use
        self._projector: DuckDBEngine | None = None

    def __repr__(self) -> str:
        return f"SparkEngine(master={self.master!r})"

    # -- sources -----------------------------------------------------------------------
    def register_source(self, source: Source) -> Source:
        """Make ``source`` a temporary view of the session; files are read by Spark itself, but
        the product's own (the push log) on the driver, at each use (``driver_sources``)."""
        if source.columns and DriverSources.takes(source):
            self._driver_sources.register(self.session, source)
            self._schemas[source.name] = dict(source.columns)
            return source
        frame = self._read(source)
        columns = source.columns or tuple((f.name, duckdb_type(f.dataType)) for f in frame.schema.fields)
        names = [c for c, _ in columns]
        if source.timestamp is not None and source.timestamp not in names:  # refused: nothing changes
            from ...errors import UnknownColumnError, did_you_mean

            raise UnknownColumnError(
                f"source '{source.name}': timestamp column '{source.timestamp}' is not in it"
                f"{did_you_mean(source.timestamp, names)}; columns: {', '.join(names)}"
            )
        frame.createOrReplaceTempView(source.name)
        self._schemas[source.name] = dict(columns)
        return Source(
            name=source.name, kind=source.kind, timestamp=source.timestamp, location=source.location,
            format=source.format, data=source.data, columns=columns,
        )  # fmt: skip

    def _read(self, source: Source) -> DataFrame:
        from pyspark.errors import PySparkException

        try:
            if source.kind == "file":
                reader, location = self.session.read, str(source.location)
                fmt = source.format or format_of(location)
                if fmt == "csv":
                    return reader.option("header", True).option("inferSchema", True).csv(location)
                if fmt == "json":
                    return reader.json(location)
                return reader.parquet(location)
            if source.kind == "dataframe":
                return self.session.createDataFrame(_arrow(source.data))
        except PySparkException as exc:
            raise SourceError(f"source '{source.name}': Spark cannot read it: {exc}") from exc
        raise SourceError(
            f"source '{source.name}' is a DuckDB table, which the Spark engine cannot see; "
            "register its data as a file or a DataFrame instead"
        )

    # -- queries -----------------------------------------------------------------------
    def spark_sql(self, query: str, *, owner: str = "query") -> DataFrame:
        """DuckDB SQL over the sources, transpiled and run by Spark (a lazy Spark DataFrame)."""
        from pyspark.errors import PySparkException

        text = transpile(query, "spark", schema=self._schemas, owner=owner)
        self._driver_sources.refresh(self.session, query)
        try:
            return self.session.sql(text)
        except PySparkException as exc:
            raise EngineError(f"{owner}: Spark rejects the transpiled SQL: {exc}\n{text}") from exc

    def sql(self, query: str) -> pd.DataFrame:
        return self.to_pandas(self.spark_sql(query))

    @staticmethod
    def to_pandas(frame: DataFrame) -> pd.DataFrame:
        return naive_utc_table(frame.toArrow()).to_pandas()

    def view_frame(self, join: ViewJoin) -> DataFrame:
        return self.spark_sql(join.sql, owner=f"feature view '{join.name}'")

    def _events(self, join: ViewJoin, frame: DataFrame, *, drop_null_keys: bool) -> DataFrame:
        """The view's rows with an event time: keys, EVENT_TS, the created tie-break, features."""
        keep = frame.where(_col(join.timestamp).isNotNull())
        if drop_null_keys:  # a null key never equals anything: such rows can never be joined
            for k in join.entity:
                keep = keep.where(_col(k).isNotNull())
        created = [_col(join.created_timestamp).alias(_CREATED)] if join.created_timestamp else []
        return keep.select(
            *[_col(k) for k in join.entity],
            _col(join.timestamp).cast("timestamp").alias(EVENT_TS),
            *created,
            *[_col(f) for f in join.features],
        )

    @staticmethod
    def _tie_break(join: ViewJoin, field: Any, *, descending: bool) -> list[Column]:
        """Among rows at one event time the winner has the greatest created timestamp, then the
        greatest feature values (nulls lose): first when ``descending``, last otherwise."""
        names = ([_CREATED] if join.created_timestamp else []) + list(join.features)
        return [field(n).desc_nulls_last() if descending else field(n).asc_nulls_first() for n in names]

    # -- point-in-time -------------------------------------------------------------------
    def training_frame(self, labels: pd.DataFrame, timestamp: str, joins: list[ViewJoin]) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        keys: list[str] = []
        for j in joins:
            keys += [k for k in j.entity if k not in keys]
        frame = pd.DataFrame({k: labels[k].to_numpy() for k in keys})
        frame[LABEL_TS] = label_times(labels, timestamp).to_numpy()
        frame[ROW] = np.arange(len(labels), dtype=np.int64)
        spark_labels = self.session.createDataFrame(_arrow(frame))
        result = self.to_pandas(self._features(spark_labels, LABEL_TS, joins))
        result = result.sort_values(ROW, kind="stable").reset_index(drop=True)
        return result.drop(columns=[ROW])

    def training_frame_spark(self, labels: Any, timestamp: str, joins: list[ViewJoin]) -> DataFrame:
        """The label frame (pandas or Spark) with the feature columns, as an ordered Spark DataFrame."""
        import numpy as np
        import pandas as pd
        from pyspark.sql import DataFrame as SparkFrame
        from pyspark.sql import functions as F

        if isinstance(labels, pd.DataFrame):
            frame = labels.reset_index(drop=True).copy()
            frame[LABEL_TS] = label_times(labels, timestamp).to_numpy()
            frame[ROW] = np.arange(len(labels), dtype=np.int64)
            spark_labels = self.session.createDataFrame(_arrow(frame))
        elif isinstance(labels, SparkFrame):
            spark_labels = labels.withColumn(LABEL_TS, _col(timestamp).cast("timestamp")).withColumn(
                ROW, F.monotonically_increasing_id()
            )
        else:
            raise LabelFrameError(f"labels must be a pandas or Spark DataFrame, not {type(labels).__name__}")
        features = self._features(spark_labels, LABEL_TS, joins)
        return spark_labels.join(features, on=ROW, how="left").orderBy(ROW).drop(ROW, LABEL_TS)

    def _features(self, labels: DataFrame, t: str, joins: list[ViewJoin]) -> DataFrame:
        """ROW and every requested feature column, one row per label row (unordered)."""
        out = self._join_one(labels, t, joins[0])
        for join in joins[1:]:
            out = out.join(self._join_one(labels, t, join), on=ROW, how="inner")
        return out

    def _join_one(self, labels: DataFrame, t: str, join: ViewJoin) -> DataFrame:
        from pyspark.sql import Window
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        plan = join.window_plan()
        if plan is not None:  # a windowed view: its window engine, at each label's own time
            from .windows import window_features_frame

            if t != LABEL_TS:
                labels = labels.withColumn(LABEL_TS, _col(t))
            return window_features_frame(self, labels, plan, features=join.features, output=join.output)

        view = self._events(join, self.view_frame(join), drop_null_keys=True)
        label_keys, view_keys = self._aligned_keys(labels, view, join)
        value = F.struct(*[_col(c) for c in view.columns if c not in join.entity])
        feature_rows = view.select(
            *view_keys, _col(EVENT_TS).alias(_AT), F.lit(0).alias(_KIND),
            F.lit(None).cast(T.LongType()).alias(ROW), value.alias(_VALUE),
        )  # fmt: skip
        value_type = feature_rows.schema[_VALUE].dataType
        label_rows = labels.select(
            *label_keys, _col(t).cast("timestamp").alias(_AT), F.lit(1).alias(_KIND),
            _col(ROW), F.lit(None).cast(value_type).alias(_VALUE),
        )  # fmt: skip
        # Feature rows before label rows at equal times, the tie-break winner last among them;
        # each label row then takes the last feature row at or before it: one shuffle per view.
        tie_break = self._tie_break(join, lambda n: F.col(_VALUE).getField(n), descending=False)
        window = (
            Window.partitionBy(*[_col(k) for k in join.entity])
            .orderBy(F.col(_AT).asc_nulls_first(), F.col(_KIND), *tie_break)
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        matched = (
            label_rows.unionByName(feature_rows)
            .withColumn(_MATCH, F.last(F.col(_VALUE), ignorenulls=True).over(window))
            .where(F.col(_KIND) == 1)
        )
        found = F.col(_AT).isNotNull() & F.col(_MATCH).isNotNull()
        if join.ttl is not None:
            event = F.unix_micros(F.col(_MATCH).getField(EVENT_TS))
            found = found & (event >= F.unix_micros(F.col(_AT)) - F.lit(duration_micros(join.ttl)))
        return matched.select(
            _col(ROW),
            *[
                F.when(found, F.col(_MATCH).getField(f)).alias(o)
                for f, o in zip(join.features, join.output, strict=True)
            ],
        )

    def _aligned_keys(
        self, labels: DataFrame, view: DataFrame, join: ViewJoin
    ) -> tuple[list[Column], list[Column]]:
        """Key columns of both sides cast to one type, or a LabelFrameError when they cannot meet."""
        from pyspark.sql import types as T

        numeric = (T.NumericType,)
        label_cols, view_cols = [], []
        for k in join.entity:
            lt, vt = labels.schema[k].dataType, view.schema[k].dataType
            target: T.DataType | None = None
            if lt == vt:
                target = None
            elif isinstance(lt, T.NullType):
                target = vt
            elif isinstance(lt, numeric) and isinstance(vt, numeric):
                integral = (T.IntegralType,)
                target = (
                    T.LongType() if isinstance(lt, integral) and isinstance(vt, integral) else T.DoubleType()
                )
            elif isinstance(lt, numeric) != isinstance(vt, numeric) or isinstance(
                lt, T.StringType
            ) != isinstance(vt, T.StringType):
                raise LabelFrameError(
                    f"label frame: key '{k}' is {duckdb_type(lt)} but feature view '{join.name}' has it as "
                    f"{duckdb_type(vt)}; cast one to the other's type"
                )
            else:
                target = vt
            label_cols.append(_col(k).cast(target).alias(k) if target is not None else _col(k))
            view_cols.append(
                _col(k).cast(target).alias(k) if target is not None and vt != target else _col(k)
            )
        return label_cols, view_cols

    # -- materialization -------------------------------------------------------------------
    def latest_frame(self, join: ViewJoin, end: Any, since: Any = None) -> DataFrame:
        """Latest row per entity with event time <= end (and > since), TTL applied at end; lazy.
        A windowed view's values as of ``end`` (``windows_at_end``)."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        if join.windows:
            return self.windows_at_end(join, end)

        frame = self.view_frame(join)
        ts = _col(join.timestamp).cast("timestamp")
        frame = frame.where(ts <= _utc_literal(end))
        if since is not None:
            frame = frame.where(ts > _utc_literal(since))
        rows = self._events(join, frame, drop_null_keys=False)
        if join.ttl is not None:
            rows = rows.where(
                F.unix_micros(_col(EVENT_TS))
                >= F.unix_micros(_utc_literal(end)) - F.lit(duration_micros(join.ttl))
            )
        order = [_col(EVENT_TS).desc(), *self._tie_break(join, _col, descending=True)]
        window = Window.partitionBy(*[_col(k) for k in join.entity]).orderBy(*order)
        ranked = rows.withColumn(_RANK, F.row_number().over(window)).where(F.col(_RANK) == 1)
        created = [_col(_CREATED).cast("timestamp").alias(CREATED_TS)] if join.created_timestamp else []
        return ranked.select(
            *[_col(k) for k in join.entity], _col(EVENT_TS), *created, *[_col(f) for f in join.features]
        )

    def windows_at_end(self, join: ViewJoin, end: Any) -> DataFrame:
        """A windowed view's values as of ``end`` per entity with a row in its longest window:
        keys, EVENT_TS (the entity's last event time), the join's features; lazy. Each entity is
        a label at ``end`` for the window engine (``engine.latest``; a run stores the events
        instead: ``window_events``)."""
        plan = join.window_plan()
        assert plan is not None
        from .windows import windows_at_frame

        return windows_at_frame(self, plan, end, join.features)

    def latest(self, join: ViewJoin, end: Any, since: Any = None) -> pa.Table:
        return naive_utc_table(self.latest_frame(join, end, since).toArrow())

    def latest_rows(self, join: ViewJoin, end: Any, since: Any = None) -> SparkLatestRows:
        """The latest rows, lazily: the executors write them into the store (see ``writes``)."""
        from .writes import SparkLatestRows

        return SparkLatestRows(
            self, self.latest_frame(join, end, since), join.entity, f"feature view '{join.name}'"
        )

    # -- windowed views online ------------------------------------------------------------
    def window_types(self, plan: WindowPlan) -> dict[str, str]:
        """The DuckDB types of ``plan``'s relation columns, bound over the sources' schemas as the
        workspace types the view: a run's version is typed as the DuckDB engine's."""
        import duckdb

        from ..duckdb import sandbox_describe

        try:
            return dict(sandbox_describe(plan.relation_sql, self._schemas))
        except duckdb.Error as exc:
            raise EngineError(f"{plan.owner}: cannot type its rows: {str(exc).splitlines()[0]}") from exc

    def window_events(self, plan: WindowPlan, end: Any) -> SparkLatestRows:
        """The events of ``plan``'s relation an online store keeps for reads at or after ``end``,
        lazily: the executors write them into the store (``windows.window_events_frame``)."""
        from .windows import window_events_frame
        from .writes import SparkLatestRows

        return SparkLatestRows(self, window_events_frame(self, plan, end), plan.entity, plan.owner)

    def window_values(self, plan: WindowPlan, at: Any) -> pa.Table:
        """Every entity's features at ``at`` (keys, then the features; entities with an event in the
        longest window before ``at``), with ``EVENT_TS`` = ``at``: what a read at ``at`` serves
        (``ws.check_online`` compares the two)."""
        import pyarrow as pa

        from .windows import windows_at_frame

        values = naive_utc_table(windows_at_frame(self, plan, at, plan.feature_names).toArrow())
        values = values.drop_columns([EVENT_TS])
        stamp = pa.array([naive_utc(at)] * values.num_rows, pa.timestamp("us"))
        return values.add_column(len(plan.entity), EVENT_TS, stamp)

    def project(self, sql: str, name: str, rows: pa.Table) -> pa.Table:
        """Run ``sql`` (a windowed view's projection of pushed rows) over ``rows`` registered as
        ``name``, on the driver with DuckDB in a sandbox of no sources: exactly as a push projects
        them, so a run's pushed events equal those the pushes wrote."""
        from ..duckdb import DuckDBEngine

        if self._projector is None:
            self._projector = DuckDBEngine(threads=1)
        return self._projector.project(sql, name, rows)


def _arrow(data: Any) -> pa.Table:
    """A pandas / polars / Arrow frame as an Arrow table Spark can take in one piece."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    if hasattr(data, "to_arrow"):
        table: pa.Table = data.to_arrow()
        return table
    raise SourceError(
        f"cannot hand a {type(data).__name__} to Spark; pass a pandas DataFrame or an Arrow table"
    )
