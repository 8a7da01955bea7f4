"""Registry server read path under load: searches and view reads driven by wrk, side by side.

    python benchmarks/registry_server_load.py [--views 1000] [--features 20] [--duration 5]
                                              [--rounds 3] [--connections 1,10,50,200]
                                              [--postgres URL] [--contenders before,ours,ours-2w,floor]

Fills a registry with the views of benchmarks/registry.py (SQLite, and PostgreSQL in a
throwaway schema with ``--postgres``), starts every contender at once, each on its own
port, then drives them with ``wrk`` (``apt-get install wrk``), one contender after the
other for each (store, workload, connections) and round after round, so that machine
noise hits them alike. A workload is a rotating list of 200 request paths: searches
(text, facets, usage; 7 KB to 870 KB of JSON, 110 KB on average) or view reads (the
latest version of a view by name, 7 KB).

- ``before``: ``jupyter-features registry serve --framework-reads``: every read through
  the FastAPI routes (the read path before the kept answers; one worker);
- ``ours``: ``jupyter-features registry serve`` (one worker), ``ours-2w`` with ``--workers 2``;
- ``floor``: the same answers from a dict in the thinnest ASGI app on uvicorn (no token,
  no database, no framework; one worker): what sending these bytes over HTTP from Python
  costs on this machine at all.

Reported per cell: requests/s (2xx only), p50 and p99 latency from wrk and the CPU time
the contender's processes spent per request (PostgreSQL's own not counted; steadier than
the rest when other work shares the machine), medians over the rounds, and the load
average of the machine when the cells ran. Target: p99 under 50 ms at 50 connections, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
TARGET_P99_MS = 50.0
MARK = "@@WRK "

WRK_SCRIPT = r"""
local paths = {PATHS}
local i = 0
function init(args)
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  i = math.random(1, #paths)
end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('@@WRK {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""

# The floor: the registry's answers, fetched once, served from a dict by a bare ASGI app.
FLOOR_SERVER = r"""
import json, sys
import uvicorn

answers = {k.encode(): v.encode() for k, v in json.load(open(sys.argv[1])).items()}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    query = scope["query_string"]
    body = answers.get(scope["raw_path"] + (b"?" + query if query else b""))
    status = 200 if body is not None else 404
    body = body or b"{}"
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


@dataclass
class Contender:
    name: str
    store: str  # "sqlite" or "postgresql"
    url: str
    proc: subprocess.Popen[bytes]
    results: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)


def workloads(n_views: int) -> dict[str, list[str]]:
    sys.path.insert(0, str(HERE))
    from registry import ENTITIES, TAGS, TEAMS

    rng = random.Random(3)
    search = []
    for k in range(200):
        params: list[dict[str, Any]] = [
            {"q": f"domain{k % 97}"},
            {"q": f"domain{k % 97} {TAGS[k % len(TAGS)]}"},
            {"tag": TAGS[k % len(TAGS)], "owner": TEAMS[k % len(TEAMS)]},
            {"entity": ENTITIES[k % 5], "type": "int64", "q": f"domain{k % 97}"},
            {"used_by": f"model_{k % 20}"},
        ]
        search.append("/api/v1/views?" + urlencode(params[k % len(params)]))
    views = [f"/api/v1/views/view_{rng.randrange(n_views):05d}" for _ in range(200)]
    return {"search": search, "view read": views}


def run_wrk(url: str, script: Path, token: str, connections: int, seconds: float) -> dict[str, Any]:
    threads = 1 if connections < 100 else 2
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
           "--timeout", "10s", "-s", str(script), url, "--", token]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(
        next(ln for ln in out.splitlines() if ln.startswith(MARK))[len(MARK) :]
    )
    result["rps"] = (result["requests"] - result["non2xx"]) / (result["duration_us"] / 1e6)
    return result


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(used.get(p, 0.0) for p in tree)


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], token: str, path: str, timeout: float = 120.0
) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {url} exited with status {proc.returncode}")
        try:
            response = httpx.get(url + path, headers={"Authorization": f"Bearer {token}"})
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server {url} did not start within {timeout:.0f} s")


def start(cmd: list[str], procs: list[subprocess.Popen[bytes]], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    procs.append(proc)
    return proc


def start_contenders(
    store: str, store_url: str, names: list[str], folder: Path, token: str, paths: list[str],
    procs: list[subprocess.Popen[bytes]],
) -> list[Contender]:  # fmt: skip
    from jupyter_features.registry_server.process import free_port

    tokens = folder / "tokens.txt"
    tokens.write_text(f"{token} read\n")
    contenders = []
    for name in (n for n in names if n != "floor"):
        port = free_port()
        cmd = [sys.executable, "-m", "jupyter_features.cli", "registry", "serve", "--store", store_url,
               "--port", str(port), "--token-file", str(tokens), "--log-level", "warning"]  # fmt: skip
        if name == "before":
            cmd.append("--framework-reads")
        elif name.startswith("ours-"):
            cmd += ["--workers", name.partition("-")[2].rstrip("w")]
        url = f"http://127.0.0.1:{port}"
        contenders.append(Contender(name, store, url, start(cmd, procs, folder / f"{store}-{name}.log")))
    for c in contenders:
        wait_ready(c.url, c.proc, token, paths[0])
    if "floor" in names:
        import httpx

        source = next(c for c in contenders if c.name.startswith("ours") or c.name == "before")
        with httpx.Client(base_url=source.url, headers={"Authorization": f"Bearer {token}"}) as client:
            answers = {p: client.get(p).raise_for_status().text for p in paths}
        (folder / f"{store}-answers.json").write_text(json.dumps(answers))
        (folder / "floor_server.py").write_text(FLOOR_SERVER)
        port = free_port()
        cmd = [
            sys.executable,
            str(folder / "floor_server.py"),
            str(folder / f"{store}-answers.json"),
            str(port),
        ]
        floor = Contender(
            "floor", store, f"http://127.0.0.1:{port}", start(cmd, procs, folder / f"{store}-floor.log")
        )
        wait_ready(floor.url, floor.proc, token, paths[0])
        contenders.append(floor)
    order = {name: i for i, name in enumerate(names)}
    return sorted(contenders, key=lambda c: order[c.name])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="1,10,50,200")
    parser.add_argument("--workloads", default="search,view read")
    parser.add_argument("--contenders", default="before,ours,ours-2w,floor")
    parser.add_argument("--postgres", help="also run against this PostgreSQL (a throwaway schema)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install it (Debian/Ubuntu: apt-get install wrk)")
    run(args)


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from registry import TOKEN, populate

    folder = Path(tempfile.mkdtemp(prefix="jf-registry-load-"))
    procs: list[subprocess.Popen[bytes]] = []
    schema = "jfload_" + uuid.uuid4().hex[:8]
    stores = {"sqlite": f"sqlite:///{folder}/registry.db"}
    if args.postgres:
        stores["postgresql"] = args.postgres + ("&" if "?" in args.postgres else "?") + f"schema={schema}"
    names = args.contenders.split(",")
    kinds = args.workloads.split(",")
    connections = [int(c) for c in args.connections.split(",")]
    paths = workloads(args.views)
    try:
        contenders: list[Contender] = []
        for store, url in stores.items():
            populate(url, args.views, args.features)
            contenders += start_contenders(
                store, url, names, folder, TOKEN, [p for k in kinds for p in paths[k]], procs
            )
        print(f"{args.views:,} views × {args.features} features; python {sys.version.split()[0]}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)  # fmt: skip
        loads: dict[tuple[str, str, int], list[float]] = {}
        for r in range(args.rounds):
            for store in stores:
                for kind in kinds:
                    script = folder / f"{kind.replace(' ', '_')}.lua"
                    script.write_text(
                        WRK_SCRIPT.replace(
                            "{PATHS}", "{" + ", ".join(json.dumps(p) for p in paths[kind]) + "}"
                        )
                    )
                    for conns in connections:
                        for c in (c for c in contenders if c.store == store):
                            run_wrk(c.url, script, TOKEN, conns, 1)  # warm-up: connections, answers
                            loads.setdefault((store, kind, conns), []).append(os.getloadavg()[0])
                            cpu = tree_cpu(c.proc.pid)
                            result = run_wrk(c.url, script, TOKEN, conns, args.duration)
                            result["cpu_us"] = (tree_cpu(c.proc.pid) - cpu) * 1e6 / max(1, result["requests"])
                            c.results.setdefault((kind, conns), []).append(result)
            print(f"round {r + 1}/{args.rounds} done; load average {os.getloadavg()[0]:.1f}", flush=True)
        report(contenders, list(stores), kinds, connections, loads)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.postgres:
            from sqlalchemy import create_engine, text

            engine = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1))
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def report(
    contenders: list[Contender], stores: list[str], kinds: list[str], connections: list[int],
    loads: dict[tuple[str, str, int], list[float]],
) -> None:  # fmt: skip
    print(
        "\nrequests/s (2xx) / p50 ms / p99 ms / CPU µs per request (errors); medians over the rounds; "
        "load average: min–max over the cells\n"
    )
    names = list(dict.fromkeys(c.name for c in contenders))
    print("| store | requests | connections | " + " | ".join(names) + " | load average |")
    print("|" + "---|" * (4 + len(names)))
    for store in stores:
        for kind in kinds:
            for conns in connections:
                cells = []
                for name in names:
                    c = next((c for c in contenders if c.name == name and c.store == store), None)
                    if c is None:
                        cells.append("—")
                        continue
                    runs = c.results[(kind, conns)]
                    errors = sum(r["non2xx"] + r["socket_errors"] for r in runs)
                    cells.append(
                        f"{median_of(runs, 'rps'):,.0f} / {median_of(runs, 'p50_us') / 1000:.1f} / "
                        f"{median_of(runs, 'p99_us') / 1000:.0f} / {median_of(runs, 'cpu_us'):.0f}"
                        + (f" ({errors} errors)" if errors else "")
                    )
                load = loads[(store, kind, conns)]
                print(
                    f"| {store} | {kind} | {conns} | "
                    + " | ".join(cells)
                    + f" | {min(load):.1f}–{max(load):.1f} |"
                )
    print()
    for store in stores:
        for kind in kinds:
            by = {c.name: c.results.get((kind, 50)) for c in contenders if c.store == store}
            parts = []
            for name, runs in by.items():
                if runs:
                    p99 = median_of(runs, "p99_us") / 1000
                    verdict = (
                        "" if name in ("before", "floor") else (" ok" if p99 < TARGET_P99_MS else " MISSED")
                    )
                    parts.append(f"{name} p99 {p99:.0f} ms{verdict}")
            print(
                f"{store}, {kind}, 50 connections (target p99 < {TARGET_P99_MS:.0f} ms): " + "; ".join(parts)
            )


if __name__ == "__main__":
    main()
