"""Small HTML building blocks for notebook outputs: tables, stat cards, bars.

Plain HTML with one scoped ``<style>`` block and no JavaScript, so outputs render the
same in JupyterLab, VS Code, nbconvert and on GitHub, in light and dark themes.
"""

from __future__ import annotations

import datetime as _dt
import html as _html
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "STYLE",
    "esc",
    "fmt_value",
    "fmt_time",
    "fmt_rate",
    "fmt_count",
    "fmt_seconds",
    "table",
    "frame_table",
    "bar",
    "wrap",
]

STYLE = """<style>
.jf-out{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:12.5px;line-height:1.35}
.jf-out table{border-collapse:collapse;margin:4px 0 6px 0;font-size:12px}
.jf-out th,.jf-out td{padding:2px 8px;border-bottom:1px solid var(--jp-border-color2,#e0e0e0);text-align:left;
 vertical-align:top;white-space:nowrap;max-width:32em;overflow:hidden;text-overflow:ellipsis}
.jf-out th{font-weight:600;border-bottom:1px solid var(--jp-border-color1,#bdbdbd)}
.jf-out th small{display:block;font-weight:400;opacity:.6}
.jf-out td.num{text-align:right;font-variant-numeric:tabular-nums}
.jf-out .null{opacity:.45;font-style:italic}
.jf-out .meta{opacity:.7;margin:2px 0}
.jf-out .gap td{text-align:center;opacity:.5}
.jf-out h4{margin:10px 0 2px 0;font-size:13px}
.jf-out pre{margin:2px 0;padding:6px 8px;background:var(--jp-layout-color2,rgba(127,127,127,.08));
 border-radius:3px;font-size:11.5px;white-space:pre-wrap}
.jf-out .bar{display:inline-block;height:9px;background:var(--jp-brand-color1,#1976d2);border-radius:2px;
 vertical-align:middle;opacity:.8}
.jf-out .bar.neg{background:var(--jp-error-color1,#d32f2f)}
.jf-out .cards{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0}
.jf-out .card{padding:4px 10px;border:1px solid var(--jp-border-color2,#e0e0e0);border-radius:4px}
.jf-out .card b{display:block;font-size:16px}
.jf-out .good{color:var(--jp-success-color1,#2e7d32)}
.jf-out .bad{color:var(--jp-error-color1,#c62828)}
.jf-out .add{color:var(--jp-success-color1,#2e7d32)}
.jf-out .del{color:var(--jp-error-color1,#c62828)}
.jf-out .tag{display:inline-block;padding:0 5px;margin-right:3px;border-radius:8px;
 background:var(--jp-layout-color3,rgba(127,127,127,.18));font-size:11px}
</style>"""


def esc(value: Any) -> str:
    return _html.escape(str(value), quote=True)


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        result = pd.isna(value)
        return bool(result) if isinstance(result, bool) or getattr(result, "shape", None) == () else False
    except (TypeError, ValueError):
        return False


def fmt_value(value: Any, *, max_chars: int = 60) -> str:
    """One cell as HTML: compact numbers, grey nulls, shortened long text."""
    if _is_null(value):
        return '<span class="null">null</span>'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) >= 1e9 or abs(value) < 1e-4):
            return f"{value:.4g}"
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, _dt.datetime):
        return esc(fmt_time(value))
    text = str(value)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return esc(text)


def fmt_time(value: _dt.datetime) -> str:
    """A date, or a date and time to the second, with milliseconds only when present."""
    if not (value.hour or value.minute or value.second or value.microsecond):
        return value.strftime("%Y-%m-%d")
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    tz = value.strftime("%z") if value.tzinfo is not None else ""
    return text + (f" {tz}" if tz and tz != "+0000" else "")


def fmt_rate(rate: float) -> str:
    """A share as a percentage that never rounds a non-zero share to 0."""
    if rate == 0:
        return "0"
    if rate < 0.001:
        return "<0.1%"
    return f"{rate:.1%}"


def fmt_count(n: int) -> str:
    return f"{n:,}"


def fmt_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _numeric_value(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    subtitles: Sequence[str] | None = None,
    raw: Iterable[int] = (),
) -> str:
    """An HTML table; cells are escaped except in the ``raw`` column positions."""
    raw_set = set(raw)
    head = "".join(
        f"<th>{esc(c)}" + (f"<small>{esc(subtitles[i])}</small>" if subtitles else "") + "</th>"
        for i, c in enumerate(columns)
    )
    body = []
    for row in rows:
        if row is _GAP:
            body.append(f'<tr class="gap"><td colspan="{len(columns)}">⋯</td></tr>')
            continue
        cells = []
        for i, value in enumerate(row):
            if i in raw_set:
                cells.append(f"<td>{value}</td>")
            else:
                cls = ' class="num"' if _numeric_value(value) else ""
                cells.append(f"<td{cls}>{fmt_value(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_GAP: Any = ("⋯",)


def frame_table(frame: Any, *, head: int = 10, tail: int = 5, index: bool = False) -> str:
    """A compact HTML table of a DataFrame: the first ``head`` and last ``tail`` rows."""
    n = len(frame)
    columns = [str(c) for c in frame.columns]
    dtypes = [str(t) for t in frame.dtypes]
    if n <= head + tail:
        parts = [frame]
        gap = False
    else:
        parts = [frame.iloc[:head], frame.iloc[n - tail :]] if tail else [frame.iloc[:head]]
        gap = True
    rows: list[Sequence[Any]] = []
    for k, part in enumerate(parts):
        if k == 1 and gap:
            rows.append(_GAP)
        idx = [str(i) for i in part.index]
        for j, values in enumerate(part.itertuples(index=False, name=None)):
            cells = [_python(v) for v in values]
            rows.append(([idx[j]] + cells) if index else cells)
    if gap and len(parts) == 1:
        rows.append(_GAP)
    if index:
        columns = [""] + columns
        dtypes = [""] + dtypes
    return table(columns, rows, subtitles=dtypes)


def _python(value: Any) -> Any:
    """numpy scalars → Python scalars, so formatting treats them alike."""
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        try:
            return item()
        except (ValueError, TypeError):
            return value
    return value


def bar(fraction: float, *, width: int = 80, negative: bool = False) -> str:
    """A small horizontal bar, ``fraction`` of ``width`` pixels."""
    if fraction != fraction:  # NaN
        fraction = 0.0
    px = max(0, min(width, round(abs(fraction) * width)))
    cls = "bar neg" if negative else "bar"
    return f'<span class="{cls}" style="width:{px}px"></span>'


def wrap(*parts: str) -> str:
    """Put parts in one scoped output block with the shared style."""
    return STYLE + '<div class="jf-out">' + "".join(parts) + "</div>"
