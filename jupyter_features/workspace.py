"""The workspace: sources, feature views and training frames for one project folder."""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings
from .engines import OfflineEngine, open_engine
from .errors import (
    FeatureReferenceError,
    FeatureViewError,
    LabelFrameError,
    SourceError,
    UnknownColumnError,
    UnknownFeatureViewError,
    did_you_mean,
)
from .featureview import FeatureView, ViewJoin, format_ttl, parse_ttl, set_previewer
from .frames import RESULT_KINDS, parquet_location, write_parquet
from .refs import group_refs
from .schema import Feature, feature_type_of
from .sources import Source, check_identifier, check_name, classify_source
from .sqltext import EVENT_TS, RESERVED_PREFIX, quote, string_literal

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .drift_detection import DriftReport
    from .health import ModelReport, OnlineReport
    from .materialize import MaterializationResult, Progress
    from .online import OnlineResult, OnlineStore
    from .online.replica import OnlineReplica
    from .preview import FeatureViewPreview
    from .push_files import CompactionResult
    from .pushes import PushResult

__all__ = ["Workspace", "workspace", "set_workspace"]

#: Every open workspace, so that ``FeatureView.preview()`` finds the one holding a view.
_OPEN: weakref.WeakSet[Workspace] = weakref.WeakSet()


class Workspace:
    """Sources, feature views and point-in-time training frames over an offline engine.

    ``registry``, ``online_store``, ``token`` and ``engine`` override ``features.toml``
    and the environment; the embedded defaults live under ``path/.jupyter_features/``.
    ``registry`` may also be an open registry client; ``engine`` a SparkSession.
    ``memory_limit`` (e.g. "3GB"), ``threads`` and ``temp_directory`` (where DuckDB spills)
    override ``[engine]`` in ``features.toml``.

    Exploration SQL (``ws.sql``) runs on a full DuckDB connection; feature SQL — defined
    here or taken from the registry — only ever runs in the engine's sandbox.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ".",
        registry: Any = None,
        online_store: str | None = None,
        token: str | None = None,
        engine: Any = None,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        temp_directory: str | os.PathLike[str] | None = None,
    ) -> None:
        engine_name = engine if isinstance(engine, str) else None
        registry_url = registry if registry is None or isinstance(registry, str) else str(registry.url)
        self.settings: Settings = load_settings(
            path, registry=registry_url, online_store=online_store, token=token, engine=engine_name,
            memory_limit=memory_limit, threads=threads, temp_directory=temp_directory,
        )  # fmt: skip
        from .engines.duckdb import DuckDBEngine

        self.duckdb = DuckDBEngine(
            threads=self.settings.threads,
            memory_limit=self.settings.memory_limit,
            temp_directory=self.settings.temp_directory,
        )
        if engine is not None and not isinstance(engine, str):
            self.engine: OfflineEngine = open_engine(engine)
        elif self.settings.engine == "duckdb":
            self.engine = self.duckdb
        elif self.settings.engine == "spark":
            self.engine = open_engine(
                "spark", master=self.settings.spark_master, config=self.settings.spark_conf
            )
        else:
            self.engine = open_engine(self.settings.engine)
        self._sources: dict[str, Source] = {}
        self._views: dict[str, FeatureView] = {}
        self._history: dict[str, list[FeatureView]] = {}
        self._registry: Any = registry if registry is not None and not isinstance(registry, str) else None
        self._online_stores: dict[str, Any] = {}
        self._lock = threading.RLock()
        # views handed out from the registry, by id (a FeatureView is not hashable)
        self._loaded: weakref.WeakValueDictionary[int, FeatureView] = weakref.WeakValueDictionary()
        self._analysed: dict[Any, FeatureView] = {}  # registry versions checked against these sources
        self._columns: dict[str, tuple[tuple[str, str], ...]] = {}  # definition hash → output columns
        from .pushes import PushLog

        self.push_log = PushLog(
            self.root / ".jupyter_features" / "pushes",
            register=self._register_internal,
            columns=self.output_columns,
        )
        _OPEN.add(self)

    # -- basics --------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.settings.root

    @property
    def sources(self) -> dict[str, Source]:
        return dict(self._sources)

    @property
    def views(self) -> dict[str, FeatureView]:
        return dict(self._views)

    def __repr__(self) -> str:
        return (
            f"Workspace({str(self.root)!r}, engine={self.engine.name!r}, "
            f"sources={sorted(self._sources)}, views={sorted(self._views)})"
        )

    # -- sources -------------------------------------------------------------------------
    def register_source(
        self, name: str, data: Any, *, timestamp: str | None = None, format: str | None = None
    ) -> Source:
        """Register a parquet/CSV/JSON path or glob, a DataFrame, or a DuckDB table as ``name``."""
        with self._lock:
            if isinstance(data, str) and "://" in data and self.engine is not self.duckdb:
                return self._register_remote(name, data, timestamp=timestamp, format=format)
            source = classify_source(
                name, data, root=self.root, timestamp=timestamp, fmt=format, tables=self.duckdb.tables()
            )
            if name in self._views:
                raise SourceError(f"'{name}' is already a feature view; give the source another name")
            # Probe through a throwaway name first: nothing changes if the source is refused.
            columns = self.duckdb.probe_source(source)
            names = [c for c, _ in columns]
            if timestamp is not None and timestamp not in names:
                raise UnknownColumnError(
                    f"source '{name}': timestamp column '{timestamp}' is not in it"
                    f"{did_you_mean(timestamp, names)}; columns: {', '.join(names)}"
                )
            registered = self.duckdb.register_source(replace(source, columns=columns))
            if self.engine is not self.duckdb:
                self.engine.register_source(registered)
            self._sources[name] = registered
            return registered

    def _register_remote(self, name: str, url: str, *, timestamp: str | None, format: str | None) -> Source:
        """An object-store URL (s3a://, gs://, abfss://...) read by the offline engine only;
        DuckDB knows its schema, so views over it are analysed as usual but ws.sql cannot read it."""
        check_name(name)
        if name in self._views:
            raise SourceError(f"'{name}' is already a feature view; give the source another name")
        source = Source(name=name, kind="file", timestamp=timestamp, location=url, format=format)
        registered = self.engine.register_source(source)
        if timestamp is not None and timestamp not in registered.schema:
            raise UnknownColumnError(
                f"source '{name}': timestamp column '{timestamp}' is not in it"
                f"{did_you_mean(timestamp, registered.schema)}; columns: {', '.join(registered.schema)}"
            )
        self._sources[name] = registered
        return registered

    def _register_internal(self, source: Source) -> None:
        """A file source of jupyter-features' own (a push log): readable by feature SQL's sandbox,
        not listed among the workspace's sources."""
        with self._lock:
            registered = self.duckdb.register_source(source)
            if self.engine is not self.duckdb:
                self.engine.register_source(registered)

    def output_columns(self, view: FeatureView) -> tuple[tuple[str, str], ...]:
        """The columns ``view``'s SELECT gives (keys, timestamps, features) and their DuckDB types —
        what a push carries; for a windowed view its keys, timestamp and the columns its
        aggregates read (``windows.push_columns``)."""
        key = view.definition_hash
        columns = self._columns.get(key)
        if columns is None:
            from .engines.duckdb import sandbox_describe

            plan = view.window_plan()
            if plan is None:
                columns = tuple(sandbox_describe(view.sql, view.schemas))
            else:
                from .windows import push_columns_sql

                columns = tuple(sandbox_describe(push_columns_sql(plan), view.schemas))
            self._columns[key] = columns
        return columns

    def sql(self, query: str) -> pd.DataFrame:
        """Run DuckDB SQL over the registered sources; returns a pandas DataFrame."""
        return self.duckdb.sql(query)

    # -- feature views -------------------------------------------------------------------
    def feature_view(
        self,
        name: str,
        sql: str,
        *,
        entity: str | Sequence[str],
        timestamp: str,
        created_timestamp: str | None = None,
        ttl: str | timedelta | None = None,
        description: str = "",
        owner: str = "",
        tags: Iterable[str] = (),
        feature_descriptions: dict[str, str] | None = None,
        windows: Sequence[str] | str | None = None,
    ) -> FeatureView:
        """Define (or redefine) a feature view from one SELECT over registered sources.

        With ``windows`` (``["1h", "24h", "7d"]`` or ``"1h,24h,7d"``) it is a windowed view: one
        ``SELECT keys, aggregates FROM ... GROUP BY keys`` whose ``timestamp`` is the event time
        of the rows aggregated; each aggregate × window is a feature (``flights_24h``), for a
        label at t the aggregate over the rows in (t - window, t].
        """
        view = self.analyse_view(
            name, sql, entity=entity, timestamp=timestamp, created_timestamp=created_timestamp,
            ttl=ttl, description=description, owner=owner, tags=tags,
            feature_descriptions=feature_descriptions, windows=windows,
        )  # fmt: skip
        with self._lock:
            self._views[name] = view
            self._history.setdefault(name, []).append(view)
        return view

    def analyse_view(
        self,
        name: str,
        sql: str,
        *,
        entity: str | Sequence[str],
        timestamp: str,
        created_timestamp: str | None = None,
        ttl: str | timedelta | None = None,
        description: str = "",
        owner: str = "",
        tags: Iterable[str] = (),
        feature_descriptions: dict[str, str] | None = None,
        windows: Sequence[str] | str | None = None,
    ) -> FeatureView:
        """Validate and type a definition without registering it."""
        from .analysis import column_lineage, parse_feature_sql

        check_name(name, what="feature view")
        who = f"feature view '{name}'"
        if name in self._sources:
            raise FeatureViewError(f"{who}: '{name}' is already a source; give the view another name")
        keys = (entity,) if isinstance(entity, str) else tuple(entity)
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise FeatureViewError(
                f"{who}: entity must name one or more key columns, e.g. entity=['user_id']"
            )
        if not isinstance(timestamp, str) or not timestamp:
            raise FeatureViewError(f"{who}: timestamp must name the event-time column, e.g. timestamp='ts'")
        for role, column in (
            [("entity key", k) for k in keys]
            + [("timestamp", timestamp)]
            + ([("created_timestamp", created_timestamp)] if created_timestamp else [])
        ):
            _check_identifier(column, role, who)
        spans = _window_texts(windows, who)
        if spans:
            return self._analyse_windowed(
                name, sql, keys, timestamp, spans, created_timestamp=created_timestamp, ttl=ttl,
                description=description, owner=owner, tags=tags, feature_descriptions=feature_descriptions,
            )  # fmt: skip
        ttl_value = parse_ttl(ttl, owner=who)
        parsed = parse_feature_sql(sql, self._sources, owner=who)
        schemas = {s: self._sources[s].schema for s in parsed.sources}
        columns = _describe(sql, schemas, who)
        names = [c for c, _ in columns]
        dupes = sorted({c for c in names if names.count(c) > 1})
        if dupes:
            raise FeatureViewError(
                f"{who}: output column(s) {', '.join(dupes)} appear twice; alias them apart"
            )
        types = dict(columns)
        required = [("entity", k) for k in keys] + [("timestamp", timestamp)]
        if created_timestamp:
            required.append(("created_timestamp", created_timestamp))
        for role, col in required:
            if col not in types:
                raise UnknownColumnError(
                    f"{who}: {role} column '{col}' is not in the SELECT's output"
                    f"{did_you_mean(col, names)}; output columns: {', '.join(names)}"
                )
        for role, col in [("timestamp", timestamp)] + (
            [("created_timestamp", created_timestamp)] if created_timestamp else []
        ):
            if feature_type_of(types[col])[0] != "timestamp":
                raise FeatureViewError(
                    f"{who}: {role} column '{col}' is {types[col]}, not a timestamp or date; "
                    f"cast it, e.g. CAST({col} AS TIMESTAMP)"
                )
        special = set(keys) | {timestamp} | ({created_timestamp} if created_timestamp else set())
        descriptions = feature_descriptions or {}
        features = []
        for col, dtype in columns:
            if col in special:
                continue
            if col.startswith(RESERVED_PREFIX):
                raise FeatureViewError(f"{who}: column name '{col}' is reserved; rename it")
            _check_identifier(col, "feature", who)
            ftype, vocab = feature_type_of(dtype)
            features.append(Feature(col, ftype, dtype, descriptions.get(col, ""), vocab))
        if not features:
            raise FeatureViewError(
                f"{who}: the SELECT has no feature columns besides the keys and timestamps"
            )
        lineage = column_lineage(sql, [f.name for f in features], schemas)
        return FeatureView(
            name=name, sql=sql.strip().rstrip(";"), entity=keys, timestamp=timestamp, features=tuple(features),
            created_timestamp=created_timestamp or None, ttl=ttl_value, description=description or "",
            owner=owner or "", tags=tuple(tags or ()), lineage=lineage, sources=parsed.sources,
            normalized_sql=parsed.normalized, schemas=schemas,
        )  # fmt: skip

    def _analyse_windowed(
        self,
        name: str,
        sql: str,
        keys: tuple[str, ...],
        timestamp: str,
        windows: tuple[str, ...],
        *,
        created_timestamp: str | None,
        ttl: str | timedelta | None,
        description: str,
        owner: str,
        tags: Iterable[str],
        feature_descriptions: dict[str, str] | None,
    ) -> FeatureView:
        """A windowed view: its plan checked, its relation typed in the sandbox's binder, and a
        feature (alias_window) per aggregate and window, typed as the engines compute it."""
        from .analysis import column_lineage, parse_feature_sql
        from .windows import window_plan

        who = f"feature view '{name}'"
        plan = window_plan(
            sql, keys, timestamp, list(windows), owner=who, sources=self._sources, ttl=ttl,
            created_timestamp=created_timestamp,
        )  # fmt: skip
        parsed = parse_feature_sql(sql, self._sources, owner=who)
        schemas = {s: self._sources[s].schema for s in parsed.sources}
        relation = dict(_describe(plan.relation_sql, schemas, who))
        if feature_type_of(relation[EVENT_TS])[0] != "timestamp":
            raise FeatureViewError(
                f"{who}: timestamp column '{timestamp}' is {relation[EVENT_TS]}, not a timestamp or date; "
                f"cast it, e.g. in a CTE: CAST({timestamp} AS TIMESTAMP) AS {timestamp}"
            )
        types = plan.output_types(relation)  # refuses sums of text and the like, naming the cast
        _describe(sql, schemas, who)  # and the SQL as written binds
        descriptions = feature_descriptions or {}
        aliases = {a.alias for a in plan.aggregates}
        reads = column_lineage(sql, sorted(aliases), schemas)
        features, lineage = [], {}
        for (feature, agg, _), dtype in zip(plan.features, types.values(), strict=True):
            if feature.startswith(RESERVED_PREFIX):
                raise FeatureViewError(f"{who}: feature name '{feature}' is reserved; rename the aggregate")
            _check_identifier(feature, "feature", who)
            ftype, vocab = feature_type_of(dtype)
            text = descriptions.get(feature, descriptions.get(agg.alias, ""))
            features.append(Feature(feature, ftype, dtype, text, vocab))
            lineage[feature] = list(reads.get(agg.alias, []))
        return FeatureView(
            name=name, sql=sql.strip().rstrip(";"), entity=keys, timestamp=timestamp, features=tuple(features),
            description=description or "", owner=owner or "", tags=tuple(tags or ()), lineage=lineage,
            sources=parsed.sources, normalized_sql=parsed.normalized, schemas=schemas,
            windows=tuple(w.text for w in plan.windows),
        )  # fmt: skip

    def get_view(self, name: str, version: int | None = None) -> FeatureView:
        """A view of this session, or one from the registry (pinned with ``version``)."""
        view = self._views.get(name)
        if version is None and view is not None:
            return view
        if view is not None and view.version == version:
            return view
        registry = self.registry_or_none()
        if registry is not None:
            from .errors import NotFoundError

            try:
                record = registry.get(name, version=version)
            except NotFoundError:
                record = None
            if record is not None:
                return self._view_from_record(record)
        where = f" version {version}" if version is not None else ""
        raise UnknownFeatureViewError(
            f"unknown feature view '{name}'{where}{did_you_mean(name, self._views)}; "
            f"defined here: {', '.join(sorted(self._views)) or 'none'} "
            "(define it with ws.feature_view or %%feature, or export it to the registry)"
        )

    def _view_from_record(self, record: Any) -> FeatureView:
        """A registry version as a view of this workspace: its SQL is untrusted, so it is checked
        and typed again against this workspace's sources (as if defined here) before it runs."""
        spec = record.spec
        name = str(spec.get("name"))
        who = f"feature view '{name}' version {record.version} from the registry"
        missing = [s for s in spec.get("sources") or () if s not in self._sources]
        if missing:
            raise SourceError(
                f"{who} reads source(s) {', '.join(map(str, missing))} that this workspace "
                "has not registered; register them with ws.register_source first"
            )
        key = (
            record.version, getattr(record, "hash", None), repr(sorted(spec.items(), key=lambda kv: kv[0])),
            tuple((n, s.columns) for n, s in sorted(self._sources.items())),
        )  # fmt: skip
        with self._lock:
            view = self._analysed.get(key)
        if view is None:
            features = spec.get("features") or []
            view = self.analyse_view(
                name, str(spec.get("sql") or ""), entity=spec.get("entity") or (),
                timestamp=spec.get("timestamp"), created_timestamp=spec.get("created_timestamp"),
                ttl=spec.get("ttl"), description=str(spec.get("description") or ""),
                owner=str(spec.get("owner") or ""), tags=[str(t) for t in spec.get("tags") or ()],
                feature_descriptions={str(f.get("name")): str(f.get("description") or "") for f in features},
                windows=spec.get("windows") or None,
            ).with_version(record.version)  # fmt: skip
            recorded = [str(f.get("name")) for f in features]
            if recorded != view.feature_names:
                raise FeatureViewError(
                    f"{who} lists features {', '.join(recorded) or 'none'}, but its SQL gives "
                    f"{', '.join(view.feature_names)} over this workspace's sources; register sources with "
                    "the columns it was defined on, or export the view again"
                )
            with self._lock:
                if len(self._analysed) > 256:
                    self._analysed.clear()
                self._analysed[key] = view
        self._loaded[id(view)] = view
        return view

    def registry_or_none(self) -> Any:
        """The registry client, or None when the configured registry cannot be opened."""
        try:
            return self.registry
        except Exception:  # noqa: BLE001 - a missing registry just means "not found"
            return None

    @property
    def registry(self) -> Any:
        """The registry client for the configured registry URL (connected on first use)."""
        if self._registry is None:
            import registry_client

            self._registry = registry_client.connect(self.settings.registry_url, token=self.settings.token)
        return self._registry

    def export(self, names: Iterable[str] | str | None = None, *, stats: bool = True) -> dict[str, Any]:
        """Apply session views (all when ``names`` is None) to the registry; name → VersionRecord.

        A view whose definition is unchanged keeps its version; the session views are
        pinned to the versions the registry gave them, and the export is audited. With
        ``stats`` (the default), each version carries its features' latest statistics
        and histograms (from a sample of 100,000 rows), which the sidebar and the browser show.
        """
        from registry_client.origin import actor

        wanted = list(self._views) if names is None else [names] if isinstance(names, str) else list(names)
        for name in wanted:
            if name not in self._views:
                raise UnknownFeatureViewError(
                    f"cannot export unknown feature view '{name}'{did_you_mean(name, self._views)}; "
                    f"defined here: {', '.join(sorted(self._views)) or 'none'}"
                )
        records: dict[str, Any] = {}
        for name in wanted:
            view = self._views[name]
            spec = view.to_spec()
            if stats and (summary := self._feature_stats(view)) is not None:
                spec["stats"] = summary
            records[name] = record = self.registry.apply(spec, created_by=actor())
            with self._lock:
                if self._views.get(name) is view:
                    self._views[name] = view.with_version(record.version)
        if records:
            views = {name: record.version for name, record in records.items()}
            self.registry.record_activity("export", {"views": views, "workspace": str(self.root)})
        return records

    def _feature_stats(self, view: FeatureView, *, max_rows: int = 100_000) -> dict[str, Any] | None:
        """Per-feature statistics of ``view``'s rows, or None when DuckDB cannot compute them
        here (e.g. a source only the Spark engine can read); statistics never block an export."""
        from .engines.duckdb.windows import relation_types, windows_at_last_event_sql
        from .profile import profile_query

        feats = ", ".join(quote(f) for f in view.feature_names)
        try:
            with self.duckdb.feature_connection() as con:
                plan = view.window_plan()
                rows = (
                    view.sql if plan is None else windows_at_last_event_sql(plan, relation_types(con, plan))
                )
                prof = profile_query(
                    con,
                    f"SELECT {feats} FROM ({rows}\n) AS __jf_v "
                    f"USING SAMPLE reservoir({int(max_rows)} ROWS) REPEATABLE (7)",
                    bins=12,
                )
        except Exception as exc:  # noqa: BLE001 - documentation, never a gate
            import warnings

            warnings.warn(
                f"feature view '{view.name}': exported without statistics, DuckDB could not compute "
                f"them here: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                stacklevel=3,
            )
            return None
        return {c.name: c.summary() for c in prof.columns}

    def drift(self, model: str, current: pd.DataFrame, *, threshold: float = 0.2) -> DriftReport:
        """Has ``current`` drifted from what ``model``'s features looked like when exported?
        The reference is the statistics the registry recorded with each version the model
        uses (``registry.record_usage``); see ``jupyter_features.drift_detection.drift_for_model``."""
        from .drift_detection import drift_for_model

        return drift_for_model(self.registry, model, current, threshold=threshold)

    def history(self, name: str) -> list[FeatureView]:
        """Every definition of ``name`` in this session, oldest first."""
        return list(self._history.get(name, []))

    def drop_view(self, name: str) -> None:
        self.get_view(name)
        with self._lock:
            self._views.pop(name, None)

    # -- online store --------------------------------------------------------------------
    def online_store(self, url: str | None = None) -> OnlineStore:
        """The online store at ``url`` (default: the configured one), opened once per workspace."""
        url = url or self.settings.online_store_url
        store = self._online_stores.get(url)
        if store is None:
            from .online import open_store

            with self._lock:
                store = self._online_stores.get(url) or open_store(url)
                self._online_stores[url] = store
        return store

    def close(self) -> None:
        """Close the online stores this workspace opened."""
        with self._lock:
            stores, self._online_stores = list(self._online_stores.values()), {}
        for store in stores:
            store.close()

    def materialize(
        self,
        names: Sequence[str] | str,
        store: str | OnlineStore | None = None,
        end: Any = None,
        incremental: bool = False,
        progress: bool = True,
        on_progress: Progress | None = None,
    ) -> dict[str, MaterializationResult]:
        """Write the latest values of ``names`` as of ``end`` (default now) to the online store.

        Each view gets a new version that readers switch to only when it is complete.
        Names are session views or registry views (``NAME@VERSION`` pins one). Returns a
        MaterializationResult per view; ``on_progress(view, done, total)`` hears of the writes.
        The runs are recorded in the registry's activity log (where the sidebar finds them).
        """
        from .materialize import materialize_view
        from .times import now_utc

        views = self._named_views(names)  # every name resolves before the store is even opened
        target = self.online_store(store) if store is None or isinstance(store, str) else store
        end = end if end is not None else now_utc()
        results: dict[str, MaterializationResult] = {}
        try:
            for v in views:
                results[v.name] = materialize_view(
                    self.engine, v, target, end=end, incremental=incremental, progress=progress,
                    on_progress=on_progress, pushes=self.push_log,
                )  # fmt: skip
        finally:
            if results:
                runs = [
                    {**r.to_dict(), "view_version": v.version, "definition_hash": v.definition_hash,
                     "features": v.feature_names}
                    for v in views if (r := results.get(v.name)) is not None
                ]  # fmt: skip
                self._record_activity(
                    "materialize",
                    {
                        "store": target.url,
                        "views": {r["view"]: r["view_version"] for r in runs},
                        "runs": runs,
                    },
                )
        return results

    def _named_views(self, names: Sequence[str] | str) -> list[FeatureView]:
        """Session or registry views by name; ``NAME@VERSION`` pins a registry version."""
        if isinstance(names, str):
            names = [names]
        views = []
        for name in names:
            base, _, version = name.partition("@")
            if version and not re.fullmatch(r"[0-9]{1,9}", version):
                raise FeatureReferenceError(f"'{name}': a version is a number, e.g. '{base}@3'")
            views.append(self.get_view(base, int(version) if version else None))
        return views

    def _record_activity(self, kind: str, detail: dict[str, Any]) -> None:
        """Audit ``kind`` in the registry's activity log; a registry that cannot record it only warns:
        the work it records is done."""
        try:
            self.registry.record_activity(kind, detail)
        except Exception as exc:  # noqa: BLE001 - an audit entry never undoes the work
            import warnings

            warnings.warn(
                f"the registry did not record this {kind} in its activity log: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                stacklevel=3,
            )

    # -- health ------------------------------------------------------------------------------
    def check_online(
        self,
        names: Sequence[str] | str,
        store: str | OnlineStore | None = None,
        *,
        sample: int | None = None,
        at: Any = None,
        seed: int | None = None,
        limit: int | None = 10_000,
        progress: bool = True,
    ) -> OnlineReport:
        """Does the online store serve what an offline recompute says it should? For each view,
        the latest row per entity as of the served version's end (or ``at``) is computed the way
        materialization computes it and compared with every row the store serves: every feature
        of every entity (``sample=N``: N random entities). Differing values, missing and extra
        entities are reported; the summary goes to the registry's activity log.
        """
        from .errors import FeaturesError
        from .health import OnlineReport
        from .online_checks import check_online

        views = self._named_views(names)
        target = self.online_store(store) if store is None or isinstance(store, str) else store

        def resolve(name: str, version: int) -> FeatureView | None:
            try:
                return self.get_view(name, version)
            except FeaturesError:
                return None

        check = check_online(
            self.engine, target, views, resolve=resolve, sample=sample, at=at, seed=seed, limit=limit,
            progress=progress,
            join_of=lambda v: self.push_log.join(v, ViewJoin.of(v), typed=self.engine is self.duckdb),
        )  # fmt: skip
        self._record_activity("check", check.to_dict())
        return OnlineReport.of(check)

    def check_model(self, model: str, store: str | OnlineStore | None = None) -> ModelReport:
        """Are ``model``'s features (its usage recorded in the registry) online, at the version it
        used, fresh and complete? Per view: version used, latest version, online version, end of
        the last run, fresh, missing features."""
        from .health import ModelReport
        from .model_checks import check_model

        target = self.online_store(store) if store is None or isinstance(store, str) else store
        return ModelReport.of(check_model(self.registry, target, model))

    def push(
        self, view: str, rows: Any, *, to: str = "both", store: str | OnlineStore | None = None
    ) -> PushResult:
        """Nearline: add ``rows`` (a DataFrame or list of dicts with the view's keys, timestamp,
        created timestamp if any, and features) to ``view``.

        ``to="both"`` (default) or ``"online"``: into the version the online store serves, visible
        to the very next read, all at once; ``"both"`` or ``"offline"``: appended to the
        workspace's push log, which training frames and materialization read with the view's
        rows. Everything is validated first: a refused push writes nothing.
        """
        from .errors import PushError
        from .pushes import push_rows

        if to not in ("both", "online", "offline"):
            raise PushError(f"push to feature view '{view}': to={to!r} is not one of both, online, offline")
        base, _, version = view.partition("@")
        target = self.get_view(base, int(version) if version.isdigit() else None)
        online = None
        if to != "offline":
            online = self.online_store(store) if store is None or isinstance(store, str) else store
        project = None
        if target.windows:  # a windowed view: the pushed columns become its relation's rows
            from .windows import PUSHED_TABLE

            sql, renames = _pushed_relation(
                target.sql, target.entity, target.timestamp, target.windows, f"feature view '{target.name}'",
                target.ttl, target.created_timestamp,
            )  # fmt: skip

            def project(pushed: pa.Table) -> pa.Table:
                if renames is not None and all(c in pushed.column_names for c, _ in renames):
                    return pushed.select([c for c, _ in renames]).rename_columns([r for _, r in renames])
                return self.duckdb.project(sql, PUSHED_TABLE, pushed)

        return push_rows(
            target, rows, to=to, columns=self.output_columns(target), store=online, log=self.push_log,
            project=project,
        )  # fmt: skip

    def compact_pushes(self, view: str | None = None) -> list[CompactionResult]:
        """Merge the push-log files of ``view`` (default: every view with a push log) into one file
        per view. Training frames and runs read the same rows before and after; a run still knows
        which journal entries the log covers; a crash part way loses nothing."""
        if view is not None:
            if not view.isidentifier() or not self.push_log.view_folder(view).is_dir():
                self.get_view(view)  # an unknown view is an error, not an empty log
            views = [view]
        else:
            folder = self.push_log.folder
            views = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        return [self.push_log.compact(name) for name in views]

    def online_replica(
        self, views: Sequence[str] | str, *, store: str | None = None, poll: float = 0.002
    ) -> OnlineReplica:
        """An in-process, RAM-backed copy of the versions ``store`` serves for ``views``, following
        switches and pushes; ``replica.get(refs, entity_rows, at=None)`` reads it like
        ``online_features``. Close it (or use it as a context manager) when done."""
        from .online.replica import OnlineReplica

        names = [views] if isinstance(views, str) else list(views)
        return OnlineReplica(self.online_store(store).url, names, poll=poll)

    def online_features(
        self,
        refs: Sequence[str] | str,
        entity_rows: Sequence[dict[str, Any]],
        *,
        at: Any = None,
        store: str | None = None,
    ) -> OnlineResult:
        """Read features by entity key from the online store -> OnlineResult (.to_dict(), .to_pandas()).

        Values are as of ``at`` (default now): each entity's latest row at or before it, null
        when older than ``at`` - TTL — what ``training_frame`` gives for a label at ``at``.
        """
        from .online import read_features

        return read_features(self.online_store(store), refs, entity_rows, at)

    # -- previews --------------------------------------------------------------------------
    def preview(self, view: FeatureView | str, **options: Any) -> FeatureViewPreview:
        """Sample rows, per-feature statistics and histograms, lineage and what changed since the
        previous definition of ``view``; shows itself in a notebook (see ``preview.preview``)."""
        from .preview import preview

        if isinstance(view, str):
            view = self.get_view(view)
        return preview(view, self, **options)

    def holds(self, view: FeatureView) -> bool:
        """Whether ``view`` (this very object) is one of this workspace's definitions."""
        with self._lock:
            return (
                self._loaded.get(id(view)) is view
                or any(v is view for v in self._views.values())
                or any(v is view for history in self._history.values() for v in history)
            )

    # -- training frames -----------------------------------------------------------------
    def training_frame(
        self,
        labels: pd.DataFrame | str | os.PathLike[str],
        features: Sequence[str] | str,
        *,
        timestamp: str,
        plain_names: bool = False,
        to: str = "pandas",
        path: str | os.PathLike[str] | None = None,
    ) -> Any:
        """Join features point-in-time correctly onto ``labels``: a DataFrame, a parquet path or
        glob (relative to the workspace root), or SQL.

        Every label row is kept, in order, with its columns untouched; each feature is
        added as ``view__feature`` (or its plain name with ``plain_names=True``).
        ``to="pandas"`` returns a DataFrame (the label frame's index kept); ``to="arrow"`` a
        ``pyarrow.RecordBatchReader`` and ``to="parquet"`` writes the file ``path`` and returns
        its path: both stream the frame (label columns, then features, in label order) out of
        DuckDB without holding it in Python, under ``[engine] memory_limit``, spilling to
        ``temp_directory``. With ``to="spark"`` (Spark engine) ``labels`` may also be a Spark
        DataFrame, and the result is a Spark DataFrame ordered like the labels.
        """
        import pandas as pd

        if to not in RESULT_KINDS:
            raise LabelFrameError(
                f"training frame: to={to!r} is not a result kind; use one of {', '.join(map(repr, RESULT_KINDS))}"
            )
        if (to == "parquet") != (path is not None):
            raise LabelFrameError(
                "training frame: to='parquet' writes the file path=...; pass both (path is only for parquet)"
            )
        streamed = to in ("arrow", "parquet")
        if isinstance(labels, (str, os.PathLike)):
            location = parquet_location(labels, self.root)
            query = f"SELECT * FROM read_parquet({string_literal(location)})" if location else str(labels)
            if streamed and hasattr(self.engine, "training_frame_arrow"):
                joins = self._check_labels(self.duckdb.columns(query), features, timestamp, plain_names)
                return self._stream_out(query, timestamp, joins, to, path)
            labels = self.sql(query)
        spark_labels = to == "spark" and type(labels).__module__.startswith("pyspark")
        if not isinstance(labels, pd.DataFrame) and not spark_labels:
            raise LabelFrameError(
                f"labels must be a pandas DataFrame, a parquet path or a SQL query, not {type(labels).__name__}"
            )
        joins = self._check_labels(list(map(str, labels.columns)), features, timestamp, plain_names)
        if to == "spark":
            to_spark = getattr(self.engine, "training_frame_spark", None)
            if to_spark is None:
                from .errors import EngineError

                raise EngineError(
                    f"training frame: to='spark' needs the Spark engine, this workspace runs on "
                    f"{self.engine.name}; open it with jf.Workspace(..., engine='spark')"
                )
            return to_spark(labels, timestamp, joins)
        if streamed:
            return self._stream_out(labels, timestamp, joins, to, path)
        feats = self.engine.training_frame(labels, timestamp, joins)
        out = labels.copy()
        for col in feats.columns:
            out[col] = feats[col].to_numpy()
        return out

    def _check_labels(
        self, columns: list[str], features: Sequence[str] | str, timestamp: str, plain_names: bool
    ) -> list[ViewJoin]:
        """The joins for ``features``, once the label columns are known to hold what they need."""
        if timestamp not in columns:
            raise UnknownColumnError(
                f"label frame: timestamp column '{timestamp}' is not in it"
                f"{did_you_mean(timestamp, columns)}; columns: {', '.join(columns)}"
            )
        joins = self._plan_joins(features, columns, plain_names)
        for j in joins:
            for k in j.entity:
                if k not in columns:
                    raise UnknownColumnError(
                        f"label frame: it has no column '{k}', the entity key of feature view '{j.name}'"
                        f"{did_you_mean(k, columns)}; rename the column to '{k}'"
                    )
        return joins

    def _stream_out(
        self, labels: pd.DataFrame | str, timestamp: str, joins: list[ViewJoin], to: str,
        path: str | os.PathLike[str] | None,
    ) -> Any:  # fmt: skip
        """The training frame as Arrow batches (``to="arrow"``) or written to ``path``."""
        stream = getattr(self.engine, "training_frame_arrow", None)
        if stream is not None:
            reader = stream(labels, timestamp, joins)
        else:  # an engine without streaming: the frame is built whole, then handed over as Arrow
            import pyarrow as pa

            if isinstance(labels, str):
                labels = self.sql(labels)
            frame = labels.copy()
            for col, values in self.engine.training_frame(labels, timestamp, joins).items():
                frame[col] = values.to_numpy()
            reader = pa.Table.from_pandas(frame, preserve_index=False).to_reader()
        if to == "arrow":
            return reader
        assert path is not None
        write_parquet(reader, path, desc="training frame: writing")
        return Path(path).expanduser()

    def _plan_joins(self, refs: Sequence[str] | str, label_columns: list[str], plain: bool) -> list[ViewJoin]:
        groups = group_refs(list(refs) if not isinstance(refs, str) else refs)
        joins: list[ViewJoin] = []
        outputs: dict[str, str] = {}
        for (view_name, version), wanted in groups.items():
            view = self.get_view(view_name, version)
            names = view.feature_names if "*" in wanted else [view.feature(f).name for f in wanted]
            outs = []
            for f in names:
                out = f if plain else f"{view.name}__{f}"
                if out in outputs or out in label_columns:
                    clash = outputs.get(out, "the label frame")
                    raise FeatureReferenceError(
                        f"output column '{out}' from {view.name}:{f} clashes with {clash}; "
                        + ("use plain_names=False" if plain else "rename the label column")
                    )
                outputs[out] = f"{view.name}:{f}"
                outs.append(out)
            join = ViewJoin.of(view, names, outs)
            joins.append(self.push_log.join(view, join, typed=self.engine is self.duckdb))
        return joins


def _check_identifier(name: Any, role: str, who: str) -> None:
    """Names travel into SQL, code cells and keys: they must be plain identifiers."""
    hint = "alias it with AS, e.g. " if role == "feature" else ""
    check_identifier(name, f"{who}: {role} column", error=FeatureViewError, example=f"{hint}user_id")


def _window_texts(windows: Sequence[str] | str | None, who: str) -> tuple[str, ...]:
    """``windows`` as a tuple of texts: a list, or one comma-separated string ('1h,24h,7d')."""
    if windows is None:
        return ()
    if isinstance(windows, str):
        parts = [w.strip() for w in windows.split(",")]
        if not windows.strip():
            return ()
        if not all(parts):
            raise FeatureViewError(
                f"{who}: windows {windows!r} has an empty entry; write them like '1h,24h,7d'"
            )
        return tuple(parts)
    if not isinstance(windows, (list, tuple)):
        raise FeatureViewError(
            f"{who}: windows must be a list like ['1h', '24h', '7d'] or a string '1h,24h,7d', "
            f"not {type(windows).__name__}"
        )
    out = []
    for w in windows:
        if isinstance(w, timedelta):
            w = format_ttl(w) if w > timedelta(0) else str(w)
        if not isinstance(w, str):
            raise FeatureViewError(
                f"{who}: window {w!r} is a {type(w).__name__}; write it as text like '24h'"
            )
        out.append(w.strip())
    return tuple(out)


def _describe(sql: str, schemas: dict[str, Any], who: str) -> list[tuple[str, str]]:
    """The output columns of feature SQL and their DuckDB types, bound in the locked-down binder."""
    from .engines.duckdb import sandbox_describe

    try:
        return list(sandbox_describe(sql, schemas))
    except FeatureViewError:
        raise
    except Exception as exc:  # DuckDB binder / parser errors
        message = str(exc).split("\n")[0]
        if "Permission" in type(exc).__name__ or "external access" in message or "disabled" in message:
            from .errors import UnsafeSQLError

            raise UnsafeSQLError(f"{who}: the SQL tries to reach outside its sources: {message}") from exc
        raise FeatureViewError(f"{who}: DuckDB rejects the SQL: {message}") from exc


def _preview_view(view: FeatureView, **options: Any) -> FeatureViewPreview:
    """``FeatureView.preview()``: previewed by the open workspace that holds ``view``."""
    for ws in list(_OPEN):
        if ws.holds(view):
            return ws.preview(view, **options)
    raise FeatureViewError(
        f"feature view '{view.name}' is not held by an open workspace; define it with ws.feature_view "
        "or take it from ws.get_view, then preview it with ws.preview(view)"
    )


set_previewer(_preview_view)

_default: Workspace | None = None
_default_lock = threading.Lock()


def workspace() -> Workspace:
    """The process-wide default workspace, rooted at the current directory (the magics use it)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Workspace(".")
        return _default


def set_workspace(ws: Workspace | None) -> None:
    """Replace the process-wide default workspace (None resets it)."""
    global _default
    with _default_lock:
        _default = ws


@lru_cache(maxsize=256)
def _pushed_relation(
    sql: str,
    entity: tuple[str, ...],
    timestamp: str,
    windows: tuple[str, ...],
    owner: str,
    ttl: Any,
    created_timestamp: str | None,
) -> tuple[str, tuple[tuple[str, str], ...] | None]:
    """The SQL making a windowed view's relation rows of pushed rows, and the renames doing the
    same when it only renames columns (checking and planning the view's SQL costs
    milliseconds: once per definition, not per push)."""
    from .windows import PUSHED_TABLE, pushed_relation_renames, pushed_relation_sql, window_plan

    plan = window_plan(
        sql, entity, timestamp, list(windows), owner=owner, ttl=ttl, created_timestamp=created_timestamp
    )
    return pushed_relation_sql(plan, PUSHED_TABLE), pushed_relation_renames(plan)
