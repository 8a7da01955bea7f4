"""Online reads across views: parse references once, then one store lookup per view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import FeatureReferenceError, OnlineStoreError
from ..refs import group_refs
from .result import OnlineResult

if TYPE_CHECKING:
    from . import OnlineStore

__all__ = ["read_features"]

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
) -> OnlineResult:
    """Read ``refs`` ('view:feature', 'view:*') for each entity row from ``store``."""
    rows: Sequence[Mapping[str, Any]]
    if isinstance(entity_rows, Mapping):  # columnar form {"user_id": [1, 2]}
        rows = _rows_of(entity_rows)
    else:
        rows = entity_rows
    plan = _plan((refs,) if isinstance(refs, str) else tuple(refs))
    columns: dict[str, list[Any]] = {}
    parts = []
    for view, version, features in plan:
        table, values = store.read(view, features, rows)
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


def _rows_of(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = list(columns)
    lists = [list(columns[n]) for n in names]
    if len({len(v) for v in lists}) > 1:
        raise FeatureReferenceError("entity columns must all have the same length")
    return [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]
