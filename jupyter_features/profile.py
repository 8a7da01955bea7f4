"""Column profiles: nulls, distinct values, min/max/mean, top values and histograms.

Computed in DuckDB (a handful of aggregate queries over one temporary table), so a
profile of a large result or a feature view costs seconds, not a pandas round trip.
``%%sql --profile`` and feature view previews both use it.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import render
from .schema import feature_type_of
from .sqltext import quote

if TYPE_CHECKING:
    import altair as alt
    import duckdb
    import pandas as pd

__all__ = ["ColumnProfile", "Profile", "profile", "profile_query", "profile_table", "first_row"]

_OTHER_PREFIXES = ("STRUCT", "MAP", "UNION", "ARRAY", "LIST")


def first_row(con: duckdb.DuckDBPyConnection, query: str) -> tuple[Any, ...] | None:
    """The first row of ``query``, reading the result to its end: a half-read result would
    block every later statement on a shared connection."""
    rows = con.execute(query).fetchall()
    return rows[0] if rows else None


def kind_of_feature_type(ftype: str) -> str:
    """How a feature of type ``ftype`` is profiled: numeric, timestamp, bool or text."""
    return {"int64": "numeric", "float64": "numeric", "timestamp": "timestamp", "bool": "bool"}.get(
        ftype, "text"
    )


def _kind(duckdb_type: str) -> str:
    upper = duckdb_type.upper()
    if upper.startswith(_OTHER_PREFIXES) or upper.endswith("]"):
        return "other"
    ftype, _ = feature_type_of(duckdb_type)
    return kind_of_feature_type(ftype)


@dataclass(frozen=True)
class ColumnProfile:
    """Statistics of one column. ``bins`` are (start, end, count); timestamps in epoch seconds."""

    name: str
    dtype: str
    kind: str  # numeric | timestamp | bool | text | other
    count: int  # non-null values
    nulls: int
    distinct: int | None = None
    min: Any = None
    max: Any = None
    mean: float | None = None
    top: list[tuple[Any, int]] = field(default_factory=list)
    bins: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def null_rate(self) -> float:
        total = self.count + self.nulls
        return self.nulls / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        """Plain JSON data (what the registry stores with a version and the sidebar draws)."""

        def plain(value: Any) -> Any:
            if value is None or isinstance(value, (bool, int, str)):
                return value
            if isinstance(value, (float, Decimal)):
                return float(value) if math.isfinite(value) else None
            if hasattr(value, "isoformat"):
                return value.isoformat()
            return str(value)

        return {
            "count": self.count, "nulls": self.nulls, "null_rate": self.null_rate,
            "distinct": self.distinct, "min": plain(self.min), "max": plain(self.max),
            "mean": plain(self.mean), "top": [[plain(v), n] for v, n in self.top],
            "bins": [[plain(lo), plain(hi), n] for lo, hi, n in self.bins],
        }  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.name, "type": self.dtype, "null_rate": self.null_rate, "nulls": self.nulls,
            "distinct": self.distinct, "min": self.min, "max": self.max, "mean": self.mean,
            "top": ", ".join(f"{v} ({c})" for v, c in self.top),
        }  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """A profile of a table. ``sample`` is set when statistics come from a sample of ``rows``."""

    rows: int
    columns: list[ColumnProfile]
    sample: int | None = None

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([c.to_dict() for c in self.columns])

    @property
    def charts(self) -> dict[str, alt.Chart]:
        """One small Altair chart per column: a histogram, or top values for text."""
        from .charts import column_chart

        out = {}
        for c in self.columns:
            chart = column_chart(c)
            if chart is not None:
                out[c.name] = chart
        return out

    def chart(self, columns: int = 4) -> alt.ConcatChart | None:
        """All column charts in one grid (None when no column has one)."""
        from .charts import grid

        charts = list(self.charts.values())
        return grid(charts, columns=columns) if charts else None

    def html(self, caption: str | None = None) -> str:
        """The statistics table, under ``caption`` (default: the row and column counts)."""
        header = ["column", "type", "nulls", "distinct", "min", "max", "mean", "top values"]
        rows = []
        for c in self.columns:
            nulls = f"{render.bar(c.null_rate, width=40)} {render.fmt_rate(c.null_rate)}" if c.nulls else "0"
            top = ", ".join(
                f"{render.fmt_value(v, max_chars=20)} <small>({n:,})</small>" for v, n in c.top[:3]
            )
            rows.append([
                render.esc(c.name), render.esc(c.dtype.lower()), nulls,
                c.distinct, c.min, c.max, "" if c.mean is None else c.mean, top,
            ])  # fmt: skip
        what = f"{self.rows:,} rows × {len(self.columns)} columns"
        if self.sample is not None:
            what += f" (statistics over a sample of {self.sample:,})"
        return (
            f'<div class="meta">{render.esc(caption) if caption is not None else what}</div>'
            + render.table(header, rows, raw=(0, 1, 2, 7))
        )

    def _repr_html_(self) -> str:
        return render.wrap(self.html())

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._repr_html_()))
        chart = self.chart()
        if chart is not None:
            from .charts import show

            show(chart)

    def __repr__(self) -> str:
        return f"Profile(rows={self.rows}, columns={[c.name for c in self.columns]})"


def profile(data: Any, *, bins: int = 20, top: int = 5, max_rows: int | None = None) -> Profile:
    """Profile a pandas DataFrame or a pyarrow Table."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__jf_data", data)
        return profile_query(con, "SELECT * FROM __jf_data", bins=bins, top=top, max_rows=max_rows)
    finally:
        con.close()


def profile_query(
    con: duckdb.DuckDBPyConnection, query: str, *, bins: int = 20, top: int = 5, max_rows: int | None = None
) -> Profile:
    """Profile the result of ``query`` on ``con`` (materialized once into a temporary table)."""
    table = f"__jf_profile_{uuid.uuid4().hex[:10]}"
    con.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM ({query}) AS __jf_q")
    try:
        return profile_table(con, table, bins=bins, top=top, max_rows=max_rows)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def profile_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    *,
    columns: list[str] | None = None,
    bins: int = 20,
    top: int = 5,
    max_rows: int | None = None,
) -> Profile:
    """Profile an existing table or view (only ``columns`` when given).

    With ``max_rows``, statistics other than the row count come from a repeatable sample.
    """
    row = first_row(con, f"SELECT count(*) FROM {table}")
    rows = int(row[0]) if row else 0
    source, sample_table = table, None
    try:
        if max_rows is not None and rows > max_rows:
            sample_table = f"__jf_sample_{uuid.uuid4().hex[:10]}"
            con.execute(
                f"CREATE TEMP TABLE {sample_table} AS SELECT * FROM {table} "
                f"USING SAMPLE reservoir({int(max_rows)} ROWS) REPEATABLE (7)"
            )
            source = sample_table
        rel = con.sql(f"SELECT * FROM {source} LIMIT 0")
        described = [(c, str(t)) for c, t in zip(rel.columns, rel.types, strict=True)]
        if columns is not None:
            wanted = set(columns)
            described = [ct for ct in described if ct[0] in wanted]
        profiles = _profile_columns(con, source, described, bins=bins, top=top)
        return Profile(rows=rows, columns=profiles, sample=max_rows if sample_table else None)
    finally:
        if sample_table:
            con.execute(f"DROP TABLE IF EXISTS {sample_table}")


def _profile_columns(
    con: duckdb.DuckDBPyConnection, source: str, columns: list[tuple[str, str]], *, bins: int, top: int
) -> list[ColumnProfile]:
    if not columns:
        return []
    kinds = [_kind(t) for _, t in columns]
    aggs = ["count(*)"]
    for (name, _), kind in zip(columns, kinds, strict=True):
        q = quote(name)
        aggs.append(f"count({q})")
        if kind == "other":
            aggs += ["NULL", "NULL", "NULL", "NULL"]
            continue
        aggs += [f"count(DISTINCT {q})", f"min({q})", f"max({q})"]
        aggs.append(f"avg({q})" if kind == "numeric" else "NULL")
    stats = first_row(con, f"SELECT {', '.join(aggs)} FROM {source}") or ()
    total = int(stats[0]) if stats else 0
    per = []
    for i, ((name, dtype), kind) in enumerate(zip(columns, kinds, strict=True)):
        count, distinct, lo, hi, mean = stats[1 + 5 * i : 6 + 5 * i]
        per.append(
            {"name": name, "dtype": dtype, "kind": kind, "count": int(count), "nulls": total - int(count),
             "distinct": None if distinct is None else int(distinct), "min": lo, "max": hi,
             "mean": None if mean is None else float(mean)}
        )  # fmt: skip
    histograms = _histograms(con, source, per, bins)
    tops = _top_values(con, source, per, top)
    return [ColumnProfile(**p, top=tops.get(p["name"], []), bins=histograms.get(p["name"], [])) for p in per]


def _histograms(
    con: duckdb.DuckDBPyConnection, source: str, per: list[dict[str, Any]], bins: int
) -> dict[str, list[tuple[float, float, int]]]:
    parts = []
    plans: dict[str, tuple[float, float, int]] = {}
    for i, p in enumerate(per):
        if p["kind"] not in ("numeric", "timestamp") or p["count"] == 0 or p["min"] is None:
            continue
        q = quote(p["name"])
        value = f"epoch({q})" if p["kind"] == "timestamp" else f"CAST({q} AS DOUBLE)"
        lo_hi = first_row(
            con,
            f"SELECT min({value}), max({value}) FROM {source} WHERE {q} IS NOT NULL AND isfinite({value})",
        )
        if not lo_hi or lo_hi[0] is None:
            continue
        lo, hi = float(lo_hi[0]), float(lo_hi[1])
        integer = p["kind"] == "numeric" and "INT" in p["dtype"].upper()
        if integer and hi - lo < bins:
            lo, width, n = lo - 0.5, 1.0, int(hi - lo) + 1
        elif hi > lo:
            width, n = (hi - lo) / bins, bins
        else:
            lo, width, n = lo - 0.5, 1.0, 1
        plans[p["name"]] = (lo, width, n)
        parts.append(
            f"SELECT {i} AS col, least(CAST(floor(({value} - {lo!r}) / {width!r}) AS BIGINT), {n - 1}) AS b, "
            f"count(*) AS n FROM {source} WHERE {q} IS NOT NULL AND isfinite({value}) GROUP BY ALL"
        )
    if not parts:
        return {}
    counts: dict[str, dict[int, int]] = {}
    for col, b, n in con.execute(" UNION ALL ".join(parts)).fetchall():
        counts.setdefault(per[col]["name"], {})[int(b)] = int(n)
    out = {}
    for name, (lo, width, n) in plans.items():
        got = counts.get(name, {})
        out[name] = [(lo + k * width, lo + (k + 1) * width, got.get(k, 0)) for k in range(n)]
    return out


def _top_values(
    con: duckdb.DuckDBPyConnection, source: str, per: list[dict[str, Any]], top: int
) -> dict[str, list[tuple[Any, int]]]:
    parts = []
    for i, p in enumerate(per):
        if p["kind"] not in ("text", "bool") or p["count"] == 0:
            continue
        q = quote(p["name"])
        parts.append(
            f"(SELECT {i} AS col, CAST({q} AS VARCHAR) AS v, count(*) AS n FROM {source} "
            f"WHERE {q} IS NOT NULL GROUP BY ALL ORDER BY n DESC, v LIMIT {int(top)})"
        )
    out: dict[str, list[tuple[Any, int]]] = {}
    if parts:
        for col, v, n in con.execute(" UNION ALL ".join(parts)).fetchall():
            out.setdefault(per[col]["name"], []).append((v, int(n)))
    for values in out.values():
        values.sort(key=lambda vn: -vn[1])
    return out
