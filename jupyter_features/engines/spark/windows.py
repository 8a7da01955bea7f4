"""Window aggregates at each label's own time, on Spark.

The view's rows and the label rows go into one union per view, partitioned by the entity keys
and ordered by time in microseconds; each window is a RANGE frame of w - 1us before the row up
to the row itself (with its peers), which on microsecond times is (t - w, t]. Label rows carry
nulls, so every aggregate sees only the view's rows; all windows share the one shuffle and sort.
count(DISTINCT x) is the size of the frame's set of x. Nothing is collected to the driver but
the result. For an online store, ``window_events_frame`` gives the events a run writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...errors import LabelFrameError, UnknownFeatureError, did_you_mean
from ...sqltext import EVENT_TS, LABEL_TS, ROW
from ...times import to_micros
from ...windows import Aggregate, TimeWindow, WindowPlan, value_class
from .spark_types import duckdb_type

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame

    from . import SparkEngine

__all__ = ["window_features_frame", "window_features", "window_events_frame", "windows_at_frame"]

_AT = "__jf_at"  # event or label time, in microseconds
_LABEL = "__jf_label"  # true on label rows


def _col(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def window_features_frame(
    engine: SparkEngine,
    labels: DataFrame,
    plan: WindowPlan,
    *,
    features: Sequence[str] | None = None,
    output: Sequence[str] | None = None,
) -> DataFrame:
    """ROW and the plan's features (all, or ``features``, named ``output``) for every row of
    ``labels`` (a Spark DataFrame with ROW, LABEL_TS and the entity keys); lazy, unordered."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    selected = _select(plan, features)
    names = [n for n, _, _ in selected] if output is None else list(output)
    rel = engine.spark_sql(plan.relation_sql, owner=plan.owner)
    types = {f.name: duckdb_type(f.dataType) for f in rel.schema.fields}
    out_types = plan.output_types(types)
    keys = _aligned_keys(labels, rel, plan)
    inputs = sorted({a.input for _, a, _ in selected if a.input})
    flags = sorted({a.flag for _, a, _ in selected if a.flag})
    present = [_col(EVENT_TS).isNotNull(), *(_col(k).isNotNull() for k in plan.entity)]
    events = rel.where(_all(present)).select(
        *[_col(k).cast(t).alias(k) if t else _col(k) for k, t in keys.items()],
        F.unix_micros(_col(EVENT_TS).cast("timestamp")).alias(_AT),
        F.lit(False).alias(_LABEL),
        F.lit(None).cast("long").alias(ROW),
        *[_col(c) for c in inputs + flags],
    )
    present = [_col(LABEL_TS).isNotNull(), *(_col(k).isNotNull() for k in plan.entity)]
    label_rows = labels.where(_all(present)).select(
        *[_col(k).cast(t).alias(k) if t else _col(k) for k, t in keys.items()],
        F.unix_micros(_col(LABEL_TS).cast("timestamp")).alias(_AT),
        F.lit(True).alias(_LABEL),
        _col(ROW).cast("long").alias(ROW),
        *[F.lit(None).cast(events.schema[c].dataType).alias(c) for c in inputs + flags],
    )
    order = Window.partitionBy(*[_col(k) for k in plan.entity]).orderBy(_col(_AT))
    frames = {w.text: order.rangeBetween(-(w.micros - 1), 0) for w in plan.windows}
    columns = [
        _aggregate(a, types, out_types[name], frames[w.text]).alias(f"__jf_o{i}")
        for i, (name, a, w) in enumerate(selected)
    ]
    computed = events.unionByName(label_rows).select(_col(_LABEL), _col(ROW), *columns).where(_col(_LABEL))
    # label rows with a null key or time never met a row: counts 0, the rest null
    every = labels.select(_col(ROW).cast("long").alias(ROW)).join(computed.drop(_LABEL), on=ROW, how="left")
    out = [_col(ROW)]
    for i, ((_, a, _), name) in enumerate(zip(selected, names, strict=True)):
        value = _col(f"__jf_o{i}")
        out.append((F.coalesce(value, F.lit(0)) if a.function == "count" else value).alias(name))
    return every.select(*out)


def window_features(
    engine: SparkEngine,
    labels: pd.DataFrame,
    plan: WindowPlan,
    *,
    features: Sequence[str] | None = None,
    output: Sequence[str] | None = None,
) -> pd.DataFrame:
    """As ``window_features_frame`` from a pandas label table (ROW 0..n-1, LABEL_TS, keys); the
    feature columns in ROW order, typed as the DuckDB engine types them."""
    import pandas as pd
    import pyarrow as pa

    spark_labels = engine.session.createDataFrame(pa.Table.from_pandas(labels, preserve_index=False))
    table = window_features_frame(engine, spark_labels, plan, features=features, output=output).toArrow()
    fields = [
        pa.field(f.name, pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) and f.type.tz else f
        for f in table.schema
    ]
    nullable = {
        pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(),
    }  # fmt: skip
    frame = table.cast(pa.schema(fields)).to_pandas(types_mapper=nullable.get)
    frame = frame.sort_values(ROW, kind="stable").reset_index(drop=True).drop(columns=[ROW])
    for column, (_, a, _) in zip(frame.columns, _select(plan, features), strict=True):
        if a.function == "count":  # never null
            frame[column] = frame[column].astype("int64")
    return frame


def window_events_frame(engine: SparkEngine, plan: WindowPlan, end: Any) -> DataFrame:
    """The events an online store keeps for reads at or after ``end``, as the DuckDB engine's
    ``window_events_sql``: the relation's rows (keys, EVENT_TS as a timestamp, inputs, flags) with
    event time in (end - longest window, end] and no null key; lazy. Each entity's events are in
    one partition, in time order, so one task writes them in the order a store appends them."""
    keys = [_col(k) for k in plan.entity]
    events = _recent(engine, plan, end).select(*keys, _col(EVENT_TS), *map(_col, (*plan.inputs, *plan.flags)))
    return events.repartition(*keys).sortWithinPartitions(*keys, _col(EVENT_TS))


def windows_at_frame(engine: SparkEngine, plan: WindowPlan, end: Any, features: Sequence[str]) -> DataFrame:
    """``features`` as of ``end`` per entity with an event in the longest window: keys, EVENT_TS
    (the entity's last event time), the features; lazy. Each entity is a label at ``end``."""
    from pyspark.sql import functions as F

    keys = [_col(k) for k in plan.entity]
    entities = _recent(engine, plan, end).groupBy(*keys).agg(F.max(_col(EVENT_TS)).alias(EVENT_TS))
    labels = entities.withColumn(LABEL_TS, F.timestamp_micros(F.lit(to_micros(end)))).withColumn(
        ROW, F.monotonically_increasing_id()
    )
    values = window_features_frame(engine, labels, plan, features=features, output=features)
    return labels.join(values, on=ROW, how="inner").select(*keys, _col(EVENT_TS), *map(_col, features))


def _recent(engine: SparkEngine, plan: WindowPlan, end: Any) -> DataFrame:
    """The relation's rows with event time in (end - longest window, end] and no null key, their
    EVENT_TS as a timestamp."""
    from pyspark.sql import functions as F

    end_us = to_micros(end)
    longest = max(w.micros for w in plan.windows)
    rel = engine.spark_sql(plan.relation_sql, owner=plan.owner)
    rel = rel.withColumn(EVENT_TS, _col(EVENT_TS).cast("timestamp"))
    micros = F.unix_micros(_col(EVENT_TS))
    keep = [
        micros <= F.lit(end_us),
        micros > F.lit(end_us - longest),
        *(_col(k).isNotNull() for k in plan.entity),
    ]
    return rel.where(_all(keep))


def _select(plan: WindowPlan, features: Sequence[str] | None) -> list[tuple[str, Aggregate, TimeWindow]]:
    if features is None:
        return plan.features
    by_name = {name: (name, a, w) for name, a, w in plan.features}
    missing = [f for f in features if f not in by_name]
    if missing:
        raise UnknownFeatureError(
            f"{plan.owner} has no feature '{missing[0]}'{did_you_mean(missing[0], by_name)}; "
            f"it has: {', '.join(by_name)}"
        )
    return [by_name[f] for f in features]


def _all(conditions: list[Column]) -> Column:
    out = conditions[0]
    for c in conditions[1:]:
        out = out & c
    return out


def _aggregate(a: Aggregate, types: dict[str, str], out_type: str, frame: Any) -> Column:
    """The aggregate over ``frame`` of the union: label rows hold nulls, so only view rows count."""
    from pyspark.sql import functions as F

    passes = ~_col(_LABEL)
    if a.flag:
        passes = passes & _col(a.flag)
    if a.input is None:
        return F.count(F.when(passes, F.lit(1))).over(frame)
    x = F.when(passes, _col(a.input))
    kind = value_class(types[a.input])
    if a.function == "count":
        return F.size(F.collect_set(x).over(frame)).cast("long") if a.distinct else F.count(x).over(frame)
    if a.function in ("min", "max"):
        if kind == "float":
            x = x.cast("double")
        elif kind == "time":
            x = x.cast("timestamp")
        return (F.min(x) if a.function == "min" else F.max(x)).over(frame)
    x = x.cast("long" if kind in ("int", "bool") else "double")
    if a.function == "sum":
        return F.sum(x).over(frame).cast("long" if out_type == "BIGINT" else "double")
    functions = {"avg": F.avg, "var_samp": F.var_samp, "stddev_samp": F.stddev_samp}
    return functions[a.function](x.cast("double")).over(frame)


def _aligned_keys(labels: DataFrame, rel: DataFrame, plan: WindowPlan) -> dict[str, Any]:
    """Per key, the type both sides are cast to (None: as they are), or a LabelFrameError."""
    from pyspark.sql import types as T

    out: dict[str, Any] = {}
    for k in plan.entity:
        if k not in labels.columns:
            raise LabelFrameError(f"label frame: it has no column '{k}', an entity key of {plan.owner}")
        lt, vt = labels.schema[k].dataType, rel.schema[k].dataType
        numeric = isinstance(lt, T.NumericType), isinstance(vt, T.NumericType)
        if lt == vt:
            out[k] = None
        elif isinstance(lt, T.NullType) or numeric == (True, True):
            integral = isinstance(lt, T.IntegralType) and isinstance(vt, T.IntegralType)
            out[k] = vt if isinstance(lt, T.NullType) else (T.LongType() if integral else T.DoubleType())
        elif numeric[0] != numeric[1] or isinstance(lt, T.StringType) != isinstance(vt, T.StringType):
            raise LabelFrameError(
                f"label frame: key '{k}' is {duckdb_type(lt)} but {plan.owner} has it as {duckdb_type(vt)}; "
                "cast one to the other's type"
            )
        else:
            out[k] = vt
    return out
