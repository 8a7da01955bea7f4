"""Feature server under load: `jupyter-features serve` against the thinnest server, side by side.

    python benchmarks/feature_server.py [--entities 100000] [--duration 5] [--rounds 3]
                                        [--connections 1,10,50,200] [--batches 1,100]
                                        [--skip-feast] [--redis URL]

Materializes N entities × 10 float features (the data of benchmarks/online.py) to SQLite
and to Redis, starts every contender at once, each on its own port, then drives them
with ``wrk`` (``apt-get install wrk``), one contender after the other for each
(store, entities per request, connections) and round after round, so machine noise
hits them alike. Every request asks for the 10 features of 1 or 100 random entities,
with the same body for every contender:
``{"features": ["v:f0", ...], "entities": {"user_id": [...]}}``.

- ``thin``: the thinnest Python server over the same store: Starlette + ``sqlite3``
  (one ``IN`` query on the view) or ``redis`` (one ``HMGET`` of the version's hash)
  + ``json``, one uvicorn worker;
- ``ours``: ``jupyter-features serve`` (one worker), and ``ours-2w`` with ``--workers 2``;
- ``feast``: Feast's ``feast serve`` (SQLite online store only), run from its own venv
  (benchmarks/.venv-feast, installed on first use like benchmarks/online.py does; never
  a dependency of the project); skipped when it cannot be installed or with ``--skip-feast``.

Reported per cell: requests/s (2xx only), p50 and p99 latency from wrk, and the share
of non-2xx answers; then the targets at 50 connections: ours ≥ 0.8× thin's throughput,
ours p99 ≤ 1.5× thin's, and 2 workers > thin.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FEAST_VENV = HERE / ".venv-feast"
FEATURES = [f"f{i}" for i in range(10)]
END = datetime(2024, 1, 2)
MARK = "@@WRK "
TARGET_THROUGHPUT = 0.8
TARGET_P99 = 1.5

WRK_SCRIPT = r"""
local batch, entities, prefix
function init(args)
  batch = tonumber(args[1]); entities = tonumber(args[2]); prefix = args[3]
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  local ids = {}
  for i = 1, batch do ids[i] = math.random(0, entities - 1) end
  return wrk.format(nil, nil, nil, prefix .. table.concat(ids, ",") .. "]}}")
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('@@WRK {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

# The thinnest server: what any Python service over the same store would be at least.
THIN_SERVER = r"""
import json, sqlite3, sys
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

store, port, version, features = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
NONE = (None,) * len(features)
if store.startswith("sqlite"):
    con = sqlite3.connect(store[len("sqlite:///"):], check_same_thread=False)
    cols = ", ".join(features)

    def lookup(ids):
        sql = f'SELECT user_id, {cols} FROM "v" WHERE user_id IN ({", ".join("?" * len(ids))})'
        return {r[0]: r[1:] for r in con.execute(sql, ids).fetchall()}
else:
    import redis
    url, _, prefix = store.partition("?prefix=")
    client = redis.Redis.from_url(url)
    key = f"{prefix}{{v}}:v{version}"

    def lookup(ids):
        return {i: json.loads(raw)[1:] for i, raw in zip(ids, client.hmget(key, ids)) if raw is not None}

async def online_features(request: Request) -> Response:
    body = json.loads(await request.body())
    ids = body["entities"]["user_id"]
    found = lookup(ids)
    rows = [found.get(i, NONE) for i in ids]
    results = {f"v__{f}": [r[j] for r in rows] for j, f in enumerate(features)}
    return Response(json.dumps({"results": results}), media_type="application/json")

app = Starlette(routes=[Route("/api/v1/online-features", online_features, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Contender:
    name: str
    store: str  # "sqlite" or "redis"
    url: str  # the read endpoint
    proc: subprocess.Popen[bytes]
    results: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)


def wait_ready(url: str, proc: subprocess.Popen[bytes], body: bytes, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            r = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=2)
            if r.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server for {url} did not start")


def request_prefix() -> str:
    feats = ", ".join(f'"v:{f}"' for f in FEATURES)
    return '{"features": [' + feats + '], "entities": {"user_id": ['


def run_wrk(
    url: str, script: Path, connections: int, batch: int, entities: int, seconds: float
) -> dict[str, Any]:
    threads = 1 if connections < 100 else 2
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(script), url, "--", str(batch), str(entities), request_prefix()]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith(MARK))
    result: dict[str, Any] = json.loads(line[len(MARK) :])
    seconds_run = result["duration_us"] / 1e6
    result["rps"] = (result["requests"] - result["non2xx"]) / seconds_run
    result["non2xx_share"] = result["non2xx"] / max(1, result["requests"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="1,10,50,200")
    parser.add_argument("--batches", default="1,100", help="entities per request")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--contenders", default="thin,ours,ours-2w,feast")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--redis", help="use this Redis instead of a private redis-server")
    parser.add_argument("--feast-setup", nargs=2, metavar=("DATA", "REPO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feast_setup:
        feast_setup(args.feast_setup[0], Path(args.feast_setup[1]))
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install it (Debian/Ubuntu: apt-get install wrk)")
    run(args)


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from online import source_file, start_redis

    import jupyter_features as jf

    workdir = Path(tempfile.mkdtemp(prefix="jf-serve-bench-"))
    redis_server = None
    procs: list[subprocess.Popen[bytes]] = []
    stores = args.stores.split(",")
    names = args.contenders.split(",")
    if args.skip_feast and "feast" in names:
        names.remove("feast")
    try:
        redis_url = args.redis
        if redis_url is None and "redis" in stores:
            redis_url, redis_server = start_redis(workdir)
        urls = {"sqlite": f"sqlite:///{workdir}/online.db"}
        if "redis" in stores:
            urls["redis"] = f"{redis_url}?prefix=bench:"
        data = source_file(args.entities)
        ws = jf.Workspace(workdir / "ws", online_store=urls["sqlite"])
        ws.register_source("events", data, timestamp="ts")
        ws.feature_view("v", "SELECT * FROM events", entity="user_id", timestamp="ts")
        versions = {}
        for store in stores:
            versions[store] = ws.materialize(["v"], store=urls[store], end=END, progress=False)["v"].version
        print(f"{args.entities:,} entities × {len(FEATURES)} features; python {sys.version.split()[0]}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)  # fmt: skip

        thin_file = workdir / "thin_server.py"
        thin_file.write_text(THIN_SERVER)
        script = workdir / "bench.lua"
        script.write_text(WRK_SCRIPT)
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        contenders: list[Contender] = []
        for store in stores:
            for name in names:
                port = free_port()
                if name == "thin":
                    cmd = [sys.executable, str(thin_file), urls[store], str(port), str(versions[store]),
                           ",".join(FEATURES)]  # fmt: skip
                elif name.startswith("ours"):
                    workers = name.partition("-")[2].rstrip("w") or "1"
                    cmd = [sys.executable, "-m", "jupyter_features.cli", "serve", "--store", urls[store],
                           "--port", str(port)]  # fmt: skip
                    if workers != "1":
                        cmd += ["--workers", workers]
                elif store == "sqlite":  # feast: its SQLite online store only
                    feast = feast_command(data, args.entities, workdir, port)
                    if feast is None:
                        continue
                    cmd, cwd = feast
                    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    procs.append(proc)
                    contenders.append(
                        Contender(name, store, f"http://127.0.0.1:{port}/get-online-features", proc)
                    )
                    continue
                else:
                    continue
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                procs.append(proc)
                contenders.append(
                    Contender(name, store, f"http://127.0.0.1:{port}/api/v1/online-features", proc)
                )
        body = (request_prefix() + "1, 2]}}").encode()
        for c in contenders:
            wait_ready(c.url, c.proc, body)
        print(f"contenders: {', '.join(sorted({c.name for c in contenders}))}", flush=True)

        connections = [int(c) for c in args.connections.split(",")]
        batches = [int(b) for b in args.batches.split(",")]
        for r in range(args.rounds):
            for store in stores:
                for batch in batches:
                    for conns in connections:
                        for c in (c for c in contenders if c.store == store):
                            res = run_wrk(c.url, script, conns, batch, args.entities, args.duration)
                            c.results.setdefault((batch, conns), []).append(res)
            print(f"round {r + 1}/{args.rounds} done; load average {os.getloadavg()[0]:.1f}", flush=True)
        report(contenders, stores, batches, connections)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def feast_command(data: Path, entities: int, workdir: Path, port: int) -> tuple[list[str], Path] | None:
    """``feast serve`` over a Feast repo holding the same data, or None when Feast is not available."""
    python = FEAST_VENV / "bin" / "python"
    try:
        if not python.exists():
            print("installing Feast into benchmarks/.venv-feast ...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(FEAST_VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "feast[duckdb]"], check=True)
        repo = workdir / "feast"
        if not (repo / "online.db").exists():
            print("materializing the data into Feast's SQLite online store ...", flush=True)
            subprocess.run(
                [str(python), str(Path(__file__).resolve()), "--feast-setup", str(data), str(repo)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"skipping Feast: it could not be installed or set up ({exc}){detail[-2000:]}", flush=True)
        return None
    return [str(FEAST_VENV / "bin" / "feast"), "serve", "-p", str(port), "--no-access-log"], repo


def feast_setup(data: str, repo: Path) -> None:
    """Apply a Feast repo with the benchmark's view and materialize it (runs in Feast's venv)."""
    from datetime import timedelta

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        "offline_store:\n  type: duckdb\n"
        f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\n"
        "entity_key_serialization_version: 3\n"
    )
    entity = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="v", entities=[entity], ttl=timedelta(days=3650),
        schema=[Field(name=f, dtype=Float64) for f in FEATURES],
        source=FileSource(path=data, timestamp_field="ts"), online=True,
    )  # fmt: skip
    fs = FeatureStore(repo_path=str(repo))
    fs.apply([entity, view])
    fs.materialize(start_date=datetime(2023, 12, 1), end_date=END)


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def report(
    contenders: list[Contender], stores: list[str], batches: list[int], connections: list[int]
) -> None:
    print("\nrequests/s (2xx) / p50 ms / p99 ms (non-2xx share); medians over the rounds\n")
    names = list(dict.fromkeys(c.name for c in contenders))
    header = "| store | entities/request | connections | " + " | ".join(names) + " |"
    print(header)
    print("|" + "---|" * (3 + len(names)))
    for store in stores:
        for batch in batches:
            for conns in connections:
                cells = []
                for name in names:
                    c = next((c for c in contenders if c.name == name and c.store == store), None)
                    if c is None:
                        cells.append("—")
                        continue
                    runs = c.results[(batch, conns)]
                    shed = median_of(runs, "non2xx_share")
                    cells.append(
                        f"{median_of(runs, 'rps'):,.0f} / {median_of(runs, 'p50_us') / 1000:.2f} / "
                        f"{median_of(runs, 'p99_us') / 1000:.1f}" + (f" ({shed:.0%} non-2xx)" if shed else "")
                    )
                print(f"| {store} | {batch} | {conns} | " + " | ".join(cells) + " |")
    print()
    for store in stores:
        for batch in batches:
            by = {c.name: c.results.get((batch, 50)) for c in contenders if c.store == store}
            thin, ours = by.get("thin"), by.get("ours")
            if not thin or not ours:
                continue
            t = median_of(ours, "rps") / median_of(thin, "rps")
            p = median_of(ours, "p99_us") / median_of(thin, "p99_us")
            line = (f"{store}, {batch} entities/request, 50 connections: ours/thin throughput {t:.2f}× "
                    f"(target ≥ {TARGET_THROUGHPUT}×: {'ok' if t >= TARGET_THROUGHPUT else 'MISSED'}), "
                    f"p99 {p:.2f}× (target ≤ {TARGET_P99}×: {'ok' if p <= TARGET_P99 else 'MISSED'})")  # fmt: skip
            two = by.get("ours-2w")
            if two:
                w = median_of(two, "rps") / median_of(thin, "rps")
                line += f"; 2 workers/thin throughput {w:.2f}× (target > 1×: {'ok' if w > 1 else 'MISSED'})"
            print(line)


if __name__ == "__main__":
    main()
