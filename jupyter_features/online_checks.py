"""Health check of an online store: does it serve what an offline recompute says it should?

``check_online`` recomputes what a view's served version should hold the way materialization
computes it — one engine call, ``engine.latest(join, end)``, cast by ``canonical_rows`` for
that version — reads what the store serves with one store call, ``store.scan(view)``, and
compares the two in DuckDB: keys joined, every feature ``IS DISTINCT FROM``. A difference
means the store was changed behind its back, a run half-applied, or a bug — or, for an
incremental run, rows that arrived late (event time before the previous watermark), which
only full runs see: real staleness. (``model_checks`` asks whether a model can go live.)

Each side is one call so that new kinds of views are new cases, not a rewrite: a view whose
values are evaluated at request time would compute ``expected`` and read ``served`` as of
the same ``at``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import CheckError, FeaturesError
from .featureview import ViewJoin
from .online import OnlineTable, canonical_rows
from .sqltext import quote
from .times import naive_utc

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    from .engines import OfflineEngine
    from .featureview import FeatureView
    from .online import OnlineStore

__all__ = ["ViewCheck", "OnlineCheck", "Resolver", "check_online", "compare"]

#: (view name, registry version) → that version's definition, or None when it cannot be had.
Resolver = Callable[[str, int], "FeatureView | None"]


@dataclass(frozen=True)
class ViewCheck:
    """One view's comparison: counts over the entities compared, or why it was not compared."""

    view: str
    store: str
    version: int | None = None  # the online version compared
    view_version: int | None = None  # the registry version it was materialized from
    end: datetime | None = None  # the end of the run that wrote it
    at: datetime | None = None  # the expected side was computed as of this time
    entities: int = 0  # entities compared: expected or served (or the sample)
    mismatched: int = 0  # entities with at least one differing value
    values: int = 0  # differing values
    missing: int = 0  # expected but not served
    extra: int = 0  # served but not expected
    per_feature: dict[str, int] = field(default_factory=dict)  # differing values per feature
    sample: int | None = None
    problem: str = ""  # why the view could not be compared ("" when it was)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problem and not (self.values or self.missing or self.extra)

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "version": self.version,
            "view_version": self.view_version,
            "end": self.end.isoformat() if self.end else None,
            "at": self.at.isoformat() if self.at else None,
            "entities": self.entities,
            "mismatched": self.mismatched,
            "values": self.values,
            "missing": self.missing,
            "extra": self.extra,
            "sample": self.sample,
            "problem": self.problem,
            "ok": self.ok,
        }

    def line(self) -> str:
        """One line of text for a terminal."""
        return f"{'ok' if self.ok else 'NOT OK':<6}  {self.body()}"

    def body(self) -> str:
        where = f"{self.view} in {self.store}"
        if self.problem:
            return f"{where}: {self.problem}"
        served = f"online version {self.version}" + (
            f" (view version {self.view_version})" if self.view_version is not None else ""
        )
        counts = (
            f"{self.entities:,} entities{' sampled' if self.sample is not None else ''} compared, "
            f"{self.values:,} values differ in {self.mismatched:,} entities, "
            f"{self.missing:,} missing, {self.extra:,} extra"
        )
        return f"{where}, {served}: {counts}"


@dataclass(frozen=True, eq=False)
class OnlineCheck:
    """The result of ``check_online``: a summary per view and the first differing values.

    ``mismatches`` has one row per differing value (view, entity keys, feature, offline,
    online), ``missing`` / ``extra`` the entities expected but not served / served but not
    expected; each holds at most ``limit`` rows per view, the counts in ``checks`` are exact.
    """

    store: str
    checks: list[ViewCheck]
    mismatches: pd.DataFrame
    missing: pd.DataFrame
    extra: pd.DataFrame
    limit: int | None = None

    @property
    def ok(self) -> bool:
        """True when every checked view was compared and every value matched."""
        return all(c.ok for c in self.checks)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per view: versions, end, entities compared, differences, problem."""
        import pandas as pd

        columns = ["view", "ok", "version", "view_version", "end", "entities", "mismatched", "values",
                   "missing", "extra", "problem"]  # fmt: skip
        return pd.DataFrame([{k: getattr(c, k) for k in columns} for c in self.checks], columns=columns)

    def lines(self, details: int = 5) -> list[str]:
        """A line per view, then its first ``details`` differing values, missing and extra entities."""
        out = []
        for c in self.checks:
            out.append(c.line())
            for name, frame in (
                ("differs", self.mismatches),
                ("missing", self.missing),
                ("extra", self.extra),
            ):
                rows = frame[frame["view"] == c.view].head(details) if len(frame) else frame
                for row in rows.to_dict("records"):
                    key = ", ".join(f"{k}={row[k]!r}" for k in frame.columns if k in _keys(self, c.view))
                    if name == "differs":
                        out.append(
                            f"        {key}: {row['feature']} offline {row['offline']!r}, online {row['online']!r}"
                        )
                    else:
                        out.append(f"        {key}: {name}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data (what the registry's activity log records)."""
        return {
            "store": self.store,
            "ok": self.ok,
            "views": {c.view: c.view_version for c in self.checks},
            "results": [c.to_dict() for c in self.checks],
        }

    def __repr__(self) -> str:
        state = "ok" if self.ok else "NOT OK"
        return f"OnlineCheck({state}, {self.store}: " + "; ".join(c.body() for c in self.checks) + ")"


def _keys(check: OnlineCheck, view: str) -> list[str]:
    """The entity key columns of ``view`` among the frames' columns (those not null for it)."""
    frames = [f[f["view"] == view] for f in (check.mismatches, check.missing, check.extra) if len(f)]
    fixed = {"view", "feature", "offline", "online"}
    return [c for f in frames for c in f.columns if c not in fixed and f[c].notna().any()]


def check_online(
    engine: OfflineEngine,
    store: OnlineStore,
    views: Sequence[FeatureView],
    *,
    resolve: Resolver | None = None,
    sample: int | None = None,
    at: Any = None,
    seed: int | None = None,
    limit: int | None = 10_000,
    progress: bool = True,
    join_of: Callable[[FeatureView], ViewJoin] = ViewJoin.of,
) -> OnlineCheck:
    """Compare what ``store`` serves for each of ``views`` with an offline recompute.

    The expected rows are the latest row per entity as of the served version's ``end``
    (or ``at``), TTL applied at that time — a full recompute, which is also what a correct
    incremental run serves. ``resolve`` finds the registry version the served version was
    materialized from when it is not the definition given. ``sample=N`` compares N entities
    drawn at random from both sides (``seed`` repeats a draw); ``limit`` caps the rows of
    ``mismatches``, ``missing`` and ``extra`` per view (None: all). ``join_of`` gives the rows a
    view is recomputed from (the workspace adds its push log to the view's own rows).
    """
    import pandas as pd

    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise CheckError(
            f"check_online: sample={sample!r} is not a positive number of entities; e.g. sample=10_000"
        )
    bar = _progress_bar(len(views)) if progress else None
    checks: list[ViewCheck] = []
    frames: dict[str, list[pd.DataFrame]] = {"mismatches": [], "missing": [], "extra": []}
    try:
        for view in views:
            check, found = _check_view(engine, store, view, resolve, sample, at, seed, limit, bar, join_of)
            checks.append(check)
            for name, frame in found.items():
                frames[name].append(frame)
    finally:
        if bar is not None:
            bar.close()
    keys: list[str] = []
    for view in views:
        keys += [k for k in view.entity if k not in keys]
    empty = {
        "mismatches": ["view", *keys, "feature", "offline", "online"],
        "missing": ["view", *keys],
        "extra": ["view", *keys],
    }
    out = {
        name: pd.concat(parts, ignore_index=True)[empty[name]] if parts else pd.DataFrame(columns=empty[name])
        for name, parts in frames.items()
    }
    return OnlineCheck(store=store.url, checks=checks, limit=limit, **out)


def _check_view(
    engine: OfflineEngine,
    store: OnlineStore,
    view: FeatureView,
    resolve: Resolver | None,
    sample: int | None,
    at: Any,
    seed: int | None,
    limit: int | None,
    bar: Any,
    join_of: Callable[[FeatureView], ViewJoin] = ViewJoin.of,
) -> tuple[ViewCheck, dict[str, pd.DataFrame]]:
    started = time.perf_counter()

    def step(what: str) -> None:
        if bar is not None:
            bar.set_description(f"check {view.name}: {what}")
            bar.update(1)

    if bar is not None:
        bar.set_description(f"check {view.name}: recompute")
    try:
        served_table = store.current(view.name)
        if served_table is None:
            problem = f"not materialized in {store.url}; materialize it first"
            return ViewCheck(view.name, store.url, problem=problem), {}
        definition = _definition(view, served_table, resolve)
        end = served_table.end if at is None else naive_utc(at)
        if served_table.window is not None:
            step("scan")
            counts, found = _check_windows(
                engine, store, join_of(definition), served_table, end, sample, seed, limit
            )
            step("compare")
            return _done(view, store, served_table, end, sample, started, counts, found, step)
        # The store is read while the engine recomputes: one waits on I/O while the other computes.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jf-scan") as pool:
            scanning = pool.submit(_scan, store, view.name)
            expected = canonical_rows(engine.latest(join_of(definition), end), served_table)
            step("scan")
            scanned, served = scanning.result()
        if scanned.version != served_table.version:  # a run switched versions meanwhile
            served_table = scanned
            definition = _definition(view, scanned, resolve)
            end = scanned.end if at is None else end
            expected = canonical_rows(engine.latest(join_of(definition), end), scanned)
        step("compare")
        counts, found = compare(expected, served, served_table, sample=sample, seed=seed, limit=limit)
    except _Unchecked as exc:
        return ViewCheck(view.name, store.url, version=exc.table.version, view_version=exc.table.view_version,
                         end=exc.table.end, problem=str(exc)), {}  # fmt: skip
    except FeaturesError as exc:
        return ViewCheck(view.name, store.url, problem=f"{type(exc).__name__}: {exc}"), {}
    return _done(view, store, served_table, end, sample, started, counts, found, step)


def _done(
    view: FeatureView,
    store: OnlineStore,
    served_table: OnlineTable,
    end: datetime,
    sample: int | None,
    started: float,
    counts: dict[str, Any],
    found: dict[str, pd.DataFrame],
    step: Callable[[str], None],
) -> tuple[ViewCheck, dict[str, pd.DataFrame]]:
    step("done")
    check = ViewCheck(
        view.name, store.url, version=served_table.version, view_version=served_table.view_version,
        end=served_table.end, at=end, sample=sample, seconds=time.perf_counter() - started, **counts,
    )  # fmt: skip
    for frame in found.values():
        frame.insert(0, "view", view.name)
    return check, found


def _check_windows(
    engine: OfflineEngine,
    store: OnlineStore,
    join: ViewJoin,
    table: OnlineTable,
    at: datetime,
    sample: int | None,
    seed: int | None,
    limit: int | None,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """A windowed view at ``at``: the engine's features of every entity with an event in the
    longest window against what a read of those entities at ``at`` serves."""
    from dataclasses import replace

    import pyarrow as pa

    from .sqltext import EVENT_TS
    from .times import to_micros

    plan = join.window_plan()
    if plan is None or not hasattr(engine, "window_values"):
        raise _Unchecked(
            f"the {engine.name} engine cannot recompute windowed views; check with DuckDB", table
        )
    plain = replace(table, window=None)  # compared feature by feature, like a plain view's row
    expected = canonical_rows(engine.window_values(plan, at), plain)
    keys = [
        dict(zip(table.entity, row, strict=True))
        for row in zip(*(expected.column(k).to_pylist() for k in table.entity), strict=True)
    ]
    read, values = store.read(table.view, None, keys, to_micros(at))
    if read.version != table.version:
        raise _Unchecked("a run switched versions during the check; check again", table)
    served = {k: [row[k] for row in keys] for k in table.entity}
    served[EVENT_TS] = [at] * len(keys)
    served.update({f.name: v for f, v in zip(table.features, values, strict=True)})
    served_rows = canonical_rows(pa.table(served), plain) if keys else expected.slice(0, 0)
    # a window's sum, avg or variance is summed in another order online: equal to 1e-9
    return compare(expected, served_rows, plain, sample=sample, seed=seed, limit=limit, rel=1e-9)


def _scan(store: OnlineStore, view: str) -> tuple[OnlineTable, pa.Table]:
    table, reader = store.scan(view)
    return table, reader.read_all()


class _Unchecked(Exception):
    """The served version cannot be compared with any definition at hand."""

    def __init__(self, message: str, table: OnlineTable) -> None:
        super().__init__(message)
        self.table = table


def _definition(view: FeatureView, table: OnlineTable, resolve: Resolver | None) -> FeatureView:
    """The definition the served version was materialized from: ``view``, or the registry version
    it names when ``view`` is another definition."""
    if not table.definition_hash or table.definition_hash == view.definition_hash:
        return view
    if resolve is not None and table.view_version is not None:
        found = resolve(view.name, table.view_version)
        if found is not None and found.definition_hash == table.definition_hash:
            return found
    version = f"version {table.view_version}" if table.view_version is not None else "a definition"
    raise _Unchecked(
        f"the store serves {version} materialized from another definition than '{view.name}' "
        f"{'version ' + str(view.version) if view.version is not None else 'of this session'}; "
        f"materialize '{view.name}' again, or check the version it was materialized from",
        table,
    )


def _progress_bar(views: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=3 * views, desc="check: recompute", unit="step", leave=False)


# -- the comparison ---------------------------------------------------------------------------
_CASTS_OUT = {"timestamp": "make_timestamp({c})"}  # µs back to a time, for people to read


def compare(
    expected: pa.Table,
    served: pa.Table | pa.RecordBatchReader,
    table: OnlineTable,
    *,
    sample: int | None = None,
    seed: int | None = None,
    limit: int | None = 10_000,
    rel: float = 0.0,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Compare two sets of canonical rows of ``table`` in DuckDB: counts (entities, mismatched,
    values, missing, extra, per_feature) and the first ``limit`` differing values, missing and
    extra entities (frames named ``mismatches``, ``missing``, ``extra``)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__jf_expected_rows", expected)
        con.register("__jf_served_rows", served)
        keys = [quote(k) for k in table.entity]
        key_list = ", ".join(keys)
        con.execute("CREATE TEMP TABLE __jf_s AS SELECT *, true AS __jf_here FROM __jf_served_rows")
        con.execute("CREATE TEMP VIEW __jf_e AS SELECT *, true AS __jf_here FROM __jf_expected_rows")
        if sample is not None:
            # A seed orders keys by their hash with it: the same draw whatever order the rows came in.
            draw = f"hash({key_list}, {int(seed)})" if seed is not None else "random()"
            con.execute(
                f"CREATE TEMP TABLE __jf_keys AS SELECT {key_list} FROM (SELECT {key_list} FROM __jf_e "
                f"UNION SELECT {key_list} FROM __jf_s) ORDER BY {draw} LIMIT {int(sample)}"
            )
            for side in ("e", "s"):
                con.execute(
                    f"CREATE TEMP TABLE __jf_{side}2 AS SELECT * FROM __jf_{side} SEMI JOIN __jf_keys USING ({key_list})"
                )
            e, s = "__jf_e2", "__jf_s2"
        else:
            e, s = "__jf_e", "__jf_s"
        on = " AND ".join(f"e.{k} = s.{k}" for k in keys)
        joined = f"{e} AS e FULL OUTER JOIN {s} AS s ON {on}"
        both = "e.__jf_here AND s.__jf_here"
        diffs = [_distinct(f.type, f"e.{quote(f.name)}", f"s.{quote(f.name)}", rel) for f in table.features]
        any_diff = " OR ".join(diffs)
        row = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE e.__jf_here AND s.__jf_here IS NULL), "
            f"count(*) FILTER (WHERE s.__jf_here AND e.__jf_here IS NULL), "
            f"count(*) FILTER (WHERE {both} AND ({any_diff})), "
            + ", ".join(f"count(*) FILTER (WHERE {both} AND {d})" for d in diffs)
            + f" FROM {joined}"
        ).fetchall()[0]
        per_feature = {f: int(n) for f, n in zip(table.feature_names, row[4:], strict=True) if n}
        counts = {
            "entities": int(row[0]), "missing": int(row[1]), "extra": int(row[2]), "mismatched": int(row[3]),
            "values": sum(per_feature.values()), "per_feature": per_feature,
        }  # fmt: skip
        cap = "" if limit is None else f" LIMIT {int(limit)}"
        found: dict[str, pd.DataFrame] = {}
        if counts["mismatched"]:
            found["mismatches"] = _mismatches(con, table, joined, both, diffs, limit)
        for name, side, other in (("missing", "e", "s"), ("extra", "s", "e")):
            if counts[name]:
                found[name] = con.sql(
                    f"SELECT {', '.join(f'{side}.{k}' for k in keys)} FROM {joined} "
                    f"WHERE {side}.__jf_here AND {other}.__jf_here IS NULL ORDER BY {', '.join(f'{side}.{k}' for k in keys)}{cap}"
                ).df()
        return counts, found
    finally:
        con.close()


def _distinct(kind: str, offline: str, online: str, rel: float = 0.0) -> str:
    """SQL: the two values differ. Floats compare exactly (or to ``rel``, relatively); in a list, a
    null element and NaN are alike (the SQLite store keeps a null element as NaN)."""
    if kind == "float64" and rel:
        return (
            f"({offline} IS DISTINCT FROM {online} AND NOT coalesce(abs({offline} - {online}) <= "
            f"{rel!r} * greatest(abs({offline}), abs({online})), FALSE))"
        )
    if kind == "list<float>":
        offline, online = (
            f"list_transform({c}, lambda x: coalesce(x, 'NaN'::DOUBLE))" for c in (offline, online)
        )
    return f"{offline} IS DISTINCT FROM {online}"


def _mismatches(
    con: duckdb.DuckDBPyConnection,
    table: OnlineTable,
    joined: str,
    both: str,
    diffs: list[str],
    limit: int | None,
) -> pd.DataFrame:
    """One row per differing value: keys, feature, offline, online (at most ``limit``)."""
    import pandas as pd

    keys = [quote(k) for k in table.entity]
    cols = [f"e.{k}" for k in keys]
    for i, f in enumerate(table.features):
        out = _CASTS_OUT.get(f.type, "{c}")
        cols += [
            out.format(c=f"e.{quote(f.name)}") + f" AS __jf_o{i}",
            out.format(c=f"s.{quote(f.name)}") + f" AS __jf_s{i}",
            f"{diffs[i]} AS __jf_d{i}",
        ]
    cap = "" if limit is None else f" LIMIT {int(limit)}"
    rows = con.execute(
        f"SELECT {', '.join(cols)} FROM {joined} WHERE {both} AND ({' OR '.join(diffs)}) "
        f"ORDER BY {', '.join(f'e.{k}' for k in keys)}{cap}"
    ).fetchall()
    n = len(keys)
    records = []
    for row in rows:
        key = dict(zip(table.entity, row[:n], strict=True))
        for i, f in enumerate(table.features):
            offline, online, differs = row[n + 3 * i : n + 3 * i + 3]
            if differs:
                records.append({**key, "feature": f.name, "offline": offline, "online": online})
    columns = [*table.entity, "feature", "offline", "online"]
    frame = pd.DataFrame({c: [r[c] for r in records] for c in table.entity}, columns=table.entity)
    for c in ("feature", "offline", "online"):  # values as they are: no dtype inferred over features
        frame[c] = pd.Series([r[c] for r in records], dtype=object)
    frame = frame[columns]
    return frame if limit is None else frame.head(limit)
