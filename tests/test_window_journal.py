"""A windowed view's push journal is trimmed at each run's switch: an online-only push whose
events are all at or before (end - longest window) can never be read again and is dropped;
a push with a newer event stays and is replayed. Reads stay equal to ``training_frame`` over the
view's rows and every push (the oracle), on SQLite, Redis and Redis Cluster."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

import jupyter_features as jf
from jupyter_features.online.sqlite_push import JOURNAL

END = datetime(2024, 1, 10)
SQL = """SELECT k, count(*) AS n, sum(i) AS si, max(x) AS mx, count(*) FILTER (WHERE c = 'a') AS na
         FROM ev GROUP BY k"""
KEYS = [{"k": k} for k in (1, 2, 3, 9)]


def _journal(ws: jf.Workspace, store_url: str) -> int:
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as con:
            return int(con.execute(f"SELECT count(*) FROM {JOURNAL} WHERE view = 'w'").fetchone()[0])
    store: Any = ws.online_store()
    return int(store.client.zcard(store.ks.key("w", "journal")))


def _rows(k: int, *times: datetime) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "k": [k] * len(times),
            "ts": pd.Series(times, dtype="datetime64[us]"),
            "x": [float(t.hour) for t in times],
            "i": pd.array([t.day for t in times], dtype="Int64"),
            "c": ["a" if t.minute % 2 == 0 else "b" for t in times],
        }
    )


def _same_as_training(ws: jf.Workspace, at: datetime) -> None:
    labels = pd.DataFrame(KEYS)
    labels["t"] = at
    train = ws.training_frame(labels, ["w:*"], timestamp="t")
    got = ws.online_features(["w:*"], KEYS, at=at).to_dict()
    for column in [c for c in train.columns if c.startswith("w__")]:
        want = [None if v is pd.NA or v is pd.NaT or v != v else v for v in train[column].tolist()]
        assert got[column] == want, (column, at, got[column], want)


def test_the_journal_drops_pushes_no_window_can_read(tmp_path: Path, store_url: str) -> None:
    frame = _rows(1, END - timedelta(hours=5), END - timedelta(days=2, minutes=1))
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", SQL, entity="k", timestamp="ts", windows=["1h", "1d", "3d"])
    ws.materialize(["w"], end=END, progress=False)
    pushes = [
        _rows(1, END - timedelta(hours=2), END + timedelta(hours=1)),  # all old after the first run
        _rows(2, END + timedelta(minutes=10)),  # all old after the first run
        _rows(3, END + timedelta(minutes=20), END + timedelta(days=3, minutes=1)),  # one event stays
        _rows(9, END + timedelta(days=2)),  # stays for the first run, goes with the second
    ]
    for rows in pushes:
        ws.push("w", rows, to="online")
    assert _journal(ws, store_url) == 4
    everything = pd.concat([frame, *pushes], ignore_index=True)

    end = END + timedelta(days=4)  # events at or before end - 3d = END + 1d are in no window
    ws.materialize(["w"], end=end, progress=False)
    assert _journal(ws, store_url) == 2
    ws.register_source("ev", everything, timestamp="ts")  # the oracle reads every push
    for at in (end, end + timedelta(hours=1), end + timedelta(days=1), end + timedelta(days=2, hours=1)):
        _same_as_training(ws, at)

    ws.register_source("ev", frame, timestamp="ts")
    end = END + timedelta(days=5, hours=1)
    ws.materialize(["w"], end=end, progress=False)
    assert _journal(ws, store_url) == 1  # key 3's push still has an event in the 3d window
    ws.register_source("ev", everything, timestamp="ts")
    for at in (end, end + timedelta(days=1), end + timedelta(days=3)):
        _same_as_training(ws, at)
    ws.close()
