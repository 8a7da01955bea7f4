"""Can a model go live on an online store? For each view it uses (its usage recorded in the
registry): the version it used, the latest version, what the store serves and from which
definition, the end of the last run against the TTL, and the features it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import FeaturesError, NotFoundError
from .featureview import format_ttl, parse_ttl
from .times import naive_utc, now_utc

if TYPE_CHECKING:
    import pandas as pd

    from .online import OnlineStore

__all__ = ["ModelViewCheck", "ModelCheck", "check_model"]


@dataclass(frozen=True)
class ModelViewCheck:
    """What the store serves for one view a model uses."""

    view: str
    features: tuple[str, ...]  # the features the model uses ('*': all)
    version_used: int | None = None
    latest_version: int | None = None
    online: bool = False  # materialized in the store
    online_version: int | None = None  # the registry version the served one was materialized from
    same_definition: bool = False  # the served version has the definition of the version used
    end: datetime | None = None  # end of the last run
    ttl: str | None = None
    fresh: bool | None = None  # end within the TTL of now (True without a TTL)
    missing_features: tuple[str, ...] = ()
    problem: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.problem and self.online and self.same_definition and bool(self.fresh)
            and not self.missing_features
        )  # fmt: skip

    def note(self) -> str:
        """Why the view is not ok, in words ("" when it is)."""
        if self.problem:
            return self.problem
        if not self.online:
            return "not materialized in this store"
        notes = []
        if not self.same_definition:
            notes.append(
                f"serves version {self.online_version if self.online_version is not None else '?'}, "
                f"the model used version {self.version_used}: materialize '{self.view}@{self.version_used}' "
                "or retrain on the served version"
            )
        if not self.fresh:
            notes.append(
                f"its last run ended {self.end:%Y-%m-%d %H:%M} UTC, more than its TTL {self.ttl} ago"
            )
        if self.missing_features:
            notes.append("features not served: " + ", ".join(self.missing_features))
        return "; ".join(notes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "features": list(self.features),
            "version_used": self.version_used,
            "latest_version": self.latest_version,
            "online": self.online,
            "online_version": self.online_version,
            "end": self.end.isoformat() if self.end else None,
            "ttl": self.ttl,
            "fresh": self.fresh,
            "missing_features": list(self.missing_features),
            "ok": self.ok,
            "note": self.note(),
        }


@dataclass(frozen=True, eq=False)
class ModelCheck:
    """The result of ``check_model``: per view the model uses, what the store serves."""

    model: str
    store: str
    views: list[ModelViewCheck]
    checked_at: datetime  # naive UTC, like every time here

    @property
    def ok(self) -> bool:
        """True when every view is online at the version used (or the same definition), fresh,
        with every feature the model uses."""
        return all(v.ok for v in self.views)

    @property
    def table(self) -> pd.DataFrame:
        """One row per view: version used, latest version, online, online version, end of the
        last run, TTL, fresh, missing features, ok, note."""
        import pandas as pd

        rows = [
            {
                "view": v.view, "version used": v.version_used, "latest version": v.latest_version,
                "online": v.online, "online version": v.online_version, "end": v.end,
                "ttl": v.ttl or "no TTL", "fresh": v.fresh, "missing features": ", ".join(v.missing_features),
                "ok": v.ok, "note": v.note(),
            }
            for v in self.views
        ]  # fmt: skip
        return pd.DataFrame(rows)

    def lines(self) -> list[str]:
        out = []
        for v in self.views:
            state = "ok    " if v.ok else "NOT OK"
            facts = (
                f"version used {v.version_used}, latest {v.latest_version}, "
                + (f"online {v.online_version}" if v.online else "not online")
                + (f", last run ended {v.end:%Y-%m-%d %H:%M:%S} UTC" if v.end else "")
                + (f", ttl {v.ttl}" if v.ttl else ", no TTL")
            )
            note = v.note()
            out.append(f"{state}  {self.model} uses {v.view} ({facts}){': ' + note if note else ''}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "store": self.store,
            "ok": self.ok,
            "checked_at": self.checked_at.isoformat(),
            "views": [v.to_dict() for v in self.views],
        }

    def __repr__(self) -> str:
        bad = [v.view for v in self.views if not v.ok]
        return f"ModelCheck({self.model}: {'ok' if self.ok else 'NOT OK: ' + ', '.join(bad)}, {self.store})"


def check_model(registry: Any, store: OnlineStore, model: str, *, now: datetime | None = None) -> ModelCheck:
    """For each view ``model`` uses (its usage recorded in ``registry``): the version used, the
    latest version, what ``store`` serves (and from which definition), the end of its last
    run, freshness against the TTL, and the used features it does not serve.

    The version used is the one pinned in the model's references, else the latest version
    when the usage was recorded.
    """
    rows = registry.usage(model)
    if not rows:
        raise NotFoundError(
            f"model '{model}' has no recorded features in the registry {registry.url}; record them with "
            f"registry.record_usage('{model}', ['view:feature', ...]) when the model is trained"
        )
    checked_at = naive_utc(now) if now is not None else now_utc()
    by_view: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_view.setdefault(str(row["view"]), []).append(row)
    views = [_model_view(registry, store, name, used, checked_at) for name, used in by_view.items()]
    return ModelCheck(model=model, store=store.url, views=views, checked_at=checked_at)


def _model_view(
    registry: Any, store: OnlineStore, name: str, used: list[dict[str, Any]], now: datetime
) -> ModelViewCheck:
    features = tuple(sorted({str(r["feature"]) for r in used}))
    try:
        versions = registry.versions(name)
    except FeaturesError as exc:
        return ModelViewCheck(name, features, problem=f"not in the registry: {exc}")
    pinned = [int(r["version"]) for r in used if r.get("version") is not None]
    version_used: int | None
    if pinned:
        version_used = max(pinned)
    else:
        recorded = _time(max(str(r.get("recorded_at") or "") for r in used))
        before = [v for v in versions if recorded is None or naive_utc(v.created_at) <= recorded]
        version_used = max((v.version for v in before or versions), default=None)
    record = next((v for v in versions if v.version == version_used), None)
    latest = max((v.version for v in versions), default=None)
    if record is None:
        return ModelViewCheck(
            name, features, version_used, latest, problem=f"version {version_used} is not in the registry"
        )
    wanted = record.feature_names if "*" in features else [f for f in features if f != "*"]
    try:
        served = store.current(name)
    except FeaturesError as exc:
        return ModelViewCheck(name, features, version_used, latest, problem=f"{type(exc).__name__}: {exc}")
    ttl = parse_ttl(record.spec.get("ttl"), owner=f"feature view '{name}'")
    if served is None:
        return ModelViewCheck(name, features, version_used, latest, ttl=format_ttl(ttl),
                              missing_features=tuple(wanted))  # fmt: skip
    if served.ttl_us is not None:
        ttl = timedelta(microseconds=served.ttl_us)
    if served.definition_hash:
        same = served.definition_hash == record.hash
    else:
        same = served.view_version == version_used
    end = served.end
    fresh = True if ttl is None else now - end <= ttl
    return ModelViewCheck(
        name, features, version_used, latest, online=True, online_version=served.view_version, same_definition=same,
        end=end, ttl=format_ttl(ttl), fresh=fresh,
        missing_features=tuple(f for f in wanted if f not in served.feature_names),
    )  # fmt: skip


def _time(text: str) -> datetime | None:
    try:
        return naive_utc(text)
    except (TypeError, ValueError):
        return None
