"""`jupyter-features registry serve | export | import`: thin glue over the server and the client."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

__all__ = ["add_cli", "serve"]

DEFAULT_PORT = 8765


def serve(store: str, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token_file: str | None = None,
          log_level: str = "info", workers: int = 1, fast_reads: bool = True) -> None:  # fmt: skip
    """Run the registry server in the foreground until interrupted.

    ``workers`` > 1 runs that many processes on one port, each with its own connections
    to the store; what one of them writes, every other answers from its next request on.
    """
    import functools

    import uvicorn

    from registry_client.sql import SQLRegistry

    from ..tokens import is_loopback, load_tokens
    from .app import create_app

    if workers < 1:
        raise ConfigError(f"--workers {workers}: run at least 1 worker")
    tokens = load_tokens(token_file) if token_file else None
    if tokens is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without tokens: anyone could write to the registry; "
            "pass --token-file FILE (lines 'TOKEN read|write|admin [NAME]') or use --host 127.0.0.1"
        )
    options: dict[str, Any] = dict(host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    auth = f"{len(tokens)} token(s)" if tokens else "no token file: open access, bound to loopback only"
    if workers == 1:
        app = create_app(store, tokens, fast_reads=fast_reads)
        _announce(host, port, app.state.store_url, auth, workers)
        uvicorn.run(app, **options)
        return
    with SQLRegistry(store) as registry:  # migrate once, and fail here rather than in every worker
        shown = registry.url
    _announce(host, port, shown, auth, workers)
    from uvicorn.supervisors import Multiprocess

    factory = functools.partial(create_app, store, tokens, fast_reads=fast_reads)
    config = uvicorn.Config(factory, factory=True, workers=workers, **options)
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def _announce(host: str, port: int, store: str, auth: str, workers: int) -> None:
    print(f"jupyter-features registry on http://{host}:{port} (store {store}; {workers} worker(s); {auth}); "
          f"API under /api/v1, docs at /docs", flush=True)  # fmt: skip


def add_cli(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("registry", help="run or use a feature registry")
    commands = p.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    s = commands.add_parser("serve", help="serve a registry over HTTP (REST under /api/v1, docs at /docs)")
    s.add_argument(
        "--store", help="sqlite:///path.db or postgresql://... (default: the workspace's registry)"
    )
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    s.add_argument(
        "--token-file", help="file of 'TOKEN read|write|admin [NAME]' lines; without it, loopback only"
    )
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.add_argument(
        "--workers", type=int, default=1, help="server processes on the port (default: %(default)s)"
    )
    s.add_argument(
        "--framework-reads", action="store_true",
        help="answer searches and view reads through the FastAPI routes, without the kept answers "
        "(the same answers, slower: for comparison)",
    )  # fmt: skip
    for action, text in (("export", "write one YAML file per view into FOLDER"),
                         ("import", "load a folder of YAML files into the registry")):  # fmt: skip
        c = commands.add_parser(action, help=text)
        c.add_argument("folder")
        c.add_argument("--registry", help="registry URL (default: the workspace's)")
        c.add_argument("--token", help="bearer token for a registry server")

    def handle(args: argparse.Namespace) -> int:
        from ..config import load_settings

        settings = load_settings(".")
        if args.registry_command == "serve":
            store = args.store or settings.registry_url
            serve(store, host=args.host, port=args.port, token_file=args.token_file, log_level=args.log_level,
                  workers=args.workers, fast_reads=not args.framework_reads)  # fmt: skip
            return 0
        import registry_client

        registry = registry_client.connect(
            args.registry or settings.registry_url, token=args.token or settings.token
        )
        try:
            if args.registry_command == "export":
                paths = registry.export_yaml(args.folder)
                print(f"wrote {len(paths)} feature view file(s) to {args.folder}")
            else:
                records = registry.import_yaml(args.folder)
                for record in records:
                    print(f"{record.ref}  {record.hash[:12]}  {record.created_by}")
        finally:
            registry.close()
        return 0

    return handle


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["registry", *sys.argv[1:]]))
