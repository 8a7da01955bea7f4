"""Checking feature view specs before they are stored, and hashing their definitions.

A spec is ``FeatureView.to_spec()``. Every backend (and the server) passes specs
through :func:`canonical_spec`, so a malformed or oversize one is refused with an
``InvalidSpecError`` (HTTP 422) naming the field, and two spellings of the same
definition ('30d' and '720h') are stored alike.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from jupyter_features.errors import InvalidSpecError, TTLError, did_you_mean
from jupyter_features.sources import check_identifier, is_identifier

__all__ = ["LIMITS", "canonical_spec", "definition_hash", "check_view_name", "check_text", "check_version"]

#: Size limits of one spec; the server also refuses request bodies over ``body_bytes``.
LIMITS: dict[str, int] = {
    "name": 128,
    "sql": 100_000,
    "text": 10_000,  # descriptions
    "short": 256,  # owner, tags, column names and types
    "keys": 32,  # entity columns
    "tags": 100,
    "features": 2_000,
    "windows": 16,  # a windowed view's windows
    "vocabulary": 10_000,
    "spec_bytes": 2_000_000,
    "body_bytes": 8_000_000,
}

_KNOWN = ("name", "sql", "entity", "timestamp", "created_timestamp", "ttl", "description", "owner", "tags",
          "features", "lineage", "sources", "windows")  # fmt: skip
_FEATURE_TYPES = ("int64", "float64", "string", "bool", "timestamp", "list<float>", "categorical")


def check_text(value: str, what: str) -> str:
    """Refuse NUL characters and lone surrogates: no database stores them and no JSON encoder sends them."""
    if "\x00" in value:
        raise InvalidSpecError(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidSpecError(f"{what} is not valid Unicode text (a lone surrogate at {exc.start})") from exc
    return value


def _check_plain(value: Any, what: str, depth: int = 0) -> None:
    """Walk extra spec fields: plain JSON data, not too deep, clean strings."""
    if depth > 32:
        raise InvalidSpecError(f"{what} is nested more than 32 levels deep")
    if isinstance(value, str):
        check_text(value, what)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            check_text(str(k), what)
            _check_plain(v, what, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(v, what, depth + 1)


def check_version(name: str, version: Any) -> int:
    """A version number: a positive integer that fits every store (32 bits)."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 2**31 - 1:
        raise InvalidSpecError(
            f"feature view '{name}': version must be a positive integer, got {version!r}"[:300]
        )
    return version


def check_view_name(name: Any) -> str:
    """A feature view name: an identifier of at most 128 characters."""
    if not is_identifier(name) or len(name) > LIMITS["name"]:
        shown = name if not isinstance(name, str) else name[:80]
        raise InvalidSpecError(
            f"feature view name {shown!r} is not valid; use letters, digits and _ "
            f"(starting with a letter or _), at most {LIMITS['name']} characters"
        )
    return name


class _Checker:
    def __init__(self, name: str) -> None:
        self.who = f"feature view '{name}'"

    def fail(self, field: str, expected: str, value: Any) -> InvalidSpecError:
        got = type(value).__name__ if not isinstance(value, str) else f"a string of {len(value)} characters"
        return InvalidSpecError(f"{self.who}: spec field '{field}' must be {expected}, got {got}")

    def text(self, field: str, value: Any, *, limit: str = "short", required: bool = True) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value.strip()) or len(value) > LIMITS[limit]:
            kind = "a non-empty string" if required else "a string"
            raise self.fail(field, f"{kind} of at most {LIMITS[limit]:,} characters", value)
        return check_text(value, f"{self.who}: spec field '{field}'")

    def identifier(self, field: str, value: Any) -> str:
        """A column or feature name: an identifier (it reaches SQL, generated code and HTML)."""
        return check_identifier(
            self.text(field, value), f"{self.who}: spec field '{field}'", error=InvalidSpecError
        )

    def texts(self, field: str, value: Any, *, limit: str, low: int = 0) -> list[str]:
        if isinstance(value, str) and field == "entity":
            value = [value]
        if value is None and low == 0:
            return []
        if not isinstance(value, (list, tuple)) or not low <= len(value) <= LIMITS[limit]:
            raise self.fail(field, f"a list of {low} to {LIMITS[limit]} strings", value)
        return [self.text(f"{field}[{i}]", v) for i, v in enumerate(value)]


def canonical_spec(spec: Any) -> dict[str, Any]:
    """Check ``spec`` and return its canonical form (known keys in order, TTL as '30d', extras kept)."""
    from jupyter_features.featureview import format_ttl, parse_ttl

    if not isinstance(spec, Mapping):
        raise InvalidSpecError(
            f"a feature view spec must be a mapping like FeatureView.to_spec(), got {type(spec).__name__}"
        )
    name = check_view_name(spec.get("name"))
    c = _Checker(name)
    out: dict[str, Any] = {"name": name, "sql": c.text("sql", spec.get("sql"), limit="sql")}
    keys = c.texts("entity", spec.get("entity"), limit="keys", low=1)
    out["entity"] = [c.identifier(f"entity[{i}]", k) for i, k in enumerate(keys)]
    out["timestamp"] = c.identifier("timestamp", spec.get("timestamp"))
    created = spec.get("created_timestamp")
    out["created_timestamp"] = c.identifier("created_timestamp", created) if created else None
    ttl = spec.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (str, int, float))):
        raise c.fail("ttl", "a duration like '30d' or null", ttl)
    if isinstance(ttl, str) and len(ttl) > LIMITS["short"]:
        raise c.fail("ttl", "a duration like '30d' or null", ttl)
    try:
        out["ttl"] = format_ttl(parse_ttl(ttl, owner=c.who))
    except TTLError as exc:
        raise InvalidSpecError(str(exc)) from exc
    out["description"] = c.text("description", spec.get("description"), limit="text", required=False)
    out["owner"] = c.text("owner", spec.get("owner"), required=False)
    out["tags"] = c.texts("tags", spec.get("tags"), limit="tags")
    out["features"] = _features(c, spec.get("features"))
    out["lineage"] = _lineage(c, spec.get("lineage"))
    out["sources"] = c.texts("sources", spec.get("sources"), limit="features")
    windows = spec.get("windows")
    if windows is not None and windows != [] and windows != ():  # a plain view's spec has none
        out["windows"] = _windows(c, windows, out)
    for key, value in spec.items():
        if key in _KNOWN or key == "version":  # the registry numbers versions itself
            continue
        if not isinstance(key, str) or len(key) > LIMITS["short"]:
            raise InvalidSpecError(f"{c.who}: spec keys must be short strings, got {str(key)[:80]!r}")
        _check_plain(value, f"{c.who}: spec field '{key}'")
        out[key] = value
    try:
        size = len(json.dumps(out, allow_nan=False))
    except (TypeError, ValueError) as exc:
        extras = [k for k in out if k not in _KNOWN]
        raise InvalidSpecError(
            f"{c.who}: the spec is not plain JSON data ({exc}); extra fields: {', '.join(extras) or 'none'}"
        ) from exc
    if size > LIMITS["spec_bytes"]:
        raise InvalidSpecError(f"{c.who}: the spec is {size:,} bytes; the limit is {LIMITS['spec_bytes']:,}")
    return out


def _windows(c: _Checker, value: Any, spec: Mapping[str, Any]) -> list[str]:
    """A windowed view's windows: 1 to 16 texts like '24h', each a positive duration, no two alike."""
    from jupyter_features.errors import FeatureViewError
    from jupyter_features.windows import time_windows

    texts = c.texts("windows", value, limit="windows", low=1)
    try:
        time_windows(texts, c.who)
    except FeatureViewError as exc:
        raise InvalidSpecError(f"{exc} (field 'windows')") from exc
    if spec.get("ttl") or spec.get("created_timestamp"):
        raise InvalidSpecError(
            f"{c.who}: a windowed view has neither ttl nor created_timestamp (each window bounds the "
            "rows it aggregates, and all rows at one time count); drop them"
        )
    return texts


def _features(c: _Checker, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= LIMITS["features"]:
        raise c.fail("features", f"a list of 1 to {LIMITS['features']:,} features", value)
    features: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, f in enumerate(value):
        if not isinstance(f, Mapping):
            raise c.fail(f"features[{i}]", "a mapping with name and type", f)
        name = c.identifier(f"features[{i}].name", f.get("name"))
        if name in seen:
            raise InvalidSpecError(f"{c.who}: feature '{name}' appears twice in 'features'")
        seen.add(name)
        ftype = f.get("type")
        if ftype not in _FEATURE_TYPES:
            raise InvalidSpecError(
                f"{c.who}: feature '{name}' has type {str(ftype)[:40]!r}"
                f"{did_you_mean(str(ftype), _FEATURE_TYPES)}; expected one of {', '.join(_FEATURE_TYPES)}"
            )
        feature: dict[str, Any] = {
            "name": name,
            "type": ftype,
            "duckdb_type": c.text(f"features[{i}].duckdb_type", f.get("duckdb_type"), required=False),
            "description": c.text(
                f"features[{i}].description", f.get("description"), limit="text", required=False
            ),
        }
        if f.get("vocabulary") is not None:
            feature["vocabulary"] = c.texts(
                f"features[{i}].vocabulary", f.get("vocabulary"), limit="vocabulary"
            )
        features.append(feature)
    return features


def _lineage(c: _Checker, value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > LIMITS["features"]:
        raise c.fail("lineage", "a mapping of feature name to 'source.column' strings", value)
    return {
        c.identifier("lineage key", k): c.texts(f"lineage[{k!r}]", v, limit="features")
        for k, v in value.items()
    }


#: Fields that never enter the definition hash; the rest is the cache key (normalizing SQL is slow).
_METADATA = ("name", "description", "owner", "tags")
_hashes: OrderedDict[str, str] = OrderedDict()
_hashes_lock = threading.Lock()


def definition_hash(spec: Mapping[str, Any]) -> str:
    """The definition hash of a canonical spec, exactly ``FeatureView.definition_hash``.

    Remembered for the last few thousand definitions, so re-exporting unchanged views
    does not parse their SQL again.
    """
    from jupyter_features.analysis import parse_feature_sql
    from jupyter_features.errors import FeaturesError
    from jupyter_features.featureview import definition_hash as view_hash

    definition = {k: v for k, v in spec.items() if k not in _METADATA}
    definition["features"] = [{k: v for k, v in f.items() if k != "description"} for f in spec["features"]]
    key = json.dumps(definition, sort_keys=True, default=str)
    with _hashes_lock:
        if key in _hashes:
            _hashes.move_to_end(key)
            return _hashes[key]
    owner = f"feature view '{spec.get('name')}'"
    try:
        parsed = parse_feature_sql(str(spec["sql"]), None, owner=owner)
    except FeaturesError as exc:
        raise InvalidSpecError(f"{exc} (field 'sql')") from exc
    try:
        digest = view_hash(spec, normalized_sql=parsed.normalized)
    except FeaturesError:
        raise
    except Exception as exc:
        raise InvalidSpecError(
            f"feature view '{spec.get('name')}': cannot read its SQL: {str(exc)[:300]}"
        ) from exc
    with _hashes_lock:
        _hashes[key] = digest
        while len(_hashes) > 4096:
            _hashes.popitem(last=False)
    return digest
