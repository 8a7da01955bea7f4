"""What the Features sidebar shows, as plain JSON-ready data read from a registry.

The Tornado handlers only translate HTTP to these functions and back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "FACETS", "MAX_VIEWS", "clean_stats", "health", "redact_url", "search_views", "view_detail",
]  # fmt: skip

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
        "windows": [str(w) for w in windows] if isinstance(windows := spec.get("windows"), list) else [],
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


def _usage(registry: Any) -> list[dict[str, Any]]:
    usage = getattr(registry, "usage", None)
    return list(usage()) if usage is not None else []


def _models(usage: list[dict[str, Any]]) -> list[str]:
    """Model name → once per view it uses (for the used-by facet counts)."""
    pairs = {(str(row["model"]), str(row["view"])) for row in usage}
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
    usage = _usage(registry)
    state = health(registry, every, usage)
    views = [{**_summary(r), "warnings": state.get(r.name, {}).get("warnings", [])} for r in matches]
    return {
        "url": redact_url(str(getattr(registry, "url", ""))),
        "total": len(every),
        "matched": len(views),
        "views": views[:MAX_VIEWS],
        "facets": _facet_values(every, _models(usage)),
    }


def view_detail(registry: Any, name: str, version: int | None = None) -> dict[str, Any]:
    """One version (default: latest) of ``name``: its spec, every version, lineage and statistics."""
    record = registry.get(name, version=version)
    versions = registry.versions(name)
    lineage = registry.lineage(name)
    spec: Mapping[str, Any] = record.spec
    used_by = lineage.get("used_by") or {}
    latest = record if version is None else registry.get(name)
    state = health(registry, [latest], _usage(registry)).get(name, {})
    return {
        **_summary(record),
        "online": state.get("online", []),
        "last_check": state.get("last_check"),
        "warnings": state.get("warnings", []),
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


# -- health: where views are materialized, their last check, models' features not online --------
#: Most recent activity entries read for the health of views.
ACTIVITY_ENTRIES = 1000


def _text(value: Any, limit: int = 200) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _activity(registry: Any, kind: str) -> list[dict[str, Any]]:
    """The newest ``kind`` entries of the activity log (none when the registry cannot say)."""
    from ..errors import FeaturesError

    try:
        entries = registry.activity(kind, ACTIVITY_ENTRIES)
    except (FeaturesError, AttributeError):
        return []
    return [dict(e) for e in entries if isinstance(e, Mapping) and isinstance(e.get("detail"), Mapping)]


def _runs(entries: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """View → store → its latest materialization there, from ``materialize`` entries (newest first).

    The log is free-form JSON any write token can add to: only values of the expected types are kept.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in entries:
        detail = entry["detail"]
        runs = detail.get("runs")
        for run in runs if isinstance(runs, list) else []:
            if not isinstance(run, Mapping) or not isinstance(run.get("view"), str):
                continue
            store = _text(run.get("store")) or _text(detail.get("store")) or "unknown store"
            features = run.get("features")
            out.setdefault(run["view"], {}).setdefault(
                store,
                {
                    "store": redact_url(store), "version": _count(run.get("version")),
                    "view_version": _count(run.get("view_version")), "end": _text(run.get("end"), 40),
                    "mode": _text(run.get("mode"), 20), "rows": _count(run.get("rows")),
                    "at": _text(entry.get("at"), 40), "actor": _text(entry.get("actor")),
                    "features": [str(f)[:200] for f in features[:2000]] if isinstance(features, list) else None,
                },
            )  # fmt: skip
    return out


def _checks(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """View → its latest ``check_online`` result, from ``check`` entries (newest first)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        detail = entry["detail"]
        results = detail.get("results")
        for result in results if isinstance(results, list) else []:
            if not isinstance(result, Mapping) or not isinstance(result.get("view"), str):
                continue
            out.setdefault(
                result["view"],
                {
                    "store": redact_url(_text(detail.get("store")) or "unknown store"),
                    "ok": result.get("ok") is True, "at": _text(entry.get("at"), 40),
                    "actor": _text(entry.get("actor")), "version": _count(result.get("version")),
                    "view_version": _count(result.get("view_version")), "end": _text(result.get("end"), 40),
                    "entities": _count(result.get("entities")), "mismatched": _count(result.get("mismatched")),
                    "values": _count(result.get("values")), "missing": _count(result.get("missing")),
                    "extra": _count(result.get("extra")), "sample": _count(result.get("sample")),
                    "problem": _text(result.get("problem"), 500) or "",
                },
            )  # fmt: skip
    return out


def health(registry: Any, records: list[Any], usage: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each view of ``records`` (latest versions): ``online`` (its latest materialization in each
    store, newest first), ``last_check`` (its latest ``check_online``) and ``warnings`` (models using
    features of it that no store serves), read from the registry's activity log."""
    names = {r.name for r in records}
    used = [row for row in usage if str(row.get("view")) in names]
    runs = _runs(_activity(registry, "materialize"))
    checks = _checks(_activity(registry, "check")) if names else {}
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        online = sorted(runs.get(record.name, {}).values(), key=lambda r: r["at"] or "", reverse=True)
        out[record.name] = {
            "online": online,
            "last_check": checks.get(record.name),
            "warnings": _warnings(record, online, [row for row in used if row.get("view") == record.name]),
        }
    return out


def _warnings(record: Any, online: list[dict[str, Any]], used: list[dict[str, Any]]) -> list[str]:
    """One line per model using features of ``record``'s view that no store's latest run serves."""
    all_features = [str(f.get("name")) for f in record.spec.get("features") or []]
    by_model: dict[str, set[str]] = {}
    for row in used:
        feature = str(row.get("feature"))
        by_model.setdefault(str(row.get("model")), set()).update(
            all_features if feature == "*" else [feature]
        )
    out = []
    for model, features in sorted(by_model.items()):
        if not online:
            out.append(f"{model} uses it, but it is not materialized in any online store")
            continue
        served = [set(run["features"]) for run in online if run["features"] is not None]
        if served and not any(features <= s for s in served):
            best = max(served, key=lambda s: len(features & s))
            out.append(f"{model} uses {', '.join(sorted(features - best))}, which no online store serves")
    return out
