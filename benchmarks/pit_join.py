"""Point-in-time join benchmark: jupyter_features vs raw DuckDB ASOF JOIN vs Feast.

    python benchmarks/pit_join.py [--labels 1000000] [--features 10000000] [--entities 100000]
                                  [--repeat 3] [--skip-feast] [--feast-file] [--engine duckdb|spark]

Generates (once, cached under benchmarks/.data/) a label frame and a feature table as
parquet, then runs every contender ``--repeat`` times, each run in a fresh process so
that its peak memory (ru_maxrss) is its own, and reports the best wall time, the peak
RSS and the row count, the ratios against the targets, and whether our values equal
the raw ASOF JOIN's. Feast is installed on demand into its own venv
(benchmarks/.venv-feast); it is never a dependency of the project.

The module imports only the standard library at the top so the same file runs as the
contender process under either interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
FEAST_VENV = HERE / ".venv-feast"
MARK = "@@RESULT "
SPAN_SECONDS = 365 * 24 * 3600  # feature and label times fall within one year
START = "2024-01-01 00:00:00"

TARGET_VS_RAW = 1.3
TARGET_FEAST_SPEEDUP = 10.0
TARGET_MEMORY = 1.5


# -- data -------------------------------------------------------------------------------
def data_paths(labels: int, features: int, entities: int, ties: float = 0.0) -> tuple[Path, Path]:
    tied = f"_ties{round(ties * 100)}" if ties else ""
    return (
        DATA / f"labels_{labels}_{entities}.parquet",
        DATA / f"features_{features}_{entities}{tied}.parquet",
    )


def has_created(features_path: Path) -> bool:
    """Whether the feature table is the tied shape (with a ``created`` column to break ties)."""
    return "_ties" in features_path.name


def generate(labels: int, features: int, entities: int, ties: float = 0.0) -> tuple[Path, Path]:
    """Write the parquet files unless cached. Without ``ties``, (entity_id, ts) is unique.

    Each entity gets ``ceil(features / entities)`` events, one per equal slot of the year
    at a pseudo-random second inside the slot, so no two share a time; rows are
    shuffled. Labels pick a pseudo-random entity and second of the year, so some fall
    before an entity's first event and must come back with null features.

    With ``ties`` (e.g. 0.15), that fraction of the rows takes the event time of the
    same entity's previous event, so it shares (entity_id, ts) with it, and every row
    gets a ``created`` time (event time + up to an hour) that breaks the tie.
    """
    import duckdb

    labels_path, features_path = data_paths(labels, features, entities, ties)
    DATA.mkdir(parents=True, exist_ok=True)
    per_entity = -(-features // entities)
    slot = SPAN_SECONDS // per_entity
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET memory_limit = '4GB'")  # the largest tables are shuffled out of core
    con.execute(f"SET temp_directory = '{DATA / 'spill'}'")
    if not features_path.exists():
        print(f"generating {features:,} feature rows for {entities:,} entities ...", flush=True)
        tmp = features_path.with_suffix(".tmp")
        # a tied row takes the time its entity's previous row (n - entities) has
        src = f"CASE WHEN n >= {entities} AND hash(n, 6) % 10000 < {round(ties * 10000)} THEN n - {entities} ELSE n END"
        created = "ts + to_seconds(CAST(hash(n, 7) % 3600 AS BIGINT)) AS created," if ties else ""
        con.execute(f"""
            COPY (
              SELECT entity_id, ts, {created} f1, f2, f3 FROM (
              SELECT n, n % {entities} AS entity_id,
                     TIMESTAMP '{START}' + to_seconds(
                         CAST((({src}) // {entities}) * {slot} + hash({src}, 1) % {slot} AS BIGINT)) AS ts,
                     (hash(n, 2) % 1000000) / 1000000.0 AS f1,
                     (hash(n, 3) % 100000) / 100.0 - 500.0 AS f2,
                     CAST(hash(n, 4) % 1000 AS BIGINT) AS f3
              FROM range({features}) r(n))
              ORDER BY hash(n, 5)
            ) TO '{tmp}' (FORMAT parquet)
        """)
        tmp.rename(features_path)
    if not labels_path.exists():
        print(f"generating {labels:,} label rows ...", flush=True)
        tmp = labels_path.with_suffix(".tmp")
        con.execute(f"""
            COPY (
              SELECT n AS label_id,
                     CAST(hash(n, 11) % {entities} AS BIGINT) AS entity_id,
                     TIMESTAMP '{START}' + to_seconds(CAST(hash(n, 12) % {SPAN_SECONDS} AS BIGINT)) AS ts,
                     CAST(hash(n, 13) % 2 AS BIGINT) AS label
              FROM range({labels}) r(n)
              ORDER BY n
            ) TO '{tmp}' (FORMAT parquet)
        """)
        tmp.rename(labels_path)
    con.close()
    return labels_path, features_path


# -- contenders (each runs in its own process) ------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads): steadier than wall time on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ours(labels_path: Path, features_path: Path) -> tuple[Any, dict[str, float]]:
    import pandas as pd
    import pyarrow.parquet  # noqa: F401  (imported up front: the import is not the join)

    import jupyter_features as jf

    t0 = time.perf_counter()
    ws = jf.Workspace(tempfile.mkdtemp(prefix="jf-bench-"))
    ws.register_source("feats", str(features_path), timestamp="ts")
    created = has_created(features_path)
    ws.feature_view(
        "v", f"SELECT entity_id, ts, {'created, ' if created else ''}f1, f2, f3 FROM feats",
        entity=["entity_id"], timestamp="ts", created_timestamp="created" if created else None,
    )  # fmt: skip
    t1, c1 = time.perf_counter(), cpu_seconds()
    labels = pd.read_parquet(labels_path)
    t2 = time.perf_counter()
    out = ws.training_frame(labels, ["v:*"], timestamp="ts")
    t3, c3 = time.perf_counter(), cpu_seconds()
    out = out.rename(columns={"v__f1": "f1", "v__f2": "f2", "v__f3": "f3"})
    timing = {"seconds": t3 - t1, "cpu_s": c3 - c1, "setup_s": t1 - t0, "read_labels_s": t2 - t1}
    return out, {**timing, "join_s": t3 - t2}


def run_raw(labels_path: Path, features_path: Path, *, ordered: bool) -> tuple[Any, dict[str, float]]:
    import duckdb
    import pandas  # noqa: F401  (imported up front, as in the other contenders)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.sql("SELECT 1 AS warm").df()
    t0, c0 = time.perf_counter(), cpu_seconds()
    order = "ORDER BY l.file_row_number" if ordered else ""
    keep = "* EXCLUDE (file_row_number)" if ordered else "*"
    out = con.sql(f"""
        SELECT l.{keep}, f.f1, f.f2, f.f3
        FROM read_parquet('{labels_path}', file_row_number = {str(ordered).lower()}) l
        ASOF LEFT JOIN read_parquet('{features_path}') f
          ON l.entity_id = f.entity_id AND l.ts >= f.ts
        {order}
    """).df()
    return out, {"seconds": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0}


def run_feast(labels_path: Path, features_path: Path, *, store: str) -> tuple[Any, dict[str, float]]:
    import pandas as pd
    import pyarrow.parquet  # noqa: F401
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    t0 = time.perf_counter()
    repo = Path(tempfile.mkdtemp(prefix="feast-bench-"))
    (repo / "feature_store.yaml").write_text(
        "project: bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        f"offline_store:\n  type: {store}\n"
        f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\n"
        "entity_key_serialization_version: 3\n"
    )
    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="v",
        entities=[entity],
        ttl=timedelta(0),  # no TTL, like the other contenders
        schema=[
            Field(name="entity_id", dtype=Int64),
            Field(name="f1", dtype=Float64),
            Field(name="f2", dtype=Float64),
            Field(name="f3", dtype=Int64),
        ],
        source=FileSource(
            path=str(features_path),
            timestamp_field="ts",
            created_timestamp_column="created" if has_created(features_path) else "",
        ),
        online=False,
    )
    fs = FeatureStore(repo_path=str(repo))
    fs.apply([entity, view])
    t1, c1 = time.perf_counter(), cpu_seconds()
    labels = pd.read_parquet(labels_path).rename(columns={"ts": "event_timestamp"})
    job = fs.get_historical_features(entity_df=labels, features=["v:f1", "v:f2", "v:f3"])
    out = job.to_df()
    t2, c2 = time.perf_counter(), cpu_seconds()
    out = out.rename(columns={"event_timestamp": "ts"})
    return out, {"seconds": t2 - t1, "cpu_s": c2 - c1, "setup_s": t1 - t0}


def _jvm_peak_mb(session: Any) -> float:
    """Peak resident memory of the local Spark JVM (the driver and, in local mode, the executors)."""
    pid = session.sparkContext._jvm.ProcessHandle.current().pid()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_spark(labels_path: Path, features_path: Path, *, cores: int) -> tuple[Any, dict[str, float]]:
    """Ours on the Spark engine in local mode with ``cores`` cores; the parquet is read by Spark."""
    import pandas as pd

    import jupyter_features as jf
    from jupyter_features.engines.spark import default_session

    t0 = time.perf_counter()
    config = {"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": str(8 * cores)}
    session = default_session(f"local[{cores}]", config)
    session.sparkContext.setLogLevel("ERROR")
    ws = jf.Workspace(tempfile.mkdtemp(prefix="jf-bench-"), engine=session)
    ws.register_source("feats", str(features_path), timestamp="ts")
    ws.feature_view("v", "SELECT entity_id, ts, f1, f2, f3 FROM feats", entity=["entity_id"], timestamp="ts")
    session.sql("SELECT 1").collect()
    t1 = time.perf_counter()
    labels = pd.read_parquet(labels_path)
    t2 = time.perf_counter()
    out = ws.training_frame(labels, ["v:*"], timestamp="ts")
    t3 = time.perf_counter()
    ws.training_frame(labels, ["v:*"], timestamp="ts")  # again, with the JVM warm (reported apart)
    warm = time.perf_counter() - t3
    out = out.rename(columns={"v__f1": "f1", "v__f2": "f2", "v__f3": "f3"})
    timing = {"seconds": t3 - t1, "setup_s": t1 - t0, "read_labels_s": t2 - t1, "join_s": t3 - t2}
    timing["warm_s"] = warm
    return out, {**timing, "jvm_peak_mb": _jvm_peak_mb(session)}


CONTENDERS = {
    "spark-local1": lambda lp, fp: run_spark(lp, fp, cores=1),
    "spark-local2": lambda lp, fp: run_spark(lp, fp, cores=2),
    "ours": lambda lp, fp: run_ours(lp, fp),
    "raw": lambda lp, fp: run_raw(lp, fp, ordered=False),
    "raw-ordered": lambda lp, fp: run_raw(lp, fp, ordered=True),
    "feast-duckdb": lambda lp, fp: run_feast(lp, fp, store="duckdb"),
    "feast-file": lambda lp, fp: run_feast(lp, fp, store="file"),
}


def contender_main(name: str, labels_path: Path, features_path: Path, save: Path | None) -> None:
    out, timing = CONTENDERS[name](labels_path, features_path)
    result = {"rows": len(out), "peak_rss_mb": peak_rss_mb(), **timing}
    if save is not None:  # after measuring: writing it is not part of the contender
        out[["label_id", "entity_id", "ts", "f1", "f2", "f3"]].to_parquet(save)
    print(MARK + json.dumps(result), flush=True)


# -- driver -----------------------------------------------------------------------------
def ensure_feast() -> Path:
    python = FEAST_VENV / "bin" / "python"
    if not python.exists():
        print("installing Feast into benchmarks/.venv-feast ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(FEAST_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "feast[duckdb]"], check=True)
    return python


def run_contender(python: str, name: str, paths: tuple[Path, Path], save: Path | None) -> dict[str, Any]:
    cmd = [python, str(Path(__file__).resolve()), "--contender", name, str(paths[0]), str(paths[1])]
    if save is not None:
        cmd.append(str(save))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        how = f"exit {proc.returncode}"
        if proc.returncode == -9:
            how = "killed by SIGKILL, most likely out of memory"
        raise RuntimeError(f"{name} failed ({how}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(MARK) :])
    return result


def compare(ours: Path, raw: Path, labels_path: Path) -> dict[str, int]:
    """Values of ours vs raw per label_id, and whether ours kept the label order."""
    import duckdb

    con = duckdb.connect()
    mismatched = con.execute(f"""
        SELECT count(*) FROM read_parquet('{ours}') o FULL JOIN read_parquet('{raw}') r USING (label_id)
        WHERE o.label_id IS NULL OR r.label_id IS NULL
           OR o.f1 IS DISTINCT FROM r.f1 OR o.f2 IS DISTINCT FROM r.f2 OR o.f3 IS DISTINCT FROM r.f3
    """).fetchone()
    out_of_order = con.execute(f"""
        SELECT count(*) FROM read_parquet('{ours}', file_row_number = true) o
        POSITIONAL JOIN read_parquet('{labels_path}', file_row_number = true) l
        WHERE o.label_id IS DISTINCT FROM l.label_id OR o.ts IS DISTINCT FROM l.ts
    """).fetchone()
    unmatched = con.execute(f"SELECT count(*) FROM read_parquet('{ours}') WHERE f1 IS NULL").fetchone()
    missing = con.execute(f"""
        SELECT count(*) FROM read_parquet('{raw}') r ANTI JOIN read_parquet('{ours}') o USING (label_id)
    """).fetchone()
    return {
        "mismatched_values": int(mismatched[0]) if mismatched else -1,
        "missing_rows": int(missing[0]) if missing else -1,
        "out_of_order": int(out_of_order[0]) if out_of_order else -1,
        "null_feature_rows": int(unmatched[0]) if unmatched else -1,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=10_000_000)
    p.add_argument("--entities", type=int, default=100_000)
    p.add_argument(
        "--ties", type=float, default=0.0,
        help="fraction of feature rows sharing (entity_id, ts) with another, a created column breaking the tie",
    )  # fmt: skip
    p.add_argument("--repeat", type=int, default=3, help="runs per contender; the best wall time counts")
    p.add_argument("--skip-feast", action="store_true", help="do not run Feast")
    p.add_argument(
        "--feast-file",
        action="store_true",
        help="also run Feast's file offline store (needs more than 24 GB at the default size)",
    )
    p.add_argument("--only", nargs="*", help="run only these contenders")
    p.add_argument(
        "--engine", choices=["duckdb", "spark"], default="duckdb",
        help="spark: ours on DuckDB and on Spark local[1] and local[2] (raw ASOF for the values; no Feast)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    paths = generate(args.labels, args.features, args.entities, args.ties)
    args.load_before = os.getloadavg()[0]
    names = ["ours", "raw", "raw-ordered"]
    if not args.skip_feast:
        names.append("feast-duckdb")
        if args.feast_file:
            names.append("feast-file")
    if args.engine == "spark":
        names = ["ours", "raw", "spark-local1", "spark-local2"]
    if args.only:
        names = [n for n in names if n in args.only]
    feast_python = str(ensure_feast()) if any(n.startswith("feast") for n in names) else ""
    out_dir = DATA / "out"
    out_dir.mkdir(exist_ok=True)

    # Rounds of one run per contender, so a burst of load from elsewhere hits them alike.
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    failed: dict[str, str] = {}
    for i in range(args.repeat):
        for name in names:
            if name in failed:
                continue
            python = feast_python if name.startswith("feast") else sys.executable
            save = out_dir / f"{name}.parquet" if i == 0 else None
            start = time.perf_counter()
            try:
                run = run_contender(python, name, paths, save)
            except RuntimeError as exc:  # reported, and not tried again
                failed[name] = f"{str(exc).splitlines()[0]} after {time.perf_counter() - start:.0f} s"
                print(f"  round {i + 1}  {failed[name]}", flush=True)
                continue
            runs[name].append(run)
            print(
                f"  round {i + 1}  {name:13} {run['seconds']:7.2f} s  {run['peak_rss_mb']:7.0f} MB"
                f"  (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    results: dict[str, dict[str, Any]] = {}
    for name, done in runs.items():
        if not done:
            continue
        results[name] = {
            **min(done, key=lambda r: r["seconds"]),
            "runs_s": [round(r["seconds"], 3) for r in done],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in done),
        }
    report(args, results, paths, out_dir)
    for why in failed.values():
        print(why)
    results.update({name: {"failed": why} for name, why in failed.items()})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(
    args: argparse.Namespace, results: dict[str, dict[str, Any]], paths: tuple[Path, Path], out_dir: Path
) -> None:
    print(
        f"\n{args.labels:,} labels x {args.features:,} feature rows, {args.entities:,} entities, "
        f"3 features; best of {args.repeat} rounds (one run per contender per round, each in a fresh\n"
        "process); CPU s = user + system time of that best run; peak RSS = max over the runs\n"
    )
    print(f"{'contender':14} {'best s':>8} {'CPU s':>7} {'peak RSS MB':>12} {'rows out':>11}   runs (s)")
    for name, r in results.items():
        cpu = f"{r['cpu_s']:7.2f}" if "cpu_s" in r else f"{'':7}"
        print(f"{name:14} {r['seconds']:8.2f} {cpu} {r['peak_rss_mb']:12.0f} {r['rows']:11,}   {r['runs_s']}")
    print(f"load average (1 min) before/after the runs: {args.load_before:.1f} / {os.getloadavg()[0]:.1f}")
    ours, raw = results.get("ours"), results.get("raw")
    if ours and "join_s" in ours:
        print(
            f"\nours: setup {ours['setup_s']:.2f} s (not timed), read labels {ours['read_labels_s']:.2f} s, "
            f"training_frame {ours['join_s']:.2f} s"
        )
    print()
    if ours and raw:
        speed, memory = ours["seconds"] / raw["seconds"], ours["peak_rss_mb"] / raw["peak_rss_mb"]
        verdict = "ok" if speed <= TARGET_VS_RAW else "MISSED"
        print(f"ours / raw ASOF time:        {speed:5.2f}x  (target <= {TARGET_VS_RAW}x) {verdict}")
        if "cpu_s" in ours and "cpu_s" in raw:
            print(f"ours / raw ASOF CPU time:    {ours['cpu_s'] / raw['cpu_s']:5.2f}x  (of the best runs)")
        verdict = "ok" if memory <= TARGET_MEMORY else "MISSED"
        print(f"ours / raw ASOF peak memory: {memory:5.2f}x  (target <= {TARGET_MEMORY}x) {verdict}")
    for feast in ("feast-duckdb", "feast-file"):
        if ours and feast in results:
            speedup = results[feast]["seconds"] / ours["seconds"]
            verdict = "ok" if speedup >= TARGET_FEAST_SPEEDUP else "MISSED"
            print(f"{feast} / ours time:    {speedup:5.1f}x  (target >= {TARGET_FEAST_SPEEDUP}x) {verdict}")
    if ours:
        ok = "ok" if ours["rows"] == args.labels else "WRONG"
        print(f"ours rows out == label rows: {ours['rows']:,} == {args.labels:,} {ok}")
    if ours and raw:
        check = compare(out_dir / "ours.parquet", out_dir / "raw.parquet", paths[0])
        print(
            f"ours vs raw ASOF: {check['mismatched_values']} rows differ "
            f"({check['null_feature_rows']:,} label rows have no feature yet, null in both); "
            f"{check['out_of_order']} rows out of label order"
        )
        results["checks"] = check
    report_spark(args, results, paths, out_dir)
    for feast in ("feast-duckdb", "feast-file"):
        if feast in results and raw:
            check = compare(out_dir / f"{feast}.parquet", out_dir / "raw.parquet", paths[0])
            results[f"checks-{feast}"] = check
            print(
                f"{feast}: {results[feast]['rows']:,} rows out for {args.labels:,} label rows, "
                f"{check['missing_rows']:,} label rows dropped; "
                f"{check['mismatched_values'] - check['missing_rows']:,} rows with values unlike raw ASOF"
            )


def report_spark(
    args: argparse.Namespace, results: dict[str, dict[str, Any]], paths: tuple[Path, Path], out_dir: Path
) -> None:
    ours, raw = results.get("ours"), results.get("raw")
    for name in ("spark-local1", "spark-local2"):
        r = results.get(name)
        if not r:
            continue
        vs = f", {r['seconds'] / ours['seconds']:.1f}x DuckDB's time" if ours else ""
        print(
            f"{name}: training_frame {r['join_s']:.2f} s cold, {r['warm_s']:.2f} s warm "
            f"(session start + setup {r['setup_s']:.1f} s, not timed), "
            f"JVM peak {r['jvm_peak_mb']:.0f} MB{vs}; rows out {r['rows']:,}"
        )
        if raw:
            check = compare(out_dir / f"{name}.parquet", out_dir / "raw.parquet", paths[0])
            print(
                f"  {name} vs raw ASOF: {check['mismatched_values']} rows differ; "
                f"{check['out_of_order']} rows out of label order"
            )
            results[f"checks-{name}"] = check
    one, two = results.get("spark-local1"), results.get("spark-local2")
    if one and two:
        print(f"Spark scaling local[1] -> local[2]: {one['seconds'] / two['seconds']:.2f}x faster")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--contender":
        contender_main(
            sys.argv[2],
            Path(sys.argv[3]),
            Path(sys.argv[4]),
            Path(sys.argv[5]) if len(sys.argv) > 5 else None,
        )
    else:
        sys.exit(main())
