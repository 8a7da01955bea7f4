"""Registry server read path under load: search and view reads driven by wrk.

    python benchmarks/registry_server_load.py [--views 1000] [--features 20] [--duration 5]
                                              [--connections 1,10,50] [--postgres URL]

Fills a registry with the views of benchmarks/registry.py (SQLite, and PostgreSQL in a
throwaway schema with ``--postgres``), starts `jupyter-features registry serve` with a
token file, then drives it with ``wrk`` (``apt-get install wrk``): each request is one
of a rotating list of searches (text, facets, usage) or one view read (latest version,
by name), at each connection count. Target: p99 under 50 ms at 50 connections.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
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


def run_wrk(
    url: str, paths: list[str], token: str, connections: int, seconds: int, folder: Path
) -> dict[str, Any]:
    script = folder / "paths.lua"
    script.write_text(WRK_SCRIPT.replace("{PATHS}", "{" + ", ".join(json.dumps(p) for p in paths) + "}"))
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "-s", str(script),
           url, "--", token]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(
        next(ln for ln in out.splitlines() if ln.startswith(MARK))[len(MARK) :]
    )
    result["rps"] = (result["requests"] - result["non2xx"]) / (result["duration_us"] / 1e6)
    return result


def run_store(label: str, store_url: str, folder: Path, args: argparse.Namespace) -> list[str]:
    sys.path.insert(0, str(HERE))
    from registry import TOKEN, populate

    from jupyter_features.registry_server.process import start_server

    populate(store_url, args.views, args.features)
    tokens = folder / f"tokens-{label}.txt"
    tokens.write_text(f"{TOKEN} admin\n")
    rows = []
    with start_server(store_url, token_file=tokens, log=folder / f"server-{label}.log") as server:
        for kind, paths in workloads(args.views).items():
            run_wrk(server.url, paths, TOKEN, 4, 1, folder)  # warm-up
            for conns in [int(c) for c in args.connections.split(",")]:
                r = run_wrk(server.url, paths, TOKEN, conns, args.duration, folder)
                ok = "" if conns != 50 else (" ok" if r["p99_us"] / 1000 < TARGET_P99_MS else " MISSED")
                rows.append(
                    f"| {label} | {kind} | {conns} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.1f} | "
                    f"{r['p99_us'] / 1000:.1f}{ok} | {r['non2xx'] + r['socket_errors']} |"
                )
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per cell")
    parser.add_argument("--connections", default="1,10,50")
    parser.add_argument("--postgres", help="also run against this PostgreSQL (a throwaway schema)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install it (Debian/Ubuntu: apt-get install wrk)")
    print(
        f"{args.views:,} views × {args.features} features; p99 target < {TARGET_P99_MS:.0f} ms at 50 connections"
    )
    print(
        "| store | requests | connections | requests/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|"
    )
    with tempfile.TemporaryDirectory(prefix="jf-registry-load-") as tmp:
        folder = Path(tmp)
        run_store("sqlite", f"sqlite:///{folder}/registry.db", folder, args)
        if args.postgres:
            schema = "jfload_" + uuid.uuid4().hex[:8]
            sep = "&" if "?" in args.postgres else "?"
            try:
                run_store("postgresql", f"{args.postgres}{sep}schema={schema}", folder, args)
            finally:
                from sqlalchemy import create_engine, text

                engine = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1))
                with engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                engine.dispose()


if __name__ == "__main__":
    main()
