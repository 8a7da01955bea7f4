"""``%%sql``, ``%%feature`` and ``%features``: thin glue over the workspace, previews,
widgets and evaluation. Arguments are checked before anything runs, so a bad line
raises ``UsageError`` with the fix and registers nothing; the work's own errors become
one-line messages in ``errors.friendly_errors``.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from .errors import friendly_errors

if TYPE_CHECKING:
    from jupyter_features.materialize import MaterializationResult

__all__ = ["FeaturesMagics"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COMMANDS = {
    "list": "%features list",
    "show": "%features show NAME",
    "export": "%features export [NAME ...]",
    "materialize": "%features materialize NAME ... [--store URL]",
    "check": "%features check MODEL|VIEW ... [--store URL] [--sample N]",
    "compact": "%features compact [NAME ...]",
    "browse": "%features browse",
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError naming the fix instead of exiting."""

    def __init__(self, prog: str, example: str) -> None:
        super().__init__(prog=prog, add_help=False, allow_abbrev=False)
        self.example = example

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}; e.g. {self.example}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(f"{self.prog}: {message or 'bad arguments'}; e.g. {self.example}")

    def parse_line(self, line: str) -> argparse.Namespace:
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"{self.prog}: cannot read the line ({exc}); close every quote") from None
        return self.parse_args(tokens)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _sql_parser() -> _Parser:
    p = _Parser("%%sql", "%%sql -o df --limit 1000 --profile")
    p.add_argument("-o", "--output", metavar="VAR", help="bind the result DataFrame to VAR")
    p.add_argument("--limit", type=_positive, metavar="N", help="return at most N rows")
    p.add_argument("--profile", action="store_true", help="show per-column statistics and histograms")
    return p


def _feature_parser() -> _Parser:
    p = _Parser("%%feature", "%%feature user_spend --entity user_id --timestamp ts --ttl 30d")
    p.add_argument("name")
    p.add_argument("--entity", required=True, metavar="K[,K2]")
    p.add_argument("--timestamp", required=True, metavar="COL")
    p.add_argument("--created", metavar="COL")
    p.add_argument("--ttl")
    p.add_argument("--windows", metavar="1h,24h,7d")
    p.add_argument("--description", default="")
    p.add_argument("--owner", default="")
    p.add_argument("--tags", default="", metavar="A,B")
    p.add_argument("--no-preview", action="store_true")
    return p


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _check_identifier(value: str, what: str, example: str) -> None:
    if not _NAME.fullmatch(value):  # match() would let "name\n" through ($ accepts a final newline)
        raise UsageError(f"{what} {value!r} is not a valid name; use letters, digits and _, e.g. {example}")


def _workspace() -> Any:
    import jupyter_features

    return jupyter_features.workspace()


def _describe_run(run: MaterializationResult) -> str:
    """One line for a materialization result."""
    return (
        f"materialized {run.view}: {run.rows_written:,} rows to {run.store} (online version {run.version}, "
        f"{run.rows:,} entities, as of {run.end.isoformat(sep=' ')})"
    )


@magics_class
class FeaturesMagics(Magics):
    """The notebook side of jupyter-features."""

    @property
    def user_ns(self) -> dict[str, Any]:
        assert self.shell is not None, "the magics are registered on a shell"
        return self.shell.user_ns

    @cell_magic
    def sql(self, line: str, cell: str) -> Any:
        """Run DuckDB SQL over the workspace's sources and the notebook's DataFrames.

        %%sql [-o VAR] [--limit N] [--profile]
        SELECT ... FROM my_source JOIN my_dataframe USING (id)

        Several statements run in order; the last one's result is shown (row count and
        time), bound to VAR with -o, and profiled with --profile.
        """
        args = _sql_parser().parse_line(line)
        if args.output is not None:
            _check_identifier(args.output, "-o", "-o df")
        if not cell.strip():
            raise UsageError("%%sql: the cell has no SQL; write a query below the %%sql line")
        from .sqlcell import run_sql_cell

        ws = _workspace()
        with friendly_errors():
            result = run_sql_cell(ws, cell, self.user_ns, limit=args.limit)
            if args.output:
                result.bound_to = args.output
                if result.frame is not None:
                    self.user_ns[args.output] = result.frame
            if args.profile and result.frame is not None:
                from jupyter_features.profile import profile

                result.profile = profile(result.frame)
        return result

    @cell_magic
    def feature(self, line: str, cell: str) -> Any:
        """Define (or redefine) a feature view from the SELECT in the cell, then preview it.

        %%feature NAME --entity K[,K2] --timestamp COL [--created COL] [--ttl 30d]
                  [--windows 1h,24h,7d] [--description "..."] [--owner WHO] [--tags a,b] [--no-preview]

        With ``--windows`` the cell is a windowed view: one SELECT keys, aggregates FROM ... GROUP BY
        keys, each aggregate × window a feature (flights_24h); the preview shows the windows slide.
        """
        args = _feature_parser().parse_line(line)
        _check_identifier(args.name, "feature view name", "%%feature user_spend ...")
        entity = _split_list(args.entity)
        if not entity:
            raise UsageError(
                "%%feature: --entity needs one or more key columns, e.g. --entity user_id or --entity user_id,merchant_id"
            )
        for key in entity:
            _check_identifier(key, "--entity key", "--entity user_id")
        if not cell.strip():
            raise UsageError(
                "%%feature: the cell has no SQL; write one SELECT over your sources below the %%feature line"
            )
        from jupyter_features.errors import TTLError
        from jupyter_features.featureview import parse_ttl

        try:
            ttl = parse_ttl(args.ttl, owner=f"%%feature {args.name}: --ttl")
        except TTLError as exc:
            raise UsageError(str(exc)) from None
        ws = _workspace()
        with friendly_errors():
            view = ws.feature_view(
                args.name, cell, entity=entity, timestamp=args.timestamp, created_timestamp=args.created or None,
                ttl=ttl, description=args.description, owner=args.owner, tags=_split_list(args.tags),
                windows=args.windows or None,
            )  # fmt: skip
            if args.no_preview:
                print(
                    f"feature view '{view.name}' defined: "
                    + ", ".join(f"{n} ({t})" for n, t in view.schema.items())
                )
                return None
            return view.preview()

    @line_magic
    def features(self, line: str) -> Any:
        """Work with the session's feature views.

        %features list                               the views (this session and the registry)
        %features show NAME                          a view's preview
        %features export [NAME ...]                  export to the registry (all views by default)
        %features materialize NAME ... [--store URL] write the latest values to an online store
        %features check MODEL|VIEW ... [--store URL] [--sample N]
                                                     does the store serve what an offline recompute
                                                     says; is a model's every feature online and fresh
        %features compact [NAME ...]                 merge push-log files into one per view
        %features browse                             the feature browser
        """
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%features: cannot read the line ({exc}); close every quote") from None
        usage = "; ".join(_COMMANDS.values())
        if not tokens:
            raise UsageError(f"%features needs a command: {usage}")
        command, rest = tokens[0], tokens[1:]
        if command not in _COMMANDS:
            from jupyter_features.errors import did_you_mean

            raise UsageError(
                f"%features: unknown command {command!r}{did_you_mean(command, _COMMANDS)}; use {usage}"
            )
        handler = getattr(self, f"_features_{command}")
        return handler(rest)

    # -- %features subcommands -----------------------------------------------------------
    def _no_args(self, command: str, rest: Sequence[str]) -> None:
        if rest:
            raise UsageError(
                f"%features {command} takes no arguments, got {' '.join(rest)}; write {_COMMANDS[command]}"
            )

    def _names(self, command: str, rest: Sequence[str], *, at_least: int) -> list[str]:
        if len(rest) < at_least:
            raise UsageError(f"%features {command} needs a feature view name; write {_COMMANDS[command]}")
        for name in rest:
            if name.startswith("-"):
                raise UsageError(f"%features {command}: unknown option {name}; write {_COMMANDS[command]}")
            _check_identifier(name, "feature view name", _COMMANDS[command])
        return list(rest)

    def _features_list(self, rest: Sequence[str]) -> Any:
        self._no_args("list", rest)
        import pandas as pd

        from jupyter_features.featureview import format_ttl
        from jupyter_features.widgets.browser import catalog

        with friendly_errors():
            entries = catalog(_workspace())
        if not entries:
            print("no feature views yet; define one with %%feature NAME --entity KEY --timestamp COL")
            return None
        return pd.DataFrame(
            [
                {"view": e.name, "version": "" if e.view.version is None else e.view.version, "entity": ", ".join(e.view.entity),
                 "timestamp": e.view.timestamp, "ttl": format_ttl(e.view.ttl) or "",
                 "windows": ", ".join(e.view.windows),
                 "features": ", ".join(e.view.feature_names), "owner": e.view.owner,
                 "tags": ", ".join(e.view.tags), "where": e.origin}
                for e in entries
            ]
        )  # fmt: skip

    def _features_show(self, rest: Sequence[str]) -> Any:
        if len(rest) != 1:
            self._too_many("show", rest)
        (name,) = self._names("show", rest, at_least=1)
        with friendly_errors():
            ws = _workspace()
            return ws.preview(ws.get_view(name))

    def _too_many(self, command: str, rest: Sequence[str]) -> NoReturn:
        if not rest:
            raise UsageError(f"%features {command} needs a feature view name; write {_COMMANDS[command]}")
        raise UsageError(f"%features {command} takes one name, got {len(rest)}; write {_COMMANDS[command]}")

    def _features_export(self, rest: Sequence[str]) -> None:
        names = self._names("export", rest, at_least=0)
        from jupyter_features.widgets.export import export_views

        with friendly_errors():
            exported = export_views(_workspace(), names or None)
        for e in exported:
            print(f"exported {e.name}" + (f" → version {e.version}" if e.version is not None else ""))

    def _features_materialize(self, rest: Sequence[str]) -> Any:
        store = None
        names_part = list(rest)
        if "--store" in names_part:
            i = names_part.index("--store")
            if i + 1 >= len(names_part):
                raise UsageError(
                    "%features materialize: --store needs a URL, e.g. --store sqlite:///online.db or redis://localhost:6379/0"
                )
            store = names_part[i + 1]
            del names_part[i : i + 2]
        names = self._names("materialize", names_part, at_least=1)
        ws = _workspace()
        with friendly_errors():
            results = ws.materialize(names, store=store)
        for run in results.values():
            print(_describe_run(run))
        return None

    def _features_check(self, rest: Sequence[str]) -> Any:
        p = _Parser("%features check", _COMMANDS["check"])
        p.add_argument("names", nargs="*")
        p.add_argument("--store")
        p.add_argument("--sample", type=_positive, metavar="N")
        args = p.parse_args(list(rest))
        if not args.names:
            raise UsageError(
                f"%features check needs a model or feature view name; write {_COMMANDS['check']}"
            )
        for name in args.names:
            _check_identifier(name.partition("@")[0], "model or feature view name", _COMMANDS["check"])
        if args.sample == 0:
            raise UsageError(f"%features check: --sample needs a positive number; write {_COMMANDS['check']}")
        from jupyter_features.health import check

        with friendly_errors():
            return check(_workspace(), args.names, store=args.store, sample=args.sample)

    def _features_compact(self, rest: Sequence[str]) -> None:
        names: list[str | None] = [*self._names("compact", rest, at_least=0)] or [None]
        with friendly_errors():
            ws = _workspace()
            results = [r for name in names for r in ws.compact_pushes(name)]
        for r in results:
            print(f"{r.view}: {r.files_before:,} push-log files -> {r.files_after:,} ({r.rows:,} rows)")

    def _features_browse(self, rest: Sequence[str]) -> Any:
        self._no_args("browse", rest)
        from jupyter_features.widgets.browser import FeatureBrowser

        with friendly_errors():
            return FeatureBrowser(_workspace())
