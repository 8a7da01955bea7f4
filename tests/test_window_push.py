"""`POST /api/v1/push` into windowed views: pushed rows projected into events by the version's
checked projection, through a real `jupyter-features serve` process on every store.

The oracle is ``ws.push(view, rows, to="online")`` into a second store materialized the same
way: every read after the HTTP push equals the read after the workspace's push, before and
after the next run. Metadata planted in the store is refused and nothing is written.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from test_online_server import run_server

import jupyter_features as jf
from jupyter_features.errors import InvalidRequestError, VersionMetadataError
from jupyter_features.feature_server.window_push import window_projection
from jupyter_features.online import OnlineTable, WindowPush

END = datetime(2024, 1, 10)
SQL = """SELECT k, count(*) AS n, count(x) AS nx, sum(i) AS si, avg(x * 2) AS ax, max(ts) AS last,
                count(DISTINCT c) AS dc, stddev(x) AS sd,
                count(*) FILTER (WHERE i > 0 AND upper(c) = 'A') AS pos,
                sum(CAST(i AS DOUBLE) / 2) FILTER (WHERE c = 'a') AS half
         FROM ev WHERE x IS NULL OR x < 1000 GROUP BY k"""
ROWS: list[dict[str, Any]] = [
    {"k": 1, "ts": "2024-01-10T00:10:00", "x": 1.0, "i": 7, "c": "a"},
    {"k": 1, "ts": "2024-01-09T23:59:00", "x": None, "i": None, "c": None},  # late, inside the windows
    {"k": 9, "ts": "2024-01-10T02:30:00", "x": 2.5, "i": 3, "c": "A"},
    {"k": 9, "ts": "2024-01-11T00:00:00", "x": 5000.0, "i": 2, "c": "b"},  # the view's WHERE: not applied
    {"k": 2, "ts": "2023-12-01T00:00:00", "x": 1.0, "i": 1, "c": "a"},  # older than every window
]
TIMES = [END, END + timedelta(minutes=30), END + timedelta(hours=3), END + timedelta(days=1, hours=1)]


def _second(store_url: str) -> str:
    n = time.monotonic_ns()
    if store_url.startswith("sqlite"):
        return store_url.replace("online.db", f"oracle{n}.db")
    return store_url + f"o{n}:"


def _workspace(tmp_path: Path, store_url: str) -> jf.Workspace:
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    frame = pd.DataFrame(
        {
            "k": [1, 1, 2],
            "ts": pd.to_datetime(["2024-01-09 10:00", "2024-01-09 23:30", "2024-01-09 12:00"]),
            "x": [1.5, 2.5, 4.0],
            "i": pd.array([1, 2, 3], dtype="Int32"),
            "c": ["a", "b", "a"],
        }
    )
    ws.register_source("ev", frame, timestamp="ts")
    ws.feature_view("w", SQL, entity="k", timestamp="ts", windows=["1h", "1d"])
    plain = "SELECT k, count(*) AS n, sum(i) AS si, min(x) AS mn FROM ev GROUP BY k"  # inputs as pushed
    ws.feature_view("p", plain, entity="k", timestamp="ts", windows=["1h", "1d"])
    return ws


def _reads(ws: jf.Workspace, store: str) -> list[dict[str, list[Any]]]:
    keys = [{"k": k} for k in (1, 2, 9, 5)]
    return [ws.online_features(["w:*", "p:*"], keys, at=at, store=store).to_dict() for at in TIMES]


def _python_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "ts": datetime.fromisoformat(r["ts"])} for r in rows]


def test_an_http_push_into_a_windowed_view_equals_the_workspace_push(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    oracle = _second(store_url)
    for store in (store_url, oracle):
        ws.materialize(["w", "p"], end=END, progress=False, store=store)
    narrow = [{k: v for k, v in row.items() if k != "c"} for row in ROWS]
    with run_server(store_url) as server:
        r = httpx.post(f"{server.base}/api/v1/push", json={"view": "w", "rows": ROWS})
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == 4  # the event older than every window is not kept online
        r = httpx.post(f"{server.base}/api/v1/push", json={"view": "p", "rows": narrow})
        assert r.status_code == 200 and r.json()["rows"] == 4, r.text
        read = {"features": ["w:n_1d", "w:si_1d"], "entities": [{"k": 9}], "at": "2024-01-11T00:00:00"}
        r = httpx.post(f"{server.base}/api/v1/online-features", json=read)
        assert r.json()["results"] == {"w__n_1d": [2], "w__si_1d": [5]}, r.text
    ws.push("w", _python_rows(ROWS), to="online", store=oracle)
    ws.push("p", _python_rows(narrow), to="online", store=oracle)
    assert _reads(ws, store_url) == _reads(ws, oracle)
    assert [r["w__pos_1h"] for r in _reads(ws, store_url)[1:3]] == [[1, 0, 0, 0], [0, 0, 1, 0]]
    for store in (store_url, oracle):  # the next run replays both pushes from the journal
        ws.materialize(["w", "p"], end=END + timedelta(minutes=20), progress=False, store=store)
    assert _reads(ws, store_url) == _reads(ws, oracle)
    ws.close()


def test_bad_http_pushes_into_a_windowed_view_are_400_and_write_nothing(
    tmp_path: Path, store_url: str
) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["w"], end=END, progress=False)
    row = ROWS[0]
    state = ws.online_store().push_state("w")
    refused = [
        ({k: v for k, v in row.items() if k != "c"}, "lacks c"),
        ({**row, "y": 1}, "unknown column(s) y"),
        ({**row, "x": "many"}, "'x' is float64"),
        ({**row, "i": 2**40}, "'i' does not fit"),  # an INTEGER column
        ({**row, "k": None}, "'k' is int64"),
        ({**row, "ts": "soon"}, "not a time"),
    ]
    with run_server(store_url) as server:
        url = f"{server.base}/api/v1/push"
        for bad, message in refused:
            r = httpx.post(url, json={"view": "w", "rows": [row, bad]})
            assert r.status_code == 400 and message in r.json()["error"], (bad, r.text)
        r = httpx.post(url, json={"view": "nope", "rows": [row]})
        assert r.status_code == 404 and "not materialized" in r.json()["error"]
    assert ws.online_store().push_state("w") == state
    ws.close()


HOSTILE = [
    "SELECT read_text('/etc/passwd') AS k FROM \"__jf_pushed\"",
    'SELECT "k" AS "k" FROM read_csv(\'/etc/passwd\')',
    'SELECT "k" AS "k" FROM "__jf_pushed", duckdb_settings()',
    'SELECT "k" AS "k" FROM "__jf_pushed" UNION ALL SELECT 1',
    "SELECT (SELECT current_setting('threads')) AS k FROM \"__jf_pushed\"",
    "SELECT 1 AS \"k\"; COPY (SELECT 1) TO '/tmp/x'",
    "ATTACH '/tmp/x.db' AS x",
    'SELECT "k" AS "k", "ts" AS "__jf_ts" FROM "__jf_pushed" WHERE getenv(\'HOME\') IS NOT NULL',
    'SELECT * FROM "__jf_pushed"',
]


def _tampered(table: OnlineTable, sql: str) -> OnlineTable:
    assert table.window is not None and table.window.push is not None
    from dataclasses import replace

    window = replace(table.window, push=WindowPush(table.window.push.columns, sql))
    return replace(table, window=window)


@pytest.mark.parametrize("sql", HOSTILE)
def test_a_tampered_projection_is_refused(tmp_path: Path, sql: str) -> None:
    ws = _workspace(tmp_path, f"sqlite:///{tmp_path}/online.db")
    ws.materialize(["w", "p"], end=END, progress=False)
    table = ws.online_store().current("w")
    assert table is not None
    assert window_projection(table).plain is None  # the run's own projection passes; SQL runs
    plain = ws.online_store().current("p")
    assert plain is not None and window_projection(plain).plain == ("k", "ts", "i", "x")
    with pytest.raises(VersionMetadataError, match="materialize the view again"):
        window_projection(_tampered(table, sql))
    ws.close()


def test_a_projection_with_retyped_keys_is_refused(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, f"sqlite:///{tmp_path}/online.db")
    ws.materialize(["w"], end=END, progress=False)
    table = ws.online_store().current("w")
    assert table is not None and table.window is not None and table.window.push is not None
    from dataclasses import replace

    push = table.window.push
    retyped = WindowPush(tuple((n, "VARCHAR" if n == "k" else t) for n, t in push.columns), push.sql)
    with pytest.raises(VersionMetadataError, match="key's type"):
        window_projection(replace(table, window=replace(table.window, push=retyped)))
    ws.close()


def _plant(store_url: str, ws: jf.Workspace, change: Any) -> None:
    """Rewrite the served version's metadata in the store, behind the workspace's back."""
    store = ws.online_store(store_url)
    table = store.current("w")
    assert table is not None
    meta = json.loads(table.to_json())
    change(meta["window"])
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as con:
            con.execute("UPDATE __jf_online SET meta = ? WHERE view = 'w'", (json.dumps(meta),))
        return
    key = store.ks.key("w", f"meta:{table.version}")  # type: ignore[attr-defined]
    stored = json.loads(store.client.get(key))  # type: ignore[attr-defined]
    stored["window"] = meta["window"]
    store.client.set(key, json.dumps(stored))  # type: ignore[attr-defined]


def test_planted_metadata_is_refused_through_the_server(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["w"], end=END, progress=False)
    state = ws.online_store().push_state("w")
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret")

    def hostile(window: dict[str, Any]) -> None:
        window["push"]["sql"] = window["push"]["sql"].replace(
            ' AS "__jf_x0"', f" + length(read_text('{secret}')) AS \"__jf_x0\"", 1
        )

    def old(window: dict[str, Any]) -> None:
        del window["push"]

    for change, message in ((hostile, "read_text() is not allowed"), (old, "materialized before pushes")):
        _plant(store_url, ws, change)
        with run_server(store_url) as server:
            r = httpx.post(f"{server.base}/api/v1/push", json={"view": "w", "rows": ROWS[:1]})
            assert r.status_code == 409 and message in r.json()["error"], r.text
            assert r.json()["type"] == "VersionMetadataError" and "the secret" not in r.text
            assert "materialize" in r.json()["error"]
    assert ws.online_store().push_state("w") == state  # nothing written
    ws.close()


def test_unsupported_push_column_types_are_named() -> None:
    from jupyter_features.online import WindowSpec
    from jupyter_features.online.window_values import WindowAggregate
    from jupyter_features.schema import Feature

    spec = WindowSpec(
        columns=(Feature(name="__jf_x0", type="float64", duckdb_type="DOUBLE"),),
        aggregates=(WindowAggregate("sum", "__jf_x0", None, False, "s"),),
        windows=(("1h", 3_600_000_000),),
        push=WindowPush(
            (("k", "BIGINT"), ("ts", "TIMESTAMP"), ("x", "STRUCT(a INTEGER)")),
            'SELECT "k" AS "k", "ts" AS "__jf_ts", "x"."a" AS "__jf_x0" FROM "__jf_pushed"',
        ),
    )
    table = OnlineTable(
        view="v", entity=("k",), key_types=("int64",), features=(), end_us=0, timestamp="ts", window=spec
    )
    with pytest.raises(InvalidRequestError, match="STRUCT.* cannot carry"):
        window_projection(table)
