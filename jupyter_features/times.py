"""Time conventions: every time inside jupyter-features is naive UTC, or microseconds since
the Unix epoch (UTC) where it is stored as a number (online stores)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["EPOCH", "to_micros", "micros_to_datetime", "duration_micros", "now_utc", "naive_utc"]

EPOCH = datetime(1970, 1, 1)
_MICRO = timedelta(microseconds=1)


def to_micros(value: Any) -> int:
    """Microseconds since the epoch of a datetime/date/ISO text/pandas Timestamp (naive = UTC)."""
    return (naive_utc(value) - EPOCH) // _MICRO


def micros_to_datetime(micros: int) -> datetime:
    """The naive UTC datetime of ``micros`` since the epoch."""
    return EPOCH + timedelta(microseconds=micros)


def duration_micros(duration: timedelta) -> int:
    """A duration in whole microseconds."""
    return duration // _MICRO


def now_utc() -> datetime:
    """Now, as a naive UTC datetime."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def naive_utc(value: Any) -> datetime:
    """A datetime/date/ISO text/pandas Timestamp as a naive UTC datetime (naive input is UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        if hasattr(value, "year"):  # a date
            value = datetime(value.year, value.month, value.day)
        else:
            raise TypeError(f"not a time: {value!r}")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def naive_utc_column(frame: Any, column: str, *, owner: str = "label frame") -> Any:
    """``frame[column]`` (pandas) as naive UTC datetimes: zoned times are converted to UTC,
    text is parsed; anything else is refused with a LabelFrameError naming the column."""
    import pandas as pd

    from .errors import LabelFrameError

    ts = frame[column]
    textual = ts.dtype == object or pd.api.types.is_string_dtype(ts)
    if not (pd.api.types.is_datetime64_any_dtype(ts) or textual):
        raise LabelFrameError(
            f"{owner}: timestamp column '{column}' has type {ts.dtype}, not a datetime; "
            "convert it with pd.to_datetime"
        )
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        return ts.dt.tz_convert("UTC").dt.tz_localize(None)
    if not pd.api.types.is_datetime64_any_dtype(ts):
        try:
            return pd.to_datetime(ts, utc=True).dt.tz_localize(None)
        except (ValueError, TypeError) as exc:
            raise LabelFrameError(
                f"{owner}: timestamp column '{column}' holds values that are not times: {exc}"
            ) from exc
    return ts


def naive_utc_table(table: Any) -> Any:
    """An Arrow table with every zoned timestamp column as naive UTC (same instants)."""
    import pyarrow as pa

    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            fields.append(pa.field(f.name, pa.timestamp(f.type.unit), f.nullable))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields))
