"""Run a ``%%sql`` cell: its statements in order on the workspace's DuckDB connection, with
the notebook's DataFrames it names registered for the duration; the last result comes back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import MagicError, sql_error

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_features.profile import Profile
    from jupyter_features.workspace import Workspace

__all__ = ["QueryResult", "run_sql_cell", "frames_named"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FRAME_TYPES = {("pandas", "DataFrame"), ("pyarrow", "Table"), ("polars", "DataFrame")}


def _is_frame(value: Any) -> bool:
    cls = type(value)
    return (cls.__module__.split(".")[0], cls.__name__) in _FRAME_TYPES


def frames_named(sql: str, namespace: Mapping[str, Any], taken: set[str]) -> dict[str, Any]:
    """DataFrames of ``namespace`` whose names appear in ``sql`` and are not ``taken`` tables."""
    lowered = {t.lower() for t in taken}
    out = {}
    for name in dict.fromkeys(_IDENT.findall(sql)):
        if name.startswith("_") or name.lower() in lowered:
            continue
        value = namespace.get(name)
        if value is not None and _is_frame(value):
            out[name] = value
    return out


@dataclass
class QueryResult:
    """The last result of a ``%%sql`` cell; renders as a compact table."""

    frame: pd.DataFrame | None
    seconds: float
    statements: int
    kind: str  # the last statement's type, e.g. SELECT or CREATE
    limited: bool = False
    bound_to: str | None = None
    profile: Profile | None = None
    frames: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return 0 if self.frame is None else len(self.frame)

    def meta(self) -> str:
        parts = []
        if self.frame is not None:
            more = "+" if self.limited else ""
            parts.append(f"{self.rows:,}{more} rows × {self.frame.shape[1]} columns")
        else:
            parts.append(f"{self.kind} done")
        if self.statements > 1:
            parts.append(f"{self.statements} statements")
        parts.append(self._fmt_seconds())
        if self.bound_to:
            parts.append(
                f"bound to {self.bound_to}" if self.frame is not None else f"nothing bound to {self.bound_to}"
            )
        if self.frames:
            parts.append("DataFrames: " + ", ".join(self.frames))
        return " · ".join(parts)

    def _fmt_seconds(self) -> str:
        from jupyter_features.render import fmt_seconds

        return fmt_seconds(self.seconds)

    def _repr_html_(self) -> str:
        from jupyter_features import render

        table = render.frame_table(self.frame) if self.frame is not None and len(self.frame.columns) else ""
        limited = " (stopped at --limit)" if self.limited else ""
        return render.wrap(table, f'<div class="meta">{render.esc(self.meta())}{limited}</div>')

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._repr_html_()))
        if self.profile is not None:
            display(self.profile)

    def __repr__(self) -> str:
        if self.frame is None:
            return f"QueryResult({self.meta()})"
        return f"{self.frame!r}\n[{self.meta()}]"


def _statement_starts(cell: str, queries: list[str]) -> list[int]:
    starts, pos = [], 0
    for q in queries:
        found = cell.find(q, pos)
        start = found if found >= 0 else pos
        starts.append(start)
        pos = start + len(q) if found >= 0 else pos
    return starts


def run_sql_cell(
    ws: Workspace, cell: str, namespace: Mapping[str, Any], *, limit: int | None = None
) -> QueryResult:
    """Run every statement of ``cell``; return the last one's result (``limit`` rows at most)."""
    import duckdb

    engine = ws.duckdb
    con = engine.con
    with engine.lock:
        frames = frames_named(cell, namespace, engine.tables() | set(ws.sources))
        registered: list[str] = []
        try:
            for name, frame in frames.items():
                con.register(name, frame)
                registered.append(name)
            try:
                statements = con.extract_statements(cell)
            except duckdb.Error as exc:
                raise sql_error(exc, cell, 0) from None
            queries = [s.query for s in statements]
            if not queries:
                raise MagicError("the %%sql cell holds no SQL statement; write a query below the %%sql line")
            starts = _statement_starts(cell, queries)
            started = time.perf_counter()
            result: pd.DataFrame | None = None
            limited = False
            kind = "SQL"
            for i, query in enumerate(queries):
                kind = str(statements[i].type).rsplit(".", 1)[-1]
                try:
                    if i < len(queries) - 1:
                        con.execute(query).fetchall()  # read to the end: the connection is shared
                        continue
                    rel = con.sql(query)
                    if rel is not None:
                        result = (rel.limit(limit + 1) if limit is not None else rel).df()
                        if limit is not None and len(result) > limit:
                            result, limited = result.iloc[:limit], True
                except duckdb.Error as exc:
                    raise sql_error(exc, query, cell.count("\n", 0, starts[i])) from None
            seconds = time.perf_counter() - started
        finally:
            for name in registered:
                try:
                    con.unregister(name)
                except duckdb.Error:
                    pass
    return QueryResult(
        frame=result,
        seconds=seconds,
        statements=len(queries),
        kind=kind,
        limited=limited,
        frames=list(frames),
    )
