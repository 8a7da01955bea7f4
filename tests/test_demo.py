"""The demo command walks the mission end to end on a small data set."""

from __future__ import annotations

from pathlib import Path

from jupyter_features.cli import main
from jupyter_features.demo import run_demo


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    lines: list[str] = []
    ctx = run_demo(tmp_path, rows=5_000, say=lines.append)
    assert ctx.train is not None and ctx.labels is not None
    assert len(ctx.train) == len(ctx.labels) == 5_000
    assert lines[-1].startswith("done in")
    assert (tmp_path / "data" / "transactions.parquet").exists()


def test_demo_cli(tmp_path: Path, capsys: object) -> None:
    assert main(["demo", "--dir", str(tmp_path), "--rows", "2000"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "training frame" in out
