"""What the read endpoint takes, checked by hand: fast, and strict about entity keys.

A body is ``{"features": ["view:feature", ...], "entities": [{"user_id": 42}, ...]}`` or
with columnar entities ``{"user_id": [42, 7]}``, and optionally ``"at"``: the time the values
are read as of (ISO 8601 text; default now). A key of an int64 key column must be a
JSON integer in the int64 range and a key of a string column a JSON string: ``1.9``,
``true``, ``"42"`` or ``10**30`` for an int64 key is a 400 naming the key and the view,
never a lookup of something else. (The Python API stays lenient, as documented.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import InvalidRequestError, NotMaterializedError
from ..refs import group_refs

if TYPE_CHECKING:
    from ..online import OnlineStore, OnlineTable

__all__ = ["MAX_ENTITIES", "MAX_FEATURES", "ReadRequest", "KeyPlan", "parse_read", "key_plan", "check_keys"]

MAX_FEATURES = 1_000
MAX_ENTITIES = 10_000
FIELDS = ("features", "entities", "at")
_REQUIRED = ("features", "entities")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXAMPLE = '{"features": ["view:feature"], "entities": [{"user_id": 42}]}'


class ReadRequest(NamedTuple):
    features: tuple[str, ...]
    entities: list[dict[str, Any]] | dict[str, list[Any]]  # rows, or columns
    size: int  # entities
    at: int | None = None  # as of (µs since the epoch); None: now


class KeyPlan(NamedTuple):
    """The entity keys each view of a request is read by: (view, key columns, key types)."""

    views: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]

    def matches(self, tables: Sequence[OnlineTable]) -> bool:
        """True when the versions read are keyed as this plan checked the request for."""
        return len(tables) == len(self.views) and all(
            t.view == v and t.entity == k and t.key_types == kt
            for t, (v, k, kt) in zip(tables, self.views, strict=True)
        )


def parse_read(data: Any) -> ReadRequest:
    """The request in ``data`` (parsed JSON), or an InvalidRequestError saying what is wrong."""
    if type(data) is not dict:
        raise InvalidRequestError(f"the request body must be a JSON object like {_EXAMPLE}")
    if len(data) != 2 or "features" not in data or "entities" not in data:
        unknown = [k for k in data if k not in FIELDS]
        if unknown:
            raise InvalidRequestError(
                f"unknown field(s) {', '.join(repr(str(k)[:100]) for k in unknown[:5])} in the request; "
                f"it takes {', '.join(FIELDS)}"
            )
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise InvalidRequestError(f"the request has no {' and no '.join(missing)}; send e.g. {_EXAMPLE}")
    features = data["features"]
    if type(features) is not list or not features or not all(type(f) is str for f in features):
        raise InvalidRequestError('"features" must be a non-empty list of strings like "view:feature"')
    if len(features) > MAX_FEATURES:
        raise InvalidRequestError(f"{len(features):,} features in one request; send at most {MAX_FEATURES:,}")
    entities = data["entities"]
    if type(entities) is list:
        if not all(type(row) is dict for row in entities):
            i = next(i for i, row in enumerate(entities) if type(row) is not dict)
            raise InvalidRequestError(f'entity {i} is not a JSON object; send e.g. [{{"user_id": 42}}]')
        count = len(entities)
    elif type(entities) is dict:
        if not all(type(column) is list for column in entities.values()):
            name = next(k for k, c in entities.items() if type(c) is not list)
            raise InvalidRequestError(
                f'entity column {name[:100]!r} must be a list, e.g. {{"user_id": [42, 7]}}'
            )
        lengths = {len(column) for column in entities.values()}
        if len(lengths) > 1:
            raise InvalidRequestError("entity columns must all have the same length")
        count = lengths.pop() if lengths else 0
    else:
        raise InvalidRequestError(
            '"entities" must be a list of objects [{"user_id": 42}] or columns {"user_id": [42, 7]}'
        )
    if count > MAX_ENTITIES:
        raise InvalidRequestError(f"{count:,} entities in one request; send at most {MAX_ENTITIES:,}")
    return ReadRequest(tuple(features), entities, count, parse_at(data.get("at")))


def parse_at(value: Any) -> int | None:
    """The request's ``"at"`` (ISO 8601 text or null) in µs since the epoch."""
    if value is None:
        return None
    if type(value) is not str or len(value) > 64:
        raise InvalidRequestError(
            f'"at" must be ISO 8601 text like "2024-01-10T12:00:00", not {_what(value)}'
        )
    from ..times import to_micros

    try:
        return to_micros(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequestError(
            f'"at" {_shown(value)} is not a time; send ISO 8601 text like "2024-01-10T12:00:00Z"'
        ) from None


def key_plan(store: OnlineStore, features: Sequence[str]) -> KeyPlan:
    """How the views of ``features`` are keyed now in ``store``."""
    views = []
    for view, _version in group_refs(list(features)):
        table = store.current(view)
        if table is None:
            raise NotMaterializedError(
                f"feature view '{view}' is not materialized in {store.url.split('?', 1)[0]}; "
                f"run ws.materialize(['{view}']) or `jupyter-features materialize {view}`"
            )
        views.append((view, table.entity, table.key_types))
    return KeyPlan(tuple(views))


def check_keys(plan: KeyPlan, request: ReadRequest) -> None:
    """Raise InvalidRequestError unless every entity key is exactly of its view's key type."""
    entities = request.entities
    for view, keys, types in plan.views:
        for key, kind in zip(keys, types, strict=True):
            if isinstance(entities, dict):
                values = entities.get(key)
                if values is None:
                    raise InvalidRequestError(
                        f"the entities have no column '{key}'; feature view '{view}' is keyed by {', '.join(keys)}"
                    )
            else:
                try:
                    values = [row[key] for row in entities]
                except KeyError:
                    i = next(i for i, row in enumerate(entities) if key not in row)
                    raise InvalidRequestError(
                        f"entity row {i} has no key '{key}'; feature view '{view}' is keyed by {', '.join(keys)}"
                    ) from None
            if kind == "int64":
                if not all(type(v) is int and _INT64_MIN <= v <= _INT64_MAX for v in values):
                    bad = next(v for v in values if not (type(v) is int and _INT64_MIN <= v <= _INT64_MAX))
                    raise InvalidRequestError(
                        f"entity key '{key}' of feature view '{view}' is an int64: {_shown(bad)} is not "
                        f"({_what(bad)}); send a JSON integer between -2**63 and 2**63-1"
                    )
            elif not all(type(v) is str for v in values):
                bad = next(v for v in values if type(v) is not str)
                raise InvalidRequestError(
                    f"entity key '{key}' of feature view '{view}' is a string: {_shown(bad)} is not "
                    f"({_what(bad)}); send a JSON string"
                )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _what(value: Any) -> str:
    if type(value) is int or (type(value) is float and value.is_integer() and abs(value) >= 2**63):
        return "an integer out of the int64 range"  # JSON parsers read integers past 64 bits as floats
    return {
        bool: "a boolean",
        float: "a number with a fraction or exponent",
        str: "a string",
        type(None): "null",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
