"""The `jupyter-features` command: thin glue over the engine.

Each subcommand lives beside the code it drives; this module only parses arguments
and turns FeaturesError into a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from .errors import FeaturesError

__all__ = ["main", "COMMANDS"]

#: subcommand → "module:function" that adds its arguments to a subparser and returns
#: the handler. Adding a command is adding a line here.
COMMANDS: dict[str, str] = {
    "demo": "jupyter_features.demo:add_cli",
    "registry": "jupyter_features.registry_server.cli:add_cli",
    "materialize": "jupyter_features.materialize:add_cli",
    "serve": "jupyter_features.feature_server:add_cli",
}


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(prog="jupyter-features", description="A notebook-first feature store.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"jupyter-features {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {}
    for name, target in COMMANDS.items():
        module_name, func = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # a part not installed in this build
        handlers[name] = getattr(module, func)(sub)
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


if __name__ == "__main__":
    sys.exit(main())
