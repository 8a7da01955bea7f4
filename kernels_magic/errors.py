"""The one place where the magics turn errors into short messages without a traceback wall.

``FeaturesError`` messages already name the object and the fix; DuckDB errors get the
cell line they point at. ``UsageError`` (bad magic arguments) passes through: IPython
already shows it as one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["MagicError", "friendly_errors", "sql_error"]

_RED, _DIM, _RESET = "\x1b[31m", "\x1b[2m", "\x1b[0m"
_LINE = re.compile(r"^LINE (\d+): ?")


class MagicError(Exception):
    """A failure shown as a one-line message (plus the offending SQL line, if any)."""

    def __init__(self, message: str, detail: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = list(detail or [])

    def _render_traceback_(self) -> list[str]:
        return [f"{_RED}{self.message}{_RESET}"] + [f"{_DIM}{line}{_RESET}" for line in self.detail]

    def __str__(self) -> str:
        return "\n".join([self.message, *self.detail])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Run magic work; a FeaturesError or a DuckDB error becomes a MagicError."""
    import duckdb

    from jupyter_features.errors import FeaturesError

    try:
        yield
    except MagicError:
        raise
    except FeaturesError as exc:
        raise MagicError(f"{type(exc).__name__}: {exc}") from None
    except duckdb.Error as exc:
        raise sql_error(exc, "", 0) from None


def _locate(word: str, statement: str) -> tuple[int, int] | None:
    """(line index, column) of ``word`` as a whole word in ``statement``."""
    m = re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", statement, flags=re.IGNORECASE)
    if m is None:
        return None
    line = statement.count("\n", 0, m.start())
    column = m.start() - (statement.rfind("\n", 0, m.start()) + 1)
    return line, column


def sql_error(exc: BaseException, statement: str, first_line: int) -> MagicError:
    """DuckDB's message, and the cell line it points at (``statement`` starts at cell line
    ``first_line``, counted from 0)."""
    lines = [ln for ln in str(exc).strip().splitlines()]
    message = lines[0] if lines else type(exc).__name__
    hints = []
    pointer: tuple[int, int] | None = None
    for i, text in enumerate(lines[1:], start=1):
        m = _LINE.match(text)
        if m:
            caret_line = lines[i + 1] if i + 1 < len(lines) else ""
            column = max(0, caret_line.find("^") - m.end()) if "^" in caret_line else 0
            snippet_start = text[m.end() :]
            line_no = int(m.group(1)) - 1
            src = statement.splitlines()[line_no] if line_no < len(statement.splitlines()) else ""
            # DuckDB may shorten long lines in its snippet; realign the caret on the real line.
            if snippet_start.startswith("...") and src:
                anchor = snippet_start[3 : 3 + 20]
                found = src.find(anchor)
                column = column - 3 + found if found >= 0 else column
            pointer = (line_no, column)
            break
        if text.strip() and "^" not in text:
            hints.append(text.strip())
    if pointer is None:
        quoted = re.findall(r'"([^"]+)"', message) + re.findall(r"with name (\w+)", message)
        for word in quoted:
            pointer = _locate(word, statement)
            if pointer is not None:
                break
    full = " ".join([message, *hints])
    if pointer is None or not statement:
        return MagicError(f"SQL error: {full}")
    line_no, column = pointer
    src_lines = statement.splitlines()
    src = src_lines[line_no] if line_no < len(src_lines) else ""
    number = first_line + line_no + 1
    gutter = f"{number:>4} | "
    detail = [gutter + src, " " * (len(gutter) - 2) + "| " + " " * column + "^"]
    return MagicError(f"SQL error on line {number}: {full}", detail)
