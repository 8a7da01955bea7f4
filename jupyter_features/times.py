"""Time conventions: every time inside jupyter-features is naive UTC, or microseconds since
the Unix epoch (UTC) where it is stored as a number (online stores)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import TTLError

__all__ = [
    "EPOCH",
    "to_micros",
    "micros_to_datetime",
    "duration_micros",
    "now_utc",
    "naive_utc",
    "parse_ttl",
    "format_ttl",
]

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


# -- durations (TTLs and windows) ------------------------------------------------------------

_TTL_UNITS = {
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 0.001,
}  # fmt: skip
_TTL_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")


def parse_ttl(value: str | timedelta | int | float | None, *, owner: str = "ttl") -> timedelta | None:
    """Parse '30d', '12h', '1d12h', '90 minutes', a timedelta or seconds; None means no TTL."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TTLError(f"{owner}: TTL {value!r} is not a duration; use e.g. '30d', '12h' or '90m'")
    if isinstance(value, timedelta):
        ttl = value
    elif isinstance(value, (int, float)):
        ttl = _seconds(float(value), value, owner)
    elif isinstance(value, str):
        text = value.strip().lower()
        pos, seconds = 0, 0.0
        for m in _TTL_PART.finditer(text):
            if m.start() != pos or m.group(2) not in _TTL_UNITS:
                break
            seconds += float(m.group(1)) * _TTL_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise TTLError(
                f"{owner}: cannot read TTL {value!r}; write a number and a unit, "
                "e.g. '30d', '12h', '90m', '45s' or '1d12h'"
            )
        ttl = _seconds(seconds, value, owner)
    else:
        raise TTLError(f"{owner}: TTL must be a string like '30d' or a timedelta, not {type(value).__name__}")
    if ttl <= timedelta(0):
        raise TTLError(f"{owner}: TTL must be positive, got {value!r}; omit it for no TTL")
    return ttl


def _seconds(seconds: float, value: object, owner: str) -> timedelta:
    """A timedelta of ``seconds``: NaN, infinite or past timedelta's range (~2.7 million years) is refused."""
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError) as exc:
        raise TTLError(
            f"{owner}: TTL {value!r} is not a usable duration; use e.g. '30d', '12h' or '90m'"
        ) from exc


def format_ttl(ttl: timedelta | None) -> str | None:
    """The canonical compact text of a TTL ('30d', '1d12h', '1500ms')."""
    if ttl is None:
        return None
    micros = ttl // timedelta(microseconds=1)
    if micros % 1000:
        return f"{micros}us"
    ms = micros // 1000
    if ms % 1000:
        return f"{ms}ms"
    secs = ms // 1000
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, secs = divmod(secs, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
