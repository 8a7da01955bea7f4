"""`jupyter-features serve`: run the feature server, in one process or several on one port."""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

__all__ = ["serve", "add_cli"]

#: Seconds a stopping server gives requests in flight to finish (SIGTERM, Ctrl-C).
GRACEFUL_SECONDS = 30


def serve(
    store_url: str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int = 1,
    token_file: str | None = None,
    max_in_flight: int | None = None,
    max_body: int | None = None,
    access_log: bool = False,
) -> None:
    """Run the feature server in the foreground until SIGTERM or Ctrl-C; requests in flight finish.

    ``workers`` > 1 runs that many processes on one port, each with its own store
    connection (SQLite read-only, a Redis pool); metrics are summed over all of them.
    """
    import uvicorn

    from ..online import open_store
    from ..online.layout import redact
    from ..tokens import is_loopback, load_tokens
    from .app import DEFAULT_PORT, MAX_BODY, MAX_IN_FLIGHT, create_app, read_only

    if workers < 1:
        raise ConfigError(f"--workers {workers}: run at least 1 worker")
    tokens = load_tokens(token_file) if token_file else None
    if tokens is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve features on {host} without tokens: anyone who can reach it could read them; "
            "pass --token-file FILE (lines 'TOKEN read [NAME]') or use --host 127.0.0.1"
        )
    store = open_store(read_only(store_url))  # fail now, clearly, rather than in every request
    try:
        views = store.views()
    finally:
        store.close()
    factory = functools.partial(
        create_app,
        store_url,
        tokens,
        max_body=max_body or MAX_BODY,
        max_in_flight=max_in_flight or MAX_IN_FLIGHT,
        log_requests=access_log,
    )
    port = DEFAULT_PORT if port is None else port
    auth = f"{len(tokens)} token(s)" if tokens else "no token file: open access, bound to loopback only"
    print(
        f"jupyter-features feature server on http://{host}:{port} (store {redact(store_url).split('?', 1)[0]}, "
        f"{len(views)} view(s); {workers} worker(s); {auth}); POST /api/v1/online-features, "
        "GET /health, /metrics, docs at /docs",
        flush=True,
    )
    options: dict[str, Any] = dict(
        host=host, port=port, log_level="warning", access_log=False, server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS, lifespan="on",
    )  # fmt: skip
    if workers == 1:
        uvicorn.Server(uvicorn.Config(factory, factory=True, **options)).run()
        return
    from uvicorn.supervisors import Multiprocess

    from .metrics import multiprocess_dir

    own_dir = None
    if multiprocess_dir() is None:  # each worker writes its metrics here; /metrics sums them
        own_dir = tempfile.mkdtemp(prefix="jf-serve-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        config = uvicorn.Config(factory, factory=True, workers=workers, **options)
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def add_cli(sub: Any) -> Callable[[argparse.Namespace], int]:
    from .app import DEFAULT_PORT, MAX_BODY, MAX_IN_FLIGHT

    p = sub.add_parser("serve", help="serve online features over HTTP (POST /api/v1/online-features)")
    p.add_argument("--store", help="online store URL (default: the workspace's, from features.toml)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    p.add_argument(
        "--workers", type=int, default=1, help="server processes on the port (default: %(default)s)"
    )
    p.add_argument(
        "--token-file",
        help="file of 'TOKEN read|write|admin [NAME]' lines; reads need 'read'; required off loopback",
    )
    p.add_argument(
        "--max-in-flight", type=int, default=MAX_IN_FLIGHT,
        help="reads one worker answers at once; more get 503 with Retry-After (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-body", type=int, default=MAX_BODY, help="request body limit, bytes (default: %(default)s)"
    )
    p.add_argument("--access-log", action="store_true", help="one JSON line per request on stdout")

    def handle(args: argparse.Namespace) -> int:
        from ..config import load_settings

        serve(
            args.store or load_settings(".").online_store_url,
            host=args.host, port=args.port, workers=args.workers, token_file=args.token_file,
            max_in_flight=args.max_in_flight, max_body=args.max_body, access_log=args.access_log,
        )  # fmt: skip
        return 0

    return handle
