"""Push-log compaction: a view's push files merged into one, atomically.

Training frames read the same rows before and after; a run after compaction still knows which
journal entries the log covers (each push counted once online, equal to ``training_frame``); a
compaction that stopped after writing its file (the merged files left beside it) makes no reader
count a push twice; pushes racing compactions are all kept.
"""

from __future__ import annotations

import shutil
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import jupyter_features as jf
from jupyter_features.cli import main
from jupyter_features.errors import UnknownFeatureViewError

END = datetime(2024, 1, 10)
WINDOWED = "SELECT k, count(*) AS n, sum(v) AS sv, max(v) FILTER (WHERE v > 1) AS big FROM ev GROUP BY k"
KEYS = [{"k": k} for k in range(4)]


def _workspace(tmp_path: Path, store_url: str) -> jf.Workspace:
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    frame = pd.DataFrame(
        {"k": [0, 1, 2], "ts": pd.to_datetime(["2024-01-09 10:00", "2024-01-09 20:00", "2024-01-08 00:00"]),
         "v": [1.0, 2.0, 3.0]}
    )  # fmt: skip
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("plain", "SELECT k, ts, v FROM ev", entity="k", timestamp="ts")
    ws.feature_view("win", WINDOWED, entity="k", timestamp="ts", windows=["1h", "1d"])
    ws.materialize(["plain", "win"], end=END, progress=False)
    return ws


def _push(ws: jf.Workspace, i: int, to: str = "both") -> None:
    row = {"k": i % 4, "ts": END + timedelta(minutes=i - 30), "v": float(i)}
    for view in ("plain", "win"):
        ws.push(view, [row], to=to)


def _frames(ws: jf.Workspace) -> dict[str, list[Any]]:
    out = {}
    for at in (END, END + timedelta(minutes=10), END + timedelta(hours=2)):
        labels = pd.DataFrame(KEYS)
        labels["t"] = at
        frame = ws.training_frame(labels, ["plain:v", "win:*"], timestamp="t")
        for column in [c for c in frame.columns if "__" in c]:
            out[f"{column}@{at}"] = [None if v != v else v for v in frame[column].tolist()]
    return out


def _online(ws: jf.Workspace) -> dict[str, list[Any]]:
    out = {}
    for at in (END + timedelta(hours=1), END + timedelta(hours=2)):
        got = ws.online_features(["plain:v", "win:*"], KEYS, at=at).to_dict()
        out.update({f"{k}@{at}": v for k, v in got.items()})
    return out


def test_training_frames_and_runs_are_the_same_after_compaction(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    for i in range(12):
        _push(ws, i, to=("both", "offline", "both", "online")[i % 4])
    before = _frames(ws)
    assert len(ws.push_log.files("win")) == 9
    covered = ws.push_log.covered("win", ws.online_store().identity())
    results = {r.view: r for r in ws.compact_pushes()}
    assert results["win"].files_before == 9 and results["win"].files_after == 1 and results["win"].rows == 9
    assert [p.name for p in ws.push_log.view_folder("win").iterdir()] == [
        Path(results["win"].file or "").name
    ]
    assert ws.push_log.covered("win", ws.online_store().identity()) == covered
    assert _frames(ws) == before
    online = _online(ws)
    ws.materialize(["plain", "win"], end=END + timedelta(minutes=5), progress=False)  # covers the log
    _push(ws, 12)  # after the run, then compacted with the first compacted file
    _push(ws, 13, to="online")
    ws.compact_pushes("win")
    assert len(ws.push_log.files("win")) == 1 and len(ws.push_log.files("plain")) == 2
    ws.materialize(["plain", "win"], end=END + timedelta(minutes=6), progress=False)
    for at in (END + timedelta(hours=1), END + timedelta(hours=2)):  # each push counted once online
        labels = pd.DataFrame(KEYS)
        labels["t"] = at
        frame = ws.training_frame(labels, ["win:n_1d", "win:sv_1d"], timestamp="t")
        got = ws.online_features(["win:n_1d", "win:sv_1d"], KEYS, at=at).to_dict()
        online_only = {3: (3, 3.0 + 7.0 + 11.0), 1: (1, 13.0)}  # pushes 3, 7, 11, 13: served, not trained on
        want_n = [n + online_only.get(k, (0, 0.0))[0] for k, n in enumerate(frame["win__n_1d"])]
        want_sv = [v + online_only.get(k, (0, 0.0))[1] for k, v in enumerate(frame["win__sv_1d"].fillna(0.0))]
        assert got["win__n_1d"] == want_n and got["win__sv_1d"] == pytest.approx(want_sv), (at, got, frame)
    assert _online(ws) != online
    ws.close()


def test_a_compaction_that_stopped_before_removing_its_files_counts_nothing_twice(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, f"sqlite:///{tmp_path}/online.db")
    for i in range(5):
        _push(ws, i)
    before = _frames(ws)
    covered = ws.push_log.covered("win", ws.online_store().identity())
    saved = tmp_path / "saved"
    shutil.copytree(ws.push_log.view_folder("win"), saved)
    ws.compact_pushes("win")
    for f in saved.iterdir():  # as if the compaction stopped before removing the merged files
        shutil.copy(f, ws.push_log.view_folder("win") / f.name)
    assert len(list(ws.push_log.view_folder("win").glob("*.parquet"))) == 6
    assert len(ws.push_log.files("win")) == 1
    assert _frames(ws) == before
    assert ws.push_log.covered("win", ws.online_store().identity()) == covered
    ws.materialize(["win"], end=END + timedelta(minutes=1), progress=False)
    online = ws.online_features(["win:n_1d"], KEYS, at=END + timedelta(hours=1)).to_dict()
    labels = pd.DataFrame(KEYS)
    labels["t"] = END + timedelta(hours=1)
    assert online["win__n_1d"] == ws.training_frame(labels, ["win:n_1d"], timestamp="t")["win__n_1d"].tolist()
    ws.compact_pushes("win")  # the next compaction removes what the stopped one left
    assert len(list(ws.push_log.view_folder("win").glob("*.parquet"))) == 1
    assert _frames(ws) == before
    ws.close()


def test_pushes_racing_compactions_are_all_kept(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, f"sqlite:///{tmp_path}/online.db")
    errors: list[BaseException] = []
    count = 40

    def pusher() -> None:
        try:
            for i in range(count):
                ws.push("win", [{"k": 3, "ts": END + timedelta(minutes=1 + i), "v": 1.0}], to="offline")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=pusher)
    thread.start()
    labels = pd.DataFrame({"k": [3], "t": [END + timedelta(hours=1)]})
    seen = []
    while thread.is_alive():
        ws.compact_pushes("win")
        seen.append(ws.training_frame(labels, ["win:n_1h"], timestamp="t")["win__n_1h"].iloc[0])
    thread.join()
    assert not errors, errors
    assert seen == sorted(seen) and all(0 <= n <= count for n in seen)  # never a push counted twice
    ws.compact_pushes()
    assert ws.training_frame(labels, ["win:n_1h"], timestamp="t")["win__n_1h"].iloc[0] == count
    ws.close()


def test_compact_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _workspace(tmp_path, f"sqlite:///{tmp_path}/online.db")
    for i in range(3):
        _push(ws, i, to="offline")
    ws.close()
    assert main(["compact-pushes", "--dir", str(tmp_path / "ws"), "win"]) == 0
    assert "win: 3 push-log files -> 1 (3 rows)" in capsys.readouterr().out
    ws = jf.Workspace(tmp_path / "ws")
    with pytest.raises(UnknownFeatureViewError):
        ws.compact_pushes("nope")
    ws.close()


def test_compact_in_a_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    ws = _workspace(tmp_path, f"sqlite:///{tmp_path}/online.db")
    for i in range(2):
        _push(ws, i, to="offline")
    shell = TerminalInteractiveShell.instance()  # the shared one: start_ipython answers only its first caller
    shell.run_cell("%load_ext kernels_magic", store_history=False)
    jf.set_workspace(ws)
    try:
        result = shell.run_cell("%features compact win", store_history=False)
        assert result.success
        assert "win: 2 push-log files -> 1 (2 rows)" in capsys.readouterr().out
        result = shell.run_cell("%features compact no-such", store_history=False)
        assert not result.success
    finally:
        jf.set_workspace(None)
        ws.close()
