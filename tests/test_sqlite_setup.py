"""Many connections opening a new SQLite database at once all get WAL mode."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from jupyter_features.sqlite_files import use_wal


@pytest.mark.parametrize("attempt", range(5))
def test_racing_connections_all_switch_to_wal(tmp_path: Path, attempt: int) -> None:
    path = tmp_path / f"race{attempt}.db"
    barrier = threading.Barrier(8)
    modes: list[str] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        barrier.wait()
        try:
            use_wal(con)
            modes.append(con.execute("PRAGMA journal_mode").fetchone()[0])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            con.close()

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert modes == ["wal"] * 8
