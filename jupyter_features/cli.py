"""The `jupyter-features` command: thin glue over the engine.

The servers' subcommands live beside the servers; this module holds the others, parses
arguments and turns FeaturesError into a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import runpy
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import FeaturesError
from .version import __version__

if TYPE_CHECKING:
    from .workspace import Workspace

__all__ = ["main", "COMMANDS", "load_sources"]

#: subcommand → "module:function" that adds its arguments to a subparser and returns
#: the handler. Adding a command is adding a line here.
COMMANDS: dict[str, str] = {
    "demo": "jupyter_features.demo:add_cli",
    "registry": "jupyter_features.registry_server.cli:add_cli",
    "materialize": "jupyter_features.cli:add_materialize_cli",
    "check": "jupyter_features.cli:add_check_cli",
    "compact-pushes": "jupyter_features.cli:add_compact_cli",
    "serve": "jupyter_features.feature_server:add_cli",
}


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(prog="jupyter-features", description="A notebook-first feature store.")
    parser.add_argument("--version", action="version", version=f"jupyter-features {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {}
    for name, target in COMMANDS.items():
        module_name, func = target.split(":")
        handlers[name] = getattr(importlib.import_module(module_name), func)(sub)
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    try:
        return handlers[args.command](args)
    except FeaturesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def load_sources(ws: Workspace, path: str) -> None:
    """Run a Python file with ``ws`` in scope, to register sources (and define views)."""
    runpy.run_path(path, init_globals={"ws": ws, "workspace": ws})


def add_materialize_cli(sub: Any) -> Callable[[argparse.Namespace], int]:
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


def add_check_cli(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser(
        "check",
        help="check that the online store serves what an offline recompute says, or that a model is ready",
        description=(
            "Check the online store: for a model the registry knows (its recorded usage), whether every view "
            "it uses is online at the version it used, fresh and complete; for a feature view, whether every "
            "value the store serves equals an offline recompute of it. Exits 0 when every check is ok, 1 when "
            "one is not, 2 on an error: fit for CI and cron."
        ),
    )
    p.add_argument(
        "names", nargs="+", metavar="MODEL|VIEW", help="models and feature views (NAME or NAME@VERSION)"
    )
    p.add_argument("--store", help="online store URL (default: the workspace's)")
    p.add_argument("--dir", default=".", help="workspace folder holding features.toml (default: %(default)s)")
    p.add_argument("--registry", help="registry URL (default: the workspace's)")
    p.add_argument(
        "--sources-from",
        metavar="FILE.py",
        help="Python file that registers the sources: ws.register_source(...)",
    )
    p.add_argument("--sample", type=_positive_int, metavar="N", help="compare N random entities per view")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(args: argparse.Namespace) -> int:
        from .health import check
        from .workspace import Workspace

        ws = Workspace(args.dir, registry=args.registry, online_store=args.store)
        if args.sources_from:
            load_sources(ws, args.sources_from)
        try:
            reports = check(ws, args.names, sample=args.sample, progress=not args.no_progress)
        finally:
            ws.close()
        for line in reports.lines():
            print(line)
        return 0 if reports.ok else 1

    return handle


def add_compact_cli(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser(
        "compact-pushes",
        help="merge each view's push-log files into one",
        description=(
            "Merge the push log's files (one per push, under .jupyter_features/pushes/<view>/) into one file "
            "per view. Training frames and runs read the same rows before and after."
        ),
    )
    p.add_argument("views", nargs="*", metavar="VIEW", help="feature views (default: every view with pushes)")
    p.add_argument("--dir", default=".", help="workspace folder holding features.toml (default: %(default)s)")
    p.add_argument("--registry", help="registry URL (default: the workspace's)")

    def handle(args: argparse.Namespace) -> int:
        from .workspace import Workspace

        ws = Workspace(args.dir, registry=args.registry)
        try:
            results = [r for v in args.views or [None] for r in ws.compact_pushes(v)]
        finally:
            ws.close()
        for r in results:
            print(f"{r.view}: {r.files_before:,} push-log files -> {r.files_after:,} ({r.rows:,} rows)")
        return 0

    return handle


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of entities")
    return value


if __name__ == "__main__":
    sys.exit(main())
