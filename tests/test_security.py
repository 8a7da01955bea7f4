"""Feature SQL is untrusted: an attacker with a registry write token tries to read files, the
environment and settings, write files, or escalate — and gets nowhere.

Hostile views are refused when written (422), and — planted straight into the registry's
database, as a compromised or older registry would hold them — refused again where they
are used: in a victim's training frame, preview and materialization, and in a job on the
registry server. Nothing secret comes back, no file is written.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import jupyter_features as jf
import registry_client
from jupyter_features.errors import FeaturesError, FeatureViewError, UnsafeSQLError
from jupyter_features.registry_server.process import start_server

ADMIN, WRITER, READER = "admin-" + "a" * 16, "writer-" + "w" * 16, "reader-" + "r" * 16
TX = pd.DataFrame(
    {
        "user_id": [1, 1, 2],
        "ts": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-02"]),
        "amount": [10.0, 20.0, 5.0],
    }
)
LABELS = pd.DataFrame({"user_id": [1, 2], "label_ts": pd.to_datetime(["2024-01-04", "2024-01-04"])})

#: Each attack as feature SQL over the source `tx`; {secret} is a file the attacker wants, {out}
#: one it wants written. Every one must be refused, whichever way the view arrives.
ATTACKS = {
    "file reader in FROM": "SELECT 1 AS user_id, TIMESTAMP '2024-01-01' AS ts, content AS f FROM read_text('{secret}')",
    "file reader in a subquery": "SELECT user_id, ts, (SELECT content FROM read_text('{secret}')) AS f FROM tx",
    "file reader in a CTE": "WITH s AS (SELECT * FROM read_csv('{secret}')) SELECT user_id, ts, 1 AS f FROM tx",
    "file reader after LATERAL": "SELECT t.user_id, t.ts, x.content AS f FROM tx t, LATERAL read_text('{secret}') x",
    "file as a table name": "SELECT t.user_id, t.ts, 1 AS f FROM tx t JOIN '{secret}' s ON true",
    "SQL hidden in a string": (
        "SELECT t.user_id, t.ts, 1 AS f FROM tx t, LATERAL json_execute_serialized_sql("
        "json_serialize_sql('SELECT content FROM read_text(''{secret}'')')) x"
    ),
    "SUMMARIZE a file": "SELECT user_id, ts, (SELECT count(*) FROM (SUMMARIZE '{secret}')) AS f FROM tx",
    "SUMMARIZE in a CTE": "WITH s AS (SUMMARIZE '{secret}') SELECT user_id, ts, 1 AS f FROM tx",
    "settings catalog": "SELECT user_id, ts, (SELECT min(setting) FROM pg_settings) AS f FROM tx",
    "sqlite_master": "SELECT user_id, ts, (SELECT count(*) FROM sqlite_master) AS f FROM tx",
    "duckdb_views": "SELECT user_id, ts, (SELECT count(*) FROM duckdb_views) AS f FROM tx",
    "pragma table function": "SELECT user_id, ts, (SELECT count(*) FROM pragma_table_info('tx')) AS f FROM tx",
    "settings function": "SELECT user_id, ts, (SELECT current_setting('temp_directory')) AS f FROM tx",
    "environment": "SELECT user_id, ts, getenv('HOME') AS f FROM tx",
    "variables": "SELECT user_id, ts, getvariable('secret') AS f FROM tx",
    "duckdb_settings()": "SELECT user_id, ts, (SELECT min(value) FROM duckdb_settings()) AS f FROM tx",
    "profiling to a file": "SELECT t.user_id, t.ts, 1 AS f FROM tx t, LATERAL enable_profiling() p",
    "write a log": "SELECT user_id, ts, write_log('{out}') AS f FROM tx",
    "query() table function": "SELECT t.user_id, t.ts, 1 AS f FROM tx t, query('SELECT 1') q",
    "COPY": "COPY (SELECT 1) TO '{out}'",
    "ATTACH": "ATTACH '{out}' AS other",
    "two statements": "SELECT user_id, ts, amount AS f FROM tx; COPY (SELECT 1) TO '{out}'",
    "PRAGMA": "PRAGMA enable_profiling",
    "SET": "SET enable_external_access = true",
    "INSTALL": "INSTALL httpfs",
    "DESCRIBE": "SELECT t.user_id, t.ts, 1 AS f FROM tx t, (DESCRIBE tx) d",
}


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(f"TOPSECRET-{uuid.uuid4().hex}\n")
    return path


def _sql(attack: str, secret: Path, out: Path) -> str:
    return ATTACKS[attack].format(secret=secret, out=out)


def _spec(name: str, sql: str) -> dict[str, Any]:
    return {
        "name": name, "sql": sql, "entity": ["user_id"], "timestamp": "ts", "created_timestamp": None,
        "ttl": None, "description": "", "owner": "mallory", "tags": [],
        "features": [{"name": "f", "type": "float64", "duckdb_type": "DOUBLE", "description": ""}],
        "lineage": {}, "sources": ["tx"],
    }  # fmt: skip


def _plant(registry_db: Path, name: str, sql: str) -> None:
    """Write a view straight into the registry's database, past every check of the registry:
    what a compromised registry, an older release or a hand-edited file could hold."""
    reg = registry_client.connect(f"sqlite:///{registry_db}")
    reg.apply(_spec(name, "SELECT user_id, ts, amount AS f FROM tx"))
    con = sqlite3.connect(registry_db)
    try:
        con.execute("UPDATE view_versions SET spec = ? WHERE name = ?", (json.dumps(_spec(name, sql)), name))
        con.commit()
    finally:
        con.close()


def _victim(folder: Path, registry: str, token: str | None = None) -> jf.Workspace:
    ws = jf.Workspace(folder, registry=registry, token=token, online_store=f"sqlite:///{folder}/online.db")
    ws.register_source("tx", TX, timestamp="ts")
    return ws


def _assert_refused(exc: BaseException, secret: Path) -> None:
    assert isinstance(exc, FeaturesError), f"{type(exc).__name__}: {exc}"
    assert secret.read_text().strip() not in str(exc)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_workspace_refuses_hostile_feature_sql(attack: str, tmp_path: Path, secret: Path) -> None:
    out = tmp_path / "written.out"
    ws = _victim(tmp_path / "ws", f"sqlite:///{tmp_path}/registry.db")
    with pytest.raises(FeaturesError) as raised:
        ws.feature_view("evil", _sql(attack, secret, out), entity="user_id", timestamp="ts")
    _assert_refused(raised.value, secret)
    assert not out.exists()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_planted_registry_view_is_refused_where_it_is_used(
    attack: str, tmp_path: Path, secret: Path
) -> None:
    out = tmp_path / "written.out"
    registry_db = tmp_path / "registry.db"
    _plant(registry_db, "evil", _sql(attack, secret, out))
    ws = _victim(tmp_path / "victim", f"sqlite:///{registry_db}")
    _assert_every_use_refused(ws, "evil@1:f", secret)
    assert not out.exists()


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.txt"
    path.write_text(f"{ADMIN} admin admin\n{WRITER} write mallory\n{READER} read reader\n")
    return path


@pytest.fixture
def planted_server(tmp_path: Path, tokens: Path, secret: Path) -> Iterator[tuple[str, Path]]:
    registry_db = tmp_path / "served" / "registry.db"
    registry_db.parent.mkdir()
    out = tmp_path / "written.out"
    for i, attack in enumerate(sorted(ATTACKS)):
        _plant(registry_db, f"evil{i}", _sql(attack, secret, out))
    with start_server(f"sqlite:///{registry_db}", token_file=tokens, log=tmp_path / "server.log") as server:
        yield server.url, out


def test_the_registry_server_refuses_hostile_views_when_written(
    tmp_path: Path, tokens: Path, secret: Path
) -> None:
    with start_server(f"sqlite:///{tmp_path}/r.db", token_file=tokens, log=tmp_path / "server.log") as server:
        headers = {"Authorization": f"Bearer {WRITER}"}
        for attack in sorted(ATTACKS):
            r = httpx.post(
                f"{server.url}/api/v1/views",
                json={"spec": _spec("evil", _sql(attack, secret, tmp_path / "x"))},
                headers=headers,
            )
            assert r.status_code == 422, (attack, r.status_code, r.text)
            assert secret.read_text().strip() not in r.text


def test_a_victim_of_a_hostile_registry_server_gets_a_clear_error(
    planted_server: tuple[str, Path], tmp_path: Path, secret: Path
) -> None:
    url, out = planted_server
    ws = _victim(tmp_path / "victim", url, token=READER)
    for i, attack in enumerate(sorted(ATTACKS)):
        with pytest.raises(FeaturesError) as raised:
            ws.training_frame(LABELS, [f"evil{i}:*"], timestamp="label_ts")
        _assert_refused(raised.value, secret)
        assert attack
    assert not out.exists()


def test_materialization_jobs_of_hostile_views_fail_without_leaking(
    planted_server: tuple[str, Path], secret: Path
) -> None:
    """The escalation path: a job's error went back to a read token with the file's text in it."""
    url, out = planted_server
    writer = {"Authorization": f"Bearer {WRITER}"}
    reader = {"Authorization": f"Bearer {READER}"}
    for i in range(len(ATTACKS)):
        r = httpx.post(f"{url}/api/v1/materializations", json={"views": [f"evil{i}"]}, headers=writer)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            job = httpx.get(f"{url}/api/v1/materializations/{job_id}", headers=reader).json()
            if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert job["status"] == "failed", job
        assert secret.read_text().strip() not in json.dumps(job)
        assert "/proc" not in job["error"] and ADMIN not in json.dumps(job)
    assert not out.exists()


def test_the_sandbox_is_a_second_wall(tmp_path: Path, secret: Path) -> None:
    """Even SQL that got past the parse-tree checks cannot reach outside the sources."""
    data = tmp_path / "data"
    data.mkdir()
    TX.to_parquet(data / "tx.parquet")
    ws = jf.Workspace(tmp_path / "ws")
    ws.register_source("tx", data / "tx.parquet", timestamp="ts")
    assert ws.duckdb.feature_arrow("SELECT count(*) AS n FROM tx").column("n").to_pylist() == [3]
    for query in (
        f"SELECT * FROM read_text('{secret}')",
        f"SELECT * FROM read_parquet('{data}/../secret.txt')",
        "SELECT * FROM read_text('/proc/self/environ')",
        f"COPY (SELECT 1) TO '{tmp_path}/out.csv'",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "INSTALL httpfs",
        "LOAD httpfs",
    ):
        with pytest.raises(FeaturesError) as raised:
            ws.duckdb.feature_arrow(query)
        _assert_refused(raised.value, secret)
    assert not (tmp_path / "out.csv").exists()
    # the notebook owner's own exploration SQL keeps a full DuckDB
    assert ws.sql(f"SELECT content FROM read_text('{secret}')")["content"][0] == secret.read_text()


#: Windowed views: the same attacks where a windowed view's SQL has room for them (aggregate
#: argument, FILTER, the FROM, a CTE); each must be refused however the view arrives.
WINDOWED_ATTACKS = {
    "file reader in an aggregate": "SELECT user_id, max((SELECT content FROM read_text('{secret}'))) AS f FROM tx GROUP BY user_id",
    "file reader in the FROM": "SELECT user_id, count(*) AS f FROM read_csv('{secret}') GROUP BY user_id",
    "environment in a FILTER": "SELECT user_id, count(*) FILTER (WHERE getenv('HOME') <> '') AS f FROM tx GROUP BY user_id",
    "settings in a CTE": "WITH s AS (SELECT * FROM duckdb_settings()) SELECT user_id, count(*) AS f FROM tx GROUP BY user_id",
    "SQL hidden in a string": (
        "SELECT t.user_id, count(x.content) AS f FROM tx t, LATERAL json_execute_serialized_sql("
        "json_serialize_sql('SELECT content FROM read_text(''{secret}'')')) x GROUP BY t.user_id"
    ),
    "write a log": "SELECT user_id, max(write_log('{out}')) AS f FROM tx GROUP BY user_id",
}


def _windowed_spec(name: str, sql: str) -> dict[str, Any]:
    return {
        **_spec(name, sql), "windows": ["1d"],
        "features": [{"name": "f_1d", "type": "int64", "duckdb_type": "BIGINT", "description": ""}],
    }  # fmt: skip


def _plant_windowed(registry_db: Path, name: str, sql: str) -> None:
    reg = registry_client.connect(f"sqlite:///{registry_db}")
    reg.apply(_windowed_spec(name, "SELECT user_id, count(*) AS f FROM tx GROUP BY user_id"))
    con = sqlite3.connect(registry_db)
    try:
        spec = json.dumps(_windowed_spec(name, sql))
        con.execute("UPDATE view_versions SET spec = ? WHERE name = ?", (spec, name))
        con.commit()
    finally:
        con.close()


@pytest.mark.parametrize("attack", sorted(WINDOWED_ATTACKS))
def test_hostile_windowed_views_are_refused_everywhere(attack: str, tmp_path: Path, secret: Path) -> None:
    out = tmp_path / "written.out"
    sql = WINDOWED_ATTACKS[attack].format(secret=secret, out=out)
    registry_db = tmp_path / "registry.db"
    ws = _victim(tmp_path / "ws", f"sqlite:///{registry_db}")
    with pytest.raises(FeaturesError) as raised:  # defined here
        ws.feature_view("evil", sql, entity="user_id", timestamp="ts", windows=["1d"])
    _assert_refused(raised.value, secret)
    _plant_windowed(registry_db, "evil", sql)  # planted in the registry, used by a victim
    victim = _victim(tmp_path / "victim", f"sqlite:///{registry_db}")
    _assert_every_use_refused(victim, "evil@1:f_1d", secret)
    assert not out.exists()


def test_the_registry_server_refuses_hostile_windowed_views(
    tmp_path: Path, tokens: Path, secret: Path
) -> None:
    with start_server(f"sqlite:///{tmp_path}/r.db", token_file=tokens, log=tmp_path / "server.log") as server:
        for attack, text in sorted(WINDOWED_ATTACKS.items()):
            sql = text.format(secret=secret, out=tmp_path / "x")
            r = httpx.post(
                f"{server.url}/api/v1/views",
                json={"spec": _windowed_spec("evil", sql)},
                headers={"Authorization": f"Bearer {WRITER}"},
            )
            assert r.status_code == 422, (attack, r.status_code, r.text)
            assert secret.read_text().strip() not in r.text
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "role, kwargs",
    [
        ("entity key", {"entity": "user_id\n__import__('os').system('touch PWNED')  #"}),
        ("timestamp", {"timestamp": "ts; DROP TABLE tx"}),
        ("created_timestamp", {"created_timestamp": "ts\n"}),
    ],
)
def test_names_are_identifiers(ws: jf.Workspace, role: str, kwargs: dict[str, str]) -> None:
    ws.register_source("tx", TX, timestamp="ts")
    args = {"entity": "user_id", "timestamp": "ts", **kwargs}
    with pytest.raises(FeatureViewError, match=f"{role} column .* not a valid identifier"):
        ws.feature_view("v", "SELECT user_id, ts, amount FROM tx", **args)  # type: ignore[arg-type]


def test_feature_columns_must_be_identifiers(ws: jf.Workspace) -> None:
    ws.register_source("tx", TX, timestamp="ts")
    with pytest.raises(FeatureViewError, match="alias it"):
        ws.feature_view("v", "SELECT user_id, ts, amount * 2 FROM tx", entity="user_id", timestamp="ts")


def test_allowed_sql_still_works(ws: jf.Workspace) -> None:
    """The allow-list keeps what feature SQL is for: joins, CTEs, windows, lists, JSON, dates."""
    ws.register_source("tx", TX, timestamp="ts")
    sql = """
        WITH w AS (SELECT user_id, ts, amount, row_number() OVER (PARTITION BY user_id ORDER BY ts) AS n FROM tx)
        SELECT w.user_id, w.ts,
               CASE WHEN w.amount > 10 THEN 'big' ELSE 'small' END AS size,
               coalesce(w.amount, 0)::DOUBLE / nullif(w.n, 0) AS per_n,
               list_sum([w.amount, 1.0]) AS plus_one,
               date_trunc('day', w.ts) AS day,
               json_extract_string('{"a": "x"}', '$.a') AS j,
               g.k AS from_series
        FROM w JOIN (SELECT unnest(range(3)) AS k) g ON g.k = w.n - 1
    """
    view = ws.feature_view("v", sql, entity="user_id", timestamp="ts")
    out = ws.training_frame(LABELS, ["v:*"], timestamp="label_ts")
    assert view.feature_names == ["size", "per_n", "plus_one", "day", "j", "from_series"]
    assert out["v__size"].tolist() == ["big", "small"]


def _assert_every_use_refused(ws: jf.Workspace, pinned: str, secret: Path) -> None:
    """The planted view 'evil' is refused wherever a victim uses it, and leaks nothing."""
    uses = {
        "training frame": lambda: ws.training_frame(LABELS, ["evil:*"], timestamp="label_ts"),
        "pinned training frame": lambda: ws.training_frame(LABELS, [pinned], timestamp="label_ts"),
        "preview": lambda: ws.preview("evil"),
        "materialize": lambda: ws.materialize(["evil"], progress=False),
    }
    for use, run in uses.items():
        with pytest.raises(FeaturesError) as raised:
            run()
        _assert_refused(raised.value, secret)
        assert isinstance(raised.value, (UnsafeSQLError, FeatureViewError)) or "unknown source" in str(
            raised.value
        ), (use, raised.value)
