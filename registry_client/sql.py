"""The registry in a SQL database (a SQLite file or PostgreSQL), through SQLAlchemy Core.

This is the store itself: the HTTP server is a thin layer over it. Writes run in one
transaction each; a second writer racing for the same version number hits the
(name, version) primary key and retries against the new latest version.
"""

from __future__ import annotations

import builtins
import json
import os
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from jupyter_features.errors import (
    InvalidSpecError,
    NotFoundError,
    RegistryConflictError,
    RegistryUnavailableError,
    UnknownFeatureError,
    did_you_mean,
)
from jupyter_features.refs import parse_ref

from . import tables as t
from .change_counter import ChangeCounter, count_change
from .connections import make_engine, redact, write_options
from .origin import actor, origin
from .record import VersionRecord, format_time, parse_time, utc_now
from .spec import LIMITS, canonical_spec, check_text, check_version, check_view_name, definition_hash

__all__ = ["SQLRegistry"]

_RETRIES = 30
_ACTIVITY_BYTES = 64_000


class SQLRegistry:
    """Registry backend for ``sqlite:///path.db`` and ``postgresql://…`` URLs."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = redact(url)
        self._engine, self.dialect = make_engine(url)
        self.schema_version = self._write(self._migrate)
        self._changes = ChangeCounter(self._engine, self.url)

    def _migrate(self, conn: Connection) -> int:
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7243001)"))
        return t.migrate(conn)

    def __repr__(self) -> str:
        return f"SQLRegistry({self.url!r})"

    def close(self) -> None:
        self._changes.close()
        self._engine.dispose()

    def changes(self) -> int:
        """A number that every committed write to views, versions or usage changes.

        Read it before reading data: the data is then at least as new as the number says,
        so what was read under one number may be answered again while it stays the same.
        """
        return self._changes.read()

    async def changes_async(self) -> int:
        """:meth:`changes` for an event loop: it waits for PostgreSQL without blocking the loop.

        Call it from one task at a time, and :meth:`aclose` on the same loop when done.
        """
        return await self._changes.read_async()

    async def aclose(self) -> None:
        """Close what :meth:`changes_async` opened on the running loop (then :meth:`close`)."""
        await self._changes.aclose()

    def __enter__(self) -> SQLRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise RegistryUnavailableError(f"registry {self.url}: the database failed: {exc.orig}") from exc

    def _write(self, work: Any) -> Any:
        """Run ``work(conn)`` in a write transaction, retrying lost races and busy databases."""
        for attempt in range(_RETRIES):
            try:
                with self._engine.connect() as conn:
                    conn.execution_options(**write_options())
                    with conn.begin():
                        return work(conn)
            except (IntegrityError, OperationalError) as exc:
                if attempt == _RETRIES - 1:
                    if isinstance(exc, IntegrityError):
                        raise RegistryConflictError(
                            f"registry {self.url}: gave up after {_RETRIES} concurrent write conflicts; retry"
                        ) from exc
                    raise RegistryUnavailableError(
                        f"registry {self.url}: the database failed: {exc.orig}"
                    ) from exc
                time.sleep(random.uniform(0.001, 0.005) * (attempt + 1))
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) in ("40001", "40P01") and attempt < _RETRIES - 1:
                    time.sleep(random.uniform(0.001, 0.005) * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")

    # -- views and versions ------------------------------------------------------------------
    def apply(self, spec: dict[str, Any], *, created_by: str | None = None) -> VersionRecord:
        canonical = canonical_spec(spec)
        digest = definition_hash(canonical)
        who = _short(created_by or actor(), "created_by")
        return self._write(lambda conn: self._apply(conn, canonical, digest, who))  # type: ignore[no-any-return]

    def _apply(self, conn: Connection, spec: dict[str, Any], digest: str, who: str) -> VersionRecord:
        name = spec["name"]
        latest = conn.execute(
            select(t.views.c.latest_version).where(t.views.c.name == name).with_for_update()
        ).scalar()
        now = format_time(utc_now())
        if latest is not None:
            row = conn.execute(
                _version_query().where(t.versions.c.name == name, t.versions.c.version == latest)
            ).one()
            if row.hash == digest:
                stored = json.loads(row.spec)
                if "stats" not in spec and "stats" in stored:  # statistics stay until new ones come
                    spec = {**spec, "stats": stored["stats"]}
                if stored != spec:  # metadata-only change: refresh the latest version in place
                    conn.execute(
                        update(t.versions)
                        .where(t.versions.c.name == name, t.versions.c.version == latest)
                        .values(spec=_dumps(spec))
                    )
                    conn.execute(update(t.views).where(t.views.c.name == name).values(**_index(spec, now)))
                    count_change(conn)
                return _record(row, spec)
            version = latest + 1
        else:
            version = 1
        conn.execute(
            t.versions.insert().values(
                name=name, version=version, created_at=now, created_by=who, hash=digest, spec=_dumps(spec)
            )
        )
        self._point_latest(conn, name, version, spec, now, exists=latest is not None)
        count_change(conn)
        return VersionRecord(name, version, _time(now), who, digest, spec)

    def _point_latest(
        self, conn: Connection, name: str, version: int, spec: dict[str, Any], now: str, *, exists: bool
    ) -> None:
        values = {"latest_version": version, **_index(spec, now)}
        if exists:
            conn.execute(update(t.views).where(t.views.c.name == name).values(**values))
        else:
            conn.execute(t.views.insert().values(name=name, **values))

    def get(self, name: str, version: int | None = None) -> VersionRecord:
        check_view_name(name)
        if version is not None:
            check_version(name, version)
        with self._read() as conn:
            if version is None:
                query = _latest_query().where(t.views.c.name == name)
            else:
                query = _version_query().where(t.versions.c.name == name, t.versions.c.version == version)
            row = conn.execute(query).first()
            if row is None:
                self._not_found(conn, name, version)
            return _record(row)

    def _not_found(self, conn: Connection, name: str, version: int | None) -> Any:
        latest = conn.execute(select(t.views.c.latest_version).where(t.views.c.name == name)).scalar()
        if latest is not None:
            raise NotFoundError(
                f"feature view '{name}' has no version {version}; it has versions 1 to {latest} "
                f"(use '{name}@{latest}' or leave the version out for the latest)"
            )
        names = conn.execute(select(t.views.c.name)).scalars().all()
        raise NotFoundError(
            f"feature view '{name}' is not in the registry {self.url}{did_you_mean(name, names)}; "
            "export it first with ws.export(['" + name + "']) or %features export " + name
        )

    def versions(self, name: str) -> builtins.list[VersionRecord]:
        check_view_name(name)
        with self._read() as conn:
            rows = conn.execute(
                _version_query().where(t.versions.c.name == name).order_by(t.versions.c.version)
            ).all()
            if not rows:
                self._not_found(conn, name, None)
        return [_record(r) for r in rows]

    def list(self) -> builtins.list[VersionRecord]:
        with self._read() as conn:
            return [_record(r) for r in conn.execute(_latest_query().order_by(t.views.c.name))]

    def search(
        self,
        text: str | None = None,
        *,
        entity: str | None = None,
        type: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
        used_by: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[VersionRecord]:
        query = self._search(_latest_query(), text, entity, type, owner, tag, used_by, limit)
        with self._read() as conn:
            return [_record(r) for r in conn.execute(query)]

    def search_marks(
        self,
        text: str | None = None,
        *,
        entity: str | None = None,
        type: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
        used_by: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[tuple[str, int, str]]:
        """(name, latest version, updated_at) of what :meth:`search` returns, without reading specs.

        A view's ``updated_at`` changes in the same transaction as anything in its latest
        record, so a server can keep serialized records keyed by these marks.
        """
        columns = select(t.views.c.name, t.views.c.latest_version, t.views.c.updated_at)
        query = self._search(columns, text, entity, type, owner, tag, used_by, limit)
        with self._read() as conn:
            return [(r[0], int(r[1]), r[2]) for r in conn.execute(query)]

    def mark(self, name: str) -> tuple[int, str] | None:
        """(latest version, updated_at) of ``name``, or None when it is not in the registry."""
        check_view_name(name)
        query = select(t.views.c.latest_version, t.views.c.updated_at).where(t.views.c.name == name)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else (int(row[0]), row[1])

    def _search(self, query: Any, text: str | None, entity: str | None, type: str | None, owner: str | None,
                tag: str | None, used_by: str | None, limit: int | None) -> Any:  # fmt: skip
        filters = {
            "text": text,
            "entity": entity,
            "type": type,
            "owner": owner,
            "tag": tag,
            "used_by": used_by,
        }
        for what, value in filters.items():
            if value is not None:
                _short(value, f"search {what}", limit=1000)
        for word in (text or "").lower().split()[:32]:
            query = query.where(t.views.c.search_text.contains(word, autoescape=True))
        for prefix, value in (("e", entity), ("t", type), ("g", tag), ("o", owner)):
            if value:
                query = query.where(t.views.c.facets.contains(_facet(prefix, value), autoescape=True))
        if used_by:
            users = select(t.usage.c.view).where(t.usage.c.model == used_by)
            query = query.where(t.views.c.name.in_(users))
        query = query.order_by(t.views.c.name)
        if limit is not None:
            query = query.limit(max(0, int(limit)))
        return query

    def lineage(self, name: str) -> dict[str, Any]:
        record = self.get(name)
        used_by: dict[str, list[str]] = {}
        for row in self.usage(view=name):
            ref = f"{row['view']}{'@' + str(row['version']) if row['version'] else ''}:{row['feature']}"
            used_by.setdefault(row["model"], []).append(ref)
        return {
            "name": record.name,
            "version": record.version,
            "sources": list(record.spec.get("sources") or []),
            "features": {f: list(cols) for f, cols in (record.spec.get("lineage") or {}).items()},
            "used_by": used_by,
        }

    # -- usage and activity ----------------------------------------------------------------
    def record_usage(self, model_name: str, feature_refs: Sequence[str]) -> None:
        model = _short(model_name, "model name", required=True)
        if isinstance(feature_refs, str) or not isinstance(feature_refs, Sequence):
            raise InvalidSpecError(f"model '{model}': feature_refs must be a list like ['user_spend:*']")
        if len(feature_refs) > LIMITS["features"] * 10:
            raise InvalidSpecError(f"model '{model}': too many feature references ({len(feature_refs):,})")
        refs = [parse_ref(r) for r in feature_refs]
        now = format_time(utc_now())

        def work(conn: Connection) -> None:
            rows: dict[tuple[str, str], int | None] = {}
            for ref in refs:
                record = self._get_in(conn, ref.view, ref.version)
                if ref.feature != "*" and ref.feature not in record.feature_names:
                    raise UnknownFeatureError(
                        f"model '{model}': feature view '{record.ref}' has no feature '{ref.feature}'"
                        f"{did_you_mean(ref.feature, record.feature_names)}"
                    )
                rows[(ref.view, ref.feature)] = ref.version
            conn.execute(delete(t.usage).where(t.usage.c.model == model))
            if rows:
                conn.execute(
                    t.usage.insert(),
                    [
                        {"model": model, "view": v, "feature": f, "version": ver, "recorded_at": now}
                        for (v, f), ver in rows.items()
                    ],
                )
            count_change(conn)

        self._write(work)

    def _get_in(self, conn: Connection, name: str, version: int | None) -> VersionRecord:
        check_view_name(name)
        if version is not None:
            check_version(name, version)
        if version is None:
            row = conn.execute(_latest_query().where(t.views.c.name == name)).first()
        else:
            row = conn.execute(
                _version_query().where(t.versions.c.name == name, t.versions.c.version == version)
            ).first()
        if row is None:
            self._not_found(conn, name, version)
        return _record(row)

    def usage(
        self, model_name: str | None = None, *, view: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        query = select(t.usage).order_by(t.usage.c.model, t.usage.c.view, t.usage.c.feature)
        if model_name is not None:
            _short(model_name, "model name")
            query = query.where(t.usage.c.model == model_name)
        if view is not None:
            query = query.where(t.usage.c.view == view)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]  # noqa: SLF001 - SQLAlchemy's public Row API

    def record_activity(
        self, kind: str, detail: dict[str, Any] | None = None, *, actor: str | None = None
    ) -> None:
        """Audit ``kind`` with ``detail``. Without ``actor`` (a process recording its own action)
        this process's user, host, notebook and pid are added and the actor is user@host; a
        server gives the authenticated ``actor`` and the detail it vouches for."""
        kind = _short(kind, "activity kind", required=True, limit=64)
        data = {**origin(), **(detail or {})} if actor is None else dict(detail or {})
        try:
            payload = json.dumps(data, default=str, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidSpecError(f"activity '{kind}': detail is not plain JSON data ({exc})") from exc
        if len(payload) > _ACTIVITY_BYTES:
            raise InvalidSpecError(
                f"activity '{kind}': detail is {len(payload):,} bytes; the limit is {_ACTIVITY_BYTES:,}"
            )
        declared = f"{data.get('user') or 'unknown'}@{data.get('host') or 'unknown'}"
        who = _short(actor if actor is not None else declared, "actor")
        row = {"kind": kind, "at": format_time(utc_now()), "actor": who, "detail": payload}
        self._write(lambda conn: conn.execute(t.activity.insert().values(**row)))

    def activity(self, kind: str | None = None, limit: int = 100) -> builtins.list[dict[str, Any]]:
        query = select(t.activity).order_by(t.activity.c.id.desc()).limit(max(0, min(int(limit), 10_000)))
        if kind:
            query = query.where(t.activity.c.kind == _short(kind, "activity kind", limit=64))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [{**r._mapping, "detail": json.loads(r.detail)} for r in rows]  # noqa: SLF001 - SQLAlchemy's public Row API

    # -- import / export -------------------------------------------------------------------
    def import_versions(self, records: Sequence[VersionRecord]) -> builtins.list[VersionRecord]:
        checked = [_checked(r) for r in records]

        def work(conn: Connection) -> builtins.list[VersionRecord]:
            touched: dict[str, None] = {}
            for rec in checked:
                self._import_one(conn, rec)
                touched[rec.name] = None
            if touched:
                count_change(conn)
            return [self._get_in(conn, name, None) for name in touched]

        return self._write(work)  # type: ignore[no-any-return]

    def _import_one(self, conn: Connection, rec: VersionRecord) -> None:
        where = and_(t.versions.c.name == rec.name, t.versions.c.version == rec.version)
        row = conn.execute(_version_query().where(where)).first()
        if row is not None:
            if row.hash != rec.hash:
                raise RegistryConflictError(
                    f"feature view '{rec.ref}' already exists here with another definition "
                    f"(hash {row.hash[:12]}, importing {rec.hash[:12]}); versions are immutable — "
                    "import into an empty registry or apply the spec as a new version"
                )
            if json.loads(row.spec) != rec.spec:
                conn.execute(update(t.versions).where(where).values(spec=_dumps(rec.spec)))
        else:
            conn.execute(
                t.versions.insert().values(
                    name=rec.name,
                    version=rec.version,
                    created_at=format_time(rec.created_at),
                    created_by=rec.created_by,
                    hash=rec.hash,
                    spec=_dumps(rec.spec),
                )  # fmt: skip
            )
        latest = int(
            conn.execute(
                select(func.max(t.versions.c.version)).where(t.versions.c.name == rec.name)
            ).scalar_one()
        )
        spec_row = conn.execute(
            _version_query().where(t.versions.c.name == rec.name, t.versions.c.version == latest)
        ).one()
        exists = conn.execute(select(t.views.c.name).where(t.views.c.name == rec.name)).first() is not None
        self._point_latest(
            conn, rec.name, latest, json.loads(spec_row.spec), format_time(utc_now()), exists=exists
        )

    def export_yaml(self, folder: str | os.PathLike[str]) -> builtins.list[str]:
        from .yaml_folder import export_yaml

        return export_yaml(self, folder)

    def import_yaml(self, folder: str | os.PathLike[str]) -> builtins.list[VersionRecord]:
        from .yaml_folder import import_yaml

        return import_yaml(self, folder)


# -- rows ↔ records ------------------------------------------------------------------------
_COLUMNS = (t.versions.c.name, t.versions.c.version, t.versions.c.created_at, t.versions.c.created_by,
            t.versions.c.hash, t.versions.c.spec)  # fmt: skip


def _version_query() -> Any:
    return select(*_COLUMNS)


def _latest_query() -> Any:
    return select(*_COLUMNS).join(
        t.views, and_(t.views.c.name == t.versions.c.name, t.views.c.latest_version == t.versions.c.version)
    )


def _record(row: Any, spec: dict[str, Any] | None = None) -> VersionRecord:
    return VersionRecord(
        name=row.name,
        version=row.version,
        created_at=_time(row.created_at),
        created_by=row.created_by,
        hash=row.hash,
        spec=spec if spec is not None else json.loads(row.spec),
    )


def _time(value: str) -> Any:
    from .record import parse_time

    return parse_time(value)


def _dumps(spec: dict[str, Any]) -> str:
    return json.dumps(spec, separators=(",", ":"), ensure_ascii=False)


def _facet(prefix: str, value: str) -> str:
    return f"|{prefix}:{value.lower().replace('|', '/')}|"


def _index(spec: dict[str, Any], now: str) -> dict[str, str]:
    """The search columns of a views row, from its latest spec."""
    features = spec.get("features") or []
    words = [spec["name"], spec.get("description") or "", spec.get("owner") or "", *spec.get("tags", []),
             *spec.get("entity", []), *(f["name"] for f in features), *(f.get("description") or "" for f in features)]  # fmt: skip
    facets = {_facet("e", k) for k in spec.get("entity", [])} | {_facet("t", f["type"]) for f in features}
    facets |= {_facet("g", tag) for tag in spec.get("tags", [])}
    if spec.get("owner"):
        facets.add(_facet("o", spec["owner"]))
    return {"updated_at": now, "search_text": " ".join(words).lower(), "facets": "".join(sorted(facets))}


def _short(value: Any, what: str, *, required: bool = False, limit: int = 256) -> str:
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise InvalidSpecError(
            f"{what} must be a {'non-empty ' if required else ''}string of at most {limit} characters"
        )
    return check_text(value, what)


def _checked(record: VersionRecord) -> VersionRecord:
    """A record to import: canonical spec, matching name, a hash that matches its definition."""
    if not isinstance(record.version, int) or record.version < 1:
        raise InvalidSpecError(f"feature view '{record.name}': version must be a positive integer")
    try:
        created_at = parse_time(record.created_at)
    except (OverflowError, ValueError, TypeError) as exc:
        raise InvalidSpecError(
            f"feature view '{record.ref}': created_at {str(record.created_at)[:40]!r} is not a time in UTC's range"
        ) from exc
    spec = canonical_spec(record.spec)
    if spec["name"] != record.name:
        raise InvalidSpecError(
            f"feature view '{record.name}@{record.version}': its spec is named '{spec['name']}'"
        )
    digest = definition_hash(spec)
    if record.hash and record.hash != digest:
        raise InvalidSpecError(
            f"feature view '{record.ref}': the recorded hash does not match its definition "
            "(was the SQL or schema edited?); a changed definition needs a new version: apply the spec instead"
        )
    who = _short(record.created_by or "unknown", "created_by")
    return VersionRecord(record.name, record.version, created_at, who, digest, spec)
