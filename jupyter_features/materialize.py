"""Materialization: the latest feature row per entity as of ``end``, into an online store.

This module owns a run: it plans it (full or incremental), holds the view's lock, asks
the offline engine for the rows (point-in-time semantics, TTL applied at ``end``), has
the engine write them into a new version the store began (``OnlineStore.begin``), and
switches readers to it only when it is complete; a failed run aborts the version.

Incremental runs read the rows whose event time is after the last run's ``end`` (its
watermark) and upsert them over a copy of the served version, switched atomically the
same way. Rows that arrive late with an event time at or before the watermark are not
seen by incremental runs; a full run picks them up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import MaterializationError
from .featureview import ViewJoin
from .online import OnlineTable, canonical_rows, window_spec
from .times import duration_micros, micros_to_datetime, now_utc, to_micros

if TYPE_CHECKING:
    import pyarrow as pa

    from .engines import LatestRows, OfflineEngine
    from .featureview import FeatureView
    from .online import OnlineStore
    from .pushes import PushLog
    from .windows import WindowPlan

__all__ = [
    "MaterializationResult",
    "Progress",
    "materialize_view",
    "plan_run",
    "online_table",
    "window_online_table",
    "canonical_rows",
]

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


def materialize_view(
    engine: OfflineEngine,
    view: FeatureView,
    store: OnlineStore,
    *,
    end: Any = None,
    incremental: bool = False,
    progress: bool = True,
    on_progress: Progress | None = None,
    pushes: PushLog | None = None,
) -> MaterializationResult:
    """Materialize one view into ``store``; holds the view's lock for the whole run.

    With ``pushes`` (the workspace's push log) the run reads the view's rows together with
    the pushes logged when it starts, and its switch replays the store's other pushes.
    A windowed view is always run in full: each entity's events in (end - longest window, end].
    """
    plan = view.window_plan()
    if plan is not None:
        return _materialize_windows(
            engine, view, plan, store, end=end, progress=progress, on_progress=on_progress, pushes=pushes
        )
    started = time.perf_counter()
    end_us = to_micros(end if end is not None else now_utc())
    bar = _progress_bar(view.name) if progress else None
    try:
        with store.lock(view.name) as lease:
            previous, since_us = plan_run(store, view, end_us, incremental)
            join = ViewJoin.of(view)
            covered: frozenset[int] = frozenset()
            identity = ""
            if pushes is not None and pushes.files(view.name):
                identity = store.identity()
                covered = pushes.covered(view.name, identity)  # listed before the rows are read
                join = pushes.join(view, join, store=identity, covered=covered, typed=engine.name == "duckdb")
            at = micros_to_datetime(end_us)
            rows = engine.latest_rows(
                join, at, micros_to_datetime(since_us) if since_us is not None else None
            )
            if since_us is not None and previous is not None and previous.key_types != rows.key_types:
                since_us = None  # keys changed type: start over with a full run
                rows = engine.latest_rows(join, at, None)
            table = online_table(view, rows.key_types, end_us)
            writer = store.begin(
                table,
                lease=lease,
                base=previous if since_us is not None else None,
                covered=covered,
                rows=rows.count,
            )
            log = pushes if pushes is not None and identity else None

            def later() -> pa.Table | None:  # the pushes logged after the run's end
                return log.later_rows(view, end_us, store=identity, covered=covered) if log else None

            total, written = _write_and_switch(view.name, rows, writer, bar, on_progress, later)
    finally:
        if bar is not None:
            bar.close()
    return MaterializationResult(
        view=view.name, store=store.url, version=written.version, rows_written=total, rows=written.rows,
        mode="incremental" if since_us is not None else "full", end=at,
        since=micros_to_datetime(since_us) if since_us is not None else None,
        seconds=time.perf_counter() - started,
    )  # fmt: skip


def _materialize_windows(
    engine: Any,
    view: FeatureView,
    plan: WindowPlan,
    store: OnlineStore,
    *,
    end: Any,
    progress: bool,
    on_progress: Progress | None,
    pushes: PushLog | None,
) -> MaterializationResult:
    """A windowed view's run: the events every read at or after ``end`` needs, and the pushes
    logged after ``end`` as pushed events."""
    from .windows import PUSHED_TABLE, pushed_relation_sql

    if not hasattr(engine, "window_events"):
        raise MaterializationError(
            f"feature view '{view.name}': the {engine.name} engine cannot materialize windowed views yet; "
            "materialize with the DuckDB engine"
        )
    started = time.perf_counter()
    end_us = to_micros(end if end is not None else now_utc())
    at = micros_to_datetime(end_us)
    bar = _progress_bar(view.name) if progress else None
    try:
        with store.lock(view.name) as lease:
            covered: frozenset[int] = frozenset()
            identity = ""
            join = ViewJoin.of(view)
            if pushes is not None and pushes.files(view.name):
                identity = store.identity()
                covered = pushes.covered(view.name, identity)  # listed before the rows are read
                join = pushes.join(view, join, store=identity, covered=covered, typed=engine.name == "duckdb")
            read = join.window_plan()
            assert read is not None
            rows = engine.window_events(read, at)
            table = window_online_table(view, plan, engine.window_types(plan), rows.key_types, end_us)
            writer = store.begin(table, lease=lease, covered=covered)
            log = pushes if pushes is not None and identity else None
            sql = pushed_relation_sql(plan, PUSHED_TABLE)

            def later() -> pa.Table | None:  # the pushes logged after the run's end, as events
                if log is None:
                    return None
                return log.later_events(
                    view.name, plan, end_us, store=identity, covered=covered,
                    project=lambda pushed: engine.project(sql, PUSHED_TABLE, pushed),
                )  # fmt: skip

            total, written = _write_and_switch(view.name, rows, writer, bar, on_progress, later)
    finally:
        if bar is not None:
            bar.close()
    return MaterializationResult(
        view=view.name, store=store.url, version=written.version, rows_written=total, rows=written.rows,
        mode="full", end=at, since=None, seconds=time.perf_counter() - started,
    )  # fmt: skip


def window_online_table(
    view: FeatureView, plan: WindowPlan, types: dict[str, str], key_types: tuple[str, ...], end_us: int
) -> OnlineTable:
    """The layout of the version a run of windowed ``view`` as of ``end_us`` writes: its events
    (the plan's inputs and flags, typed by the relation's ``types``) and its features."""
    from .engines.duckdb import sandbox_describe
    from .online import WindowPush
    from .schema import Feature, feature_type_of
    from .sqltext import quote
    from .windows import PUSHED_TABLE, push_columns_sql, pushed_relation_sql

    # what a pusher without the view (the feature server) needs to project pushed rows into events
    push = WindowPush(
        tuple(sandbox_describe(push_columns_sql(plan), view.schemas)),
        pushed_relation_sql(plan, quote(PUSHED_TABLE)),
    )
    inputs = {c: types[c] for c in (*plan.inputs, *plan.flags)}
    spec = window_spec(plan.aggregates, plan.windows, inputs, push)
    features = []
    for name, duckdb_type in plan.output_types(types).items():
        kind, vocabulary = feature_type_of(duckdb_type)
        if kind == "categorical":
            kind, vocabulary = "string", None
        features.append(Feature(name=name, type=kind, duckdb_type=duckdb_type, vocabulary=vocabulary))
    return OnlineTable(
        view=view.name, entity=view.entity, key_types=key_types, features=tuple(features), end_us=end_us,
        definition_hash=view.definition_hash, view_version=view.version, timestamp=view.timestamp,
        window=spec,
    )  # fmt: skip


def plan_run(
    store: OnlineStore, view: FeatureView, end_us: int, incremental: bool
) -> tuple[OnlineTable | None, int | None]:
    """The version served now and the watermark to read after (None: a full run).

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
    return previous, since_us


def online_table(view: FeatureView, key_types: tuple[str, ...], end_us: int) -> OnlineTable:
    """The layout of the version a run of ``view`` as of ``end_us`` writes."""
    return OnlineTable(
        view=view.name, entity=view.entity, key_types=key_types, features=view.features, end_us=end_us,
        ttl_us=None if view.ttl is None else duration_micros(view.ttl), definition_hash=view.definition_hash,
        view_version=view.version, created=view.created_timestamp is not None, timestamp=view.timestamp,
        created_timestamp=view.created_timestamp,
    )  # fmt: skip


def _write_and_switch(
    view: str,
    rows: LatestRows,
    writer: Any,
    bar: Any,
    on_progress: Progress | None,
    later: Callable[[], pa.Table | None],
) -> tuple[int, Any]:
    """Write ``rows``, then the pushes logged after the run's end (``later``), then switch
    readers to the version; abort it on any failure. Returns (rows written, the version)."""
    try:
        total = _write(view, rows, writer, bar, on_progress)
        pushed = later()
        if pushed is not None and pushed.num_rows:
            writer.write_pushed(pushed)
        return total, writer.switch()
    except BaseException:
        writer.abort()
        raise


def _write(view: str, rows: LatestRows, writer: Any, bar: Any, on_progress: Progress | None) -> int:
    """Have the engine write ``rows`` into ``writer``'s version, reporting progress."""
    total = rows.count or 0
    if bar is not None:
        bar.set_description(f"materialize {view}: writing")
        bar.reset(total=rows.count)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if bar is not None:
            bar.update(n)
        if on_progress is not None:
            on_progress(view, done, max(total, done))

    if on_progress is not None:
        on_progress(view, 0, total)
    written = rows.write_to(writer, advance)
    if on_progress is not None and done != written:
        on_progress(view, written, written)
    return written


def _progress_bar(view: str) -> Any:
    """tqdm in a terminal, a widget in a notebook (tqdm.auto); computing first, then writing."""
    from tqdm.auto import tqdm

    return tqdm(total=None, desc=f"materialize {view}: computing", unit="rows", unit_scale=True, leave=False)
