"""What the Features sidebar shows, as plain JSON-ready data read from a registry.

The Tornado handlers only translate HTTP to these functions and back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["FACETS", "MAX_VIEWS", "clean_stats", "redact_url", "search_views", "view_detail"]

#: Facet filters the sidebar offers, in the order it shows them (registry.search keywords).
FACETS = ("entity", "type", "owner", "tag", "used_by")

#: Most views one search returns; the sidebar asks the user to narrow the search past it.
MAX_VIEWS = 500


def redact_url(url: str) -> str:
    """The registry URL without a password, fit to show in the browser."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _bound(value: Any) -> Any:
    """A min or max to show: a number, or text cut to 80 characters."""
    if isinstance(value, str):
        return value[:80]
    return _number(value)


def clean_stats(value: Any) -> dict[str, dict[str, Any]] | None:
    """A version's recorded statistics in the shape the sidebar draws, whatever the spec holds.

    ``stats`` is free-form in a spec (any write token can set it): only numbers where
    numbers go and bins of three numbers are kept, so no record can break the sidebar.
    """
    if not isinstance(value, Mapping):
        return None
    out: dict[str, dict[str, Any]] = {}
    for feature, stats in list(value.items())[:2_000]:
        if not isinstance(stats, Mapping):
            continue
        entry: dict[str, Any] = {}
        for key in ("count", "nulls", "null_rate", "distinct", "mean"):
            number = _number(stats.get(key))
            if number is not None:
                entry[key] = number
        for key in ("min", "max"):
            bound = _bound(stats.get(key))
            if bound is not None:
                entry[key] = bound
        bins = stats.get("bins")
        if isinstance(bins, list):
            rows = [[_number(x) for x in b] for b in bins[:200] if isinstance(b, list) and len(b) == 3]
            entry["bins"] = [b for b in rows if None not in b]
        out[str(feature)] = entry
    return out


def _time(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _summary(record: Any) -> dict[str, Any]:
    spec: Mapping[str, Any] = record.spec
    return {
        "name": record.name,
        "version": record.version,
        "created_at": _time(record.created_at),
        "created_by": record.created_by,
        "description": str(spec.get("description") or ""),
        "owner": str(spec.get("owner") or ""),
        "tags": [str(t) for t in spec.get("tags") or []],
        "entity": [str(k) for k in spec.get("entity") or []],
        "features": [
            {
                "name": str(f.get("name")),
                "type": str(f.get("type")),
                "description": str(f.get("description") or ""),
            }
            for f in spec.get("features") or []
        ],
    }


def _facet_values(records: list[Any], models: list[str]) -> dict[str, list[dict[str, Any]]]:
    counts: dict[str, Counter[str]] = {name: Counter() for name in FACETS}
    for record in records:
        spec = record.spec
        counts["entity"].update({str(k) for k in spec.get("entity") or []})
        counts["type"].update({str(f.get("type")) for f in spec.get("features") or []})
        if spec.get("owner"):
            counts["owner"][str(spec["owner"])] += 1
        counts["tag"].update({str(t) for t in spec.get("tags") or []})
    counts["used_by"].update(models)
    return {
        name: [{"value": v, "count": n} for v, n in sorted(c.items(), key=lambda item: item[0].lower())]
        for name, c in counts.items()
    }


def _models(registry: Any) -> list[str]:
    """Model name → once per view it uses (for the used-by facet counts)."""
    usage = getattr(registry, "usage", None)
    if usage is None:
        return []
    pairs = {(str(row["model"]), str(row["view"])) for row in usage()}
    return [model for model, _ in sorted(pairs)]


def search_views(registry: Any, text: str | None = None, **filters: str | None) -> dict[str, Any]:
    """The latest version of every view matching ``text`` and the facet ``filters``, plus facet values."""
    unknown = sorted(set(filters) - set(FACETS))
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(f"unknown search filter(s) {', '.join(unknown)}; use {', '.join(FACETS)}")
    active = {k: v for k, v in filters.items() if v}
    text = (text or "").strip() or None
    every = list(registry.list())
    matches = registry.search(text, **active) if (text or active) else every
    views = [_summary(r) for r in matches]
    return {
        "url": redact_url(str(getattr(registry, "url", ""))),
        "total": len(every),
        "matched": len(views),
        "views": views[:MAX_VIEWS],
        "facets": _facet_values(every, _models(registry)),
    }


def view_detail(registry: Any, name: str, version: int | None = None) -> dict[str, Any]:
    """One version (default: latest) of ``name``: its spec, every version, lineage and statistics."""
    record = registry.get(name, version=version)
    versions = registry.versions(name)
    lineage = registry.lineage(name)
    spec: Mapping[str, Any] = record.spec
    used_by = lineage.get("used_by") or {}
    return {
        **_summary(record),
        "latest_version": max((v.version for v in versions), default=record.version),
        "hash": record.hash,
        "sql": str(spec.get("sql") or ""),
        "timestamp": spec.get("timestamp"),
        "created_timestamp": spec.get("created_timestamp"),
        "ttl": spec.get("ttl"),
        "features": [dict(f) for f in spec.get("features") or []],
        "sources": [str(s) for s in spec.get("sources") or []],
        "lineage": {str(f): [str(c) for c in cols] for f, cols in (spec.get("lineage") or {}).items()},
        "used_by": {str(m): [str(r) for r in refs] for m, refs in used_by.items()},
        "stats": clean_stats(spec.get("stats")),
        "versions": [
            {
                "version": v.version,
                "created_at": _time(v.created_at),
                "created_by": v.created_by,
                "hash": v.hash,
            }
            for v in sorted(versions, key=lambda v: v.version, reverse=True)
        ],
    }
