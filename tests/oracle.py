"""A slow, obviously-correct point-in-time join, and hypothesis strategies for it.

Shared by the engine tests (DuckDB, Spark): any engine must agree with this oracle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from hypothesis import strategies as st

BASE = datetime(2024, 1, 1)


def is_null(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _desc_key(values: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """Sort key under which max() picks greatest values, nulls losing to any value."""
    return tuple((0, 0) if is_null(v) else (1, v) for v in values)


@dataclass
class ViewCase:
    name: str
    frame: pd.DataFrame  # keys..., ts, created (maybe), features...
    entity: list[str]
    features: list[str]
    created: str | None
    ttl: timedelta | None


def _rank(row: dict[str, Any], view: ViewCase) -> tuple[Any, ...]:
    created = (row[view.created],) if view.created else ()
    return (row["ts"],) + _desc_key(created) + _desc_key(tuple(row[f] for f in view.features))


def oracle_join(labels: pd.DataFrame, timestamp: str, views: list[ViewCase]) -> dict[str, list[Any]]:
    """For each label row and view: same keys, greatest ts <= t, then greatest created,
    then greatest feature values; null if older than t - ttl. Nulls never match."""
    out: dict[str, list[Any]] = {}
    for view in views:
        rows = view.frame.to_dict("records")
        cols = {f: [] for f in view.features}
        for label in labels.to_dict("records"):
            t = label[timestamp]
            keys = [label[k] for k in view.entity]
            best = None
            if not is_null(t) and not any(is_null(k) for k in keys):
                candidates = [
                    r for r in rows
                    if not is_null(r["ts"]) and r["ts"] <= t
                    and all(not is_null(r[k]) and r[k] == label[k] for k in view.entity)
                ]  # fmt: skip
                if candidates:
                    best = max(candidates, key=lambda r, v=view: _rank(r, v))
                    if view.ttl is not None and best["ts"] < t - view.ttl:
                        best = None
            for f in view.features:
                cols[f].append(None if best is None or is_null(best[f]) else best[f])
        for f in view.features:
            out[f"{view.name}__{f}"] = cols[f]
    return out


def normalize(values: Any) -> list[Any]:
    out = []
    for v in list(values):
        if is_null(v):
            out.append(None)
        elif hasattr(v, "item"):
            out.append(v.item())
        else:
            out.append(v)
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in out]


# -- strategies ------------------------------------------------------------------------


def _day(n: int | None) -> Any:
    return pd.NaT if n is None else BASE + timedelta(days=n)


small_key = st.integers(0, 3)
maybe_day = st.one_of(st.none(), st.integers(0, 20)).filter(lambda x: True)


@st.composite
def view_frames(
    draw: Any, name: str, entity: list[str], with_created: bool, tie_heavy: bool = False
) -> ViewCase:
    """A view's rows; ``tie_heavy`` crowds them onto 2 keys and 4 days, with 2 created times
    and 3 integer values, so most rows tie on (keys, event time) and many on created too."""
    n = draw(st.integers(0, 25))
    key, last_day = (st.integers(0, 1), 3) if tie_heavy else (small_key, 20)
    data: dict[str, list[Any]] = {k: [draw(key) for _ in range(n)] for k in entity}
    day = st.integers(0, last_day)
    data["ts"] = [_day(draw(st.one_of(day, st.none() if draw(st.booleans()) else day))) for _ in range(n)]
    if with_created:
        data["created"] = [
            _day(draw(st.one_of(st.none(), st.integers(0, 1 if tie_heavy else 3)))) for _ in range(n)
        ]
    ints = st.integers(-1, 1) if tie_heavy else st.integers(-5, 5)
    data["f_int"] = [draw(st.one_of(st.none(), ints)) for _ in range(n)]
    data["f_float"] = [
        draw(st.one_of(st.none(), st.floats(-10, 10, allow_nan=False).map(lambda x: round(x, 3))))
        for _ in range(n)
    ]
    frame = pd.DataFrame(data)
    for k in entity:
        frame[k] = frame[k].astype("int64")
    frame["ts"] = pd.to_datetime(frame["ts"])
    if with_created:
        frame["created"] = pd.to_datetime(frame["created"])
    frame["f_int"] = frame["f_int"].astype("Int64")
    frame["f_float"] = frame["f_float"].astype("float64")
    ttl_days = draw(st.one_of(st.none(), st.integers(1, 6)))
    return ViewCase(
        name=name, frame=frame, entity=entity, features=["f_int", "f_float"],
        created="created" if with_created else None,
        ttl=timedelta(days=ttl_days) if ttl_days else None,
    )  # fmt: skip


@st.composite
def label_frames(draw: Any, keys: list[str]) -> pd.DataFrame:
    n = draw(st.integers(0, 20))
    data: dict[str, list[Any]] = {
        k: [
            draw(
                st.one_of(st.integers(0, 4), st.none()) if draw(st.integers(0, 9)) == 0 else st.integers(0, 4)
            )
            for _ in range(n)
        ]
        for k in keys
    }
    data["label_ts"] = [_day(draw(st.integers(0, 24)) if draw(st.integers(0, 9)) else None) for _ in range(n)]
    data["y"] = list(range(n))
    frame = pd.DataFrame(data)
    for k in keys:
        frame[k] = frame[k].astype("Int64")
    frame["label_ts"] = pd.to_datetime(frame["label_ts"])
    # an index that is neither sorted nor unique, to prove it is kept untouched
    frame.index = [draw(st.integers(0, 5)) for _ in range(n)]
    return frame
