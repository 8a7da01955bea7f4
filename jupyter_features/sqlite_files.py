"""SQLite connection set-up shared by the online store and the registry."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

__all__ = ["use_wal"]


def use_wal(con: Any) -> None:
    """Switch a new database to WAL mode, waiting out another connection doing the same.

    Changing the journal mode takes an exclusive lock, and SQLite answers "database is
    locked" at once, without its busy timeout, when two connections race to do it.
    """
    for attempt in range(60):
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.005 * (attempt + 1))
    con.execute("PRAGMA journal_mode=WAL")
