"""Materialization: the latest feature row per entity as of ``end``, into an online store.

The offline engine computes the rows (point-in-time semantics, TTL applied at ``end``);
DuckDB casts them to the canonical column types every store writes; the store writes a
new version and switches readers to it only when it is complete.

Incremental runs read the rows whose event time is after the last run's ``end`` (its
watermark) and upsert them over a copy of the served version, switched atomically the
same way. Rows that arrive late with an event time at or before the watermark are not
seen by incremental runs; a full run picks them up.
"""

from __future__ import annotations

import argparse
import runpy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .engines import ViewJoin
from .errors import MaterializationError
from .online.layout import TS_COLUMN, OnlineTable, key_type_of, micros_to_datetime, to_micros
from .pit import EVENT_TS, quote

if TYPE_CHECKING:
    import pyarrow as pa

    from .engines import OfflineEngine
    from .featureview import FeatureView
    from .online import OnlineStore
    from .workspace import Workspace

__all__ = ["MaterializationResult", "materialize", "materialize_view", "canonical_rows", "add_cli"]

#: progress callback: (view, rows done, rows total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class MaterializationResult:
    """What one run of one view did."""

    view: str
    store: str
    version: int  # the online version now served
    rows_written: int  # rows this run wrote (new and changed entities when incremental)
    rows: int  # entities in the version now served
    mode: str  # "full" or "incremental"
    end: datetime  # materialized as of; the next incremental run's watermark
    since: datetime | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "store": self.store,
            "version": self.version,
            "rows_written": self.rows_written,
            "rows": self.rows,
            "mode": self.mode,
            "end": self.end.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "seconds": round(self.seconds, 3),
        }


_MICRO = timedelta(microseconds=1)
_CASTS = {
    "int64": "CAST({c} AS BIGINT)",
    "float64": "CASE WHEN isnan(CAST({c} AS DOUBLE)) THEN NULL ELSE CAST({c} AS DOUBLE) END",
    "string": "CAST({c} AS VARCHAR)",
    "categorical": "CAST({c} AS VARCHAR)",
    "bool": "CAST({c} AS BOOLEAN)",
    "timestamp": "epoch_us(CAST({c} AS TIMESTAMP))",
    "list<float>": "CAST({c} AS DOUBLE[])",
}


def canonical_rows(latest: pa.Table, table: OnlineTable) -> pa.Table:
    """Keys, event time (µs) and features cast to the types stores write; null keys dropped;
    sorted by key (B-tree stores insert fastest in key order)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__jf_latest", latest)
        keys = [quote(k) for k in table.entity]
        cols = [
            f"CAST({k} AS {'BIGINT' if t == 'int64' else 'VARCHAR'}) AS {k}"
            for k, t in zip(keys, table.key_types, strict=True)
        ]
        cols.append(f"epoch_us(CAST({quote(EVENT_TS)} AS TIMESTAMP)) AS {TS_COLUMN}")
        cols += [_CASTS[f.type].format(c=quote(f.name)) + f" AS {quote(f.name)}" for f in table.features]
        where = " AND ".join(f"{k} IS NOT NULL" for k in keys)
        query = f"SELECT {', '.join(cols)} FROM __jf_latest WHERE {where} ORDER BY {', '.join(keys)}"
        return con.sql(query).fetch_arrow_table()
    finally:
        con.close()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def materialize_view(
    engine: OfflineEngine,
    view: FeatureView,
    store: OnlineStore,
    *,
    end: Any = None,
    incremental: bool = False,
    progress: bool = True,
    on_progress: Progress | None = None,
) -> MaterializationResult:
    """Materialize one view into ``store``; holds the view's lock for the whole run."""
    distributed = getattr(engine, "materialize_view", None)
    if distributed is not None:  # an engine whose workers write the store themselves (Spark)
        result: MaterializationResult = distributed(
            view, store, end=end, incremental=incremental, progress=progress, on_progress=on_progress
        )
        return result
    started = time.perf_counter()
    end_us = to_micros(end if end is not None else _now())
    bar = _progress_bar(view.name) if progress else None
    try:
        return _run(engine, view, store, end_us, incremental, bar, on_progress, started)
    finally:
        if bar is not None:
            bar.close()


def _plan_run(
    store: OnlineStore, view: FeatureView, end_us: int, incremental: bool
) -> tuple[OnlineTable | None, int | None, ViewJoin]:
    """The version served now, the watermark to read after (None: a full run) and the join to compute.

    Call with the view's lock held. An incremental run reads after the last run's ``end``
    unless the view's definition changed since; it may not go back before that ``end``.
    """
    previous = store.current(view.name)
    since_us = None
    if incremental and previous is not None:
        if previous.end_us > end_us:
            raise MaterializationError(
                f"feature view '{view.name}': end {micros_to_datetime(end_us)} is before the last run's "
                f"watermark {previous.end}; materialize with incremental=False to go back in time"
            )
        if previous.definition_hash == view.definition_hash:
            since_us = previous.end_us
    return previous, since_us, ViewJoin.of(view)


def _online_table(view: FeatureView, key_types: tuple[str, ...], end_us: int) -> OnlineTable:
    """The layout of the version a run of ``view`` as of ``end_us`` writes."""
    return OnlineTable(
        view=view.name, entity=view.entity, key_types=key_types, features=view.features, end_us=end_us,
        ttl_us=None if view.ttl is None else view.ttl // _MICRO, definition_hash=view.definition_hash,
        view_version=view.version,
    )  # fmt: skip


def _run(
    engine: OfflineEngine,
    view: FeatureView,
    store: OnlineStore,
    end_us: int,
    incremental: bool,
    bar: Any,
    on_progress: Progress | None,
    started: float,
) -> MaterializationResult:
    with store.lock(view.name) as lease:
        previous, since_us, join = _plan_run(store, view, end_us, incremental)
        since = micros_to_datetime(since_us) if since_us is not None else None
        latest = engine.latest(join, micros_to_datetime(end_us), since)
        key_types = tuple(key_type_of(_arrow_kind(latest.schema.field(k).type)) for k in view.entity)
        if since_us is not None and previous is not None and previous.key_types != key_types:
            since_us, since = None, None  # keys changed type: start over with a full run
            latest = engine.latest(join, micros_to_datetime(end_us), None)
        table = _online_table(view, key_types, end_us)
        rows = canonical_rows(latest, table)
        total = rows.num_rows
        if bar is not None:
            bar.set_description(f"materialize {view.name}: writing")
            bar.reset(total=total)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if bar is not None:
                bar.update(n)
            if on_progress is not None:
                on_progress(view.name, done, total)

        if on_progress is not None:
            on_progress(view.name, 0, total)
        written = store.write(
            table, rows, lease=lease, base=previous if since_us is not None else None, progress=advance
        )
    return MaterializationResult(
        view=view.name, store=store.url, version=written.version, rows_written=total, rows=written.rows,
        mode="incremental" if since_us is not None else "full", end=micros_to_datetime(end_us), since=since,
        seconds=time.perf_counter() - started,
    )  # fmt: skip


def _arrow_kind(arrow_type: Any) -> str:
    import pyarrow as pa

    return "int64" if pa.types.is_integer(arrow_type) else "string"


def _progress_bar(view: str) -> Any:
    """tqdm in a terminal, a widget in a notebook (tqdm.auto); computing first, then writing."""
    from tqdm.auto import tqdm

    return tqdm(total=None, desc=f"materialize {view}: computing", unit="rows", unit_scale=True, leave=False)


def materialize(
    ws: Workspace,
    names: Sequence[str] | str,
    *,
    store: str | OnlineStore | None = None,
    end: Any = None,
    incremental: bool = False,
    progress: bool = True,
    on_progress: Progress | None = None,
) -> dict[str, MaterializationResult]:
    """Materialize each named view of ``ws`` (session views, else from the registry)."""
    if isinstance(names, str):
        names = [names]
    views = []  # every name resolves before the store is even opened
    for name in names:
        base, _, version = name.partition("@")
        views.append(ws.get_view(base, int(version) if version.isdigit() else None))
    target = ws._online(store) if store is None or isinstance(store, str) else store
    end = end if end is not None else _now()
    return {
        v.name: materialize_view(
            ws.engine, v, target, end=end, incremental=incremental, progress=progress, on_progress=on_progress
        )
        for v in views
    }


# -- CLI ------------------------------------------------------------------------------------
def load_sources(ws: Workspace, path: str) -> None:
    """Run a Python file with ``ws`` in scope, to register sources (and define views)."""
    runpy.run_path(path, init_globals={"ws": ws, "workspace": ws})


def add_cli(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser(
        "materialize",
        help="write the latest feature values of views to the online store",
        description=(
            "Materialize feature views into the online store. Views come from the registry of the "
            "workspace at --dir (or are defined by the --sources-from file); their sources are "
            "registered by the --sources-from Python file, which runs with `ws` (the workspace) in scope."
        ),
    )
    p.add_argument(
        "names", nargs="+", metavar="NAME", help="feature views to materialize (NAME or NAME@VERSION)"
    )
    p.add_argument(
        "--store",
        help="online store URL (default: the workspace's, e.g. sqlite:///.jupyter_features/online.db)",
    )
    p.add_argument("--dir", default=".", help="workspace folder holding features.toml (default: %(default)s)")
    p.add_argument("--registry", help="registry URL (default: the workspace's)")
    p.add_argument(
        "--sources-from",
        metavar="FILE.py",
        help="Python file that registers the sources: ws.register_source(...)",
    )
    p.add_argument("--end", help="materialize as of this time (ISO 8601, UTC; default: now)")
    p.add_argument("--incremental", action="store_true", help="only rows newer than the last run's watermark")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--engine", choices=["duckdb", "spark"],
        help="offline engine computing the rows (default: the workspace's); spark writes from its executors",
    )  # fmt: skip

    def handle(args: argparse.Namespace) -> int:
        from .workspace import Workspace

        ws = Workspace(args.dir, registry=args.registry, online_store=args.store, engine=args.engine)
        if args.sources_from:
            load_sources(ws, args.sources_from)
        results = ws.materialize(
            args.names, end=args.end, incremental=args.incremental, progress=not args.no_progress
        )
        for r in results.values():
            print(
                f"{r.view}: version {r.version} now served from {r.store} ({r.mode}, {r.rows_written:,} rows "
                f"written, {r.rows:,} entities, as of {r.end.isoformat(sep=' ')}, {r.seconds:.2f}s)"
            )
        return 0

    return handle
