"""Online reads across views: parse references once, then one store lookup per view."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import FeatureReferenceError, OnlineStoreError
from ..refs import group_refs
from .result import OnlineResult

if TYPE_CHECKING:
    from . import OnlineStore

__all__ = ["read_features", "at_micros"]

_Plan = tuple[tuple[str, int | None, tuple[str, ...] | None], ...]


@lru_cache(maxsize=512)
def _plan(refs: tuple[str, ...]) -> _Plan:
    groups = group_refs(list(refs))
    return tuple(
        (view, version, None if "*" in wanted else tuple(wanted))
        for (view, version), wanted in groups.items()
    )


def read_features(
    store: OnlineStore,
    refs: Sequence[str] | str,
    entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    at: Any = None,
) -> OnlineResult:
    """Read ``refs`` ('view:feature', 'view:*') for each entity row from ``store``, as of ``at``
    (a time; default now): each entity's latest row at or before it, null past the TTL."""
    rows: Sequence[Mapping[str, Any]]
    if isinstance(entity_rows, Mapping):  # columnar form {"user_id": [1, 2]}
        rows = _rows_of(entity_rows)
    else:
        rows = entity_rows
    plan = _plan((refs,) if isinstance(refs, str) else tuple(refs))
    at_us = time.time_ns() // 1000 if at is None else at_micros(at)
    columns: dict[str, list[Any]] = {}
    parts = []
    for view, version, features in plan:
        table, values = store.read(view, features, rows, at_us)
        if version is not None and table.view_version != version:
            raise OnlineStoreError(
                f"feature view '{view}' version {version} is not what {store.url} serves "
                f"(it serves version {table.view_version}); materialize '{view}@{version}' or drop the pin"
            )
        names = features if features is not None else table.feature_names
        for name, column in zip(names, values, strict=True):
            columns[f"{view}__{name}"] = column
        parts.append((table, names))
    return OnlineResult(columns, rows, parts)


def at_micros(at: Any) -> int:
    """A read's time ``at`` (datetime, date, ISO text, pandas Timestamp; naive = UTC) in µs."""
    from ..times import to_micros

    if isinstance(at, int) and not isinstance(at, bool):
        return at
    try:
        return to_micros(at)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FeatureReferenceError(
            f"at={at!r} is not a time; pass a datetime or ISO 8601 text, e.g. '2024-01-10T12:00:00'"
        ) from exc


def _rows_of(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = list(columns)
    lists = [list(columns[n]) for n in names]
    if len({len(v) for v in lists}) > 1:
        raise FeatureReferenceError("entity columns must all have the same length")
    return [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]
