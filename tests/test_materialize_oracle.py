"""Materialized values equal a brute-force 'latest row per entity as of end, with TTL',
on randomized data, in every online store; incremental runs agree with full ones."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import BASE, ViewCase, _rank, is_null, normalize, view_frames

import jupyter_features as jf
from jupyter_features.featureview import format_ttl

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def oracle_latest(case: ViewCase, end: datetime) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Entity key → feature values of its latest row with ts <= end (greatest created, then
    greatest values on ties); entities whose latest row is older than end - ttl are absent."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in case.frame.to_dict("records"):
        key = tuple(row[k] for k in case.entity)
        if any(is_null(k) for k in key) or is_null(row["ts"]) or row["ts"] > end:
            continue
        if key not in best or _rank(row, case) > _rank(best[key], case):
            best[key] = row
    if case.ttl is not None:
        best = {k: r for k, r in best.items() if r["ts"] >= end - case.ttl}
    return {k: {f: r[f] for f in case.features} for k, r in best.items()}


def _define(ws: jf.Workspace, case: ViewCase) -> None:
    ws.register_source("src", case.frame, timestamp="ts")
    cols = ", ".join(case.entity + ["ts"] + ([case.created] if case.created else []) + case.features)
    ws.feature_view(
        case.name, f"SELECT {cols} FROM src", entity=case.entity, timestamp="ts",
        created_timestamp=case.created, ttl=format_ttl(case.ttl),
    )  # fmt: skip


def _check(ws: jf.Workspace, case: ViewCase, end: datetime) -> None:
    expected = oracle_latest(case, end)
    grid: list[tuple[int, ...]] = [(i,) for i in range(6)]
    if len(case.entity) == 2:
        grid = [(i, j) for i in range(5) for j in range(5)]
    rows = [dict(zip(case.entity, key, strict=True)) for key in grid]
    got = ws.online_features([f"{case.name}:*"], rows, at=end).to_dict()
    for f in case.features:
        want = [expected[key][f] if key in expected else None for key in grid]
        assert normalize(got[f"{case.name}__{f}"]) == normalize(want), (f, end)
    if rows:
        ints = [v for v in got[f"{case.name}__f_int"] if v is not None]
        assert all(type(v) is int for v in ints)


ends = st.integers(0, 24).map(lambda d: BASE + timedelta(days=d))


@SETTINGS
@given(data=st.data(), composite=st.booleans(), with_created=st.booleans(), end=ends)
def test_materialized_values_match_oracle(
    tmp_path: Path, store_url: str, data: st.DataObject, composite: bool, with_created: bool, end: datetime
) -> None:
    case = data.draw(view_frames("v", ["a", "b"] if composite else ["a"], with_created))
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    _define(ws, case)
    ws.materialize([case.name], end=end, progress=False)
    _check(ws, case, end)


@SETTINGS
@given(data=st.data(), first=ends, steps=st.lists(st.integers(0, 8), min_size=1, max_size=3))
def test_incremental_runs_match_a_full_run(
    tmp_path: Path, store_url: str, data: st.DataObject, first: datetime, steps: list[int]
) -> None:
    case = data.draw(view_frames("w", ["a"], True))
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    _define(ws, case)
    ws.materialize([case.name], end=first, progress=False)
    end = first
    for days in steps:  # one incremental run over another
        end += timedelta(days=days)
        result = ws.materialize([case.name], end=end, incremental=True, progress=False)[case.name]
        assert result.mode == "incremental"
        _check(ws, case, end)
