"""Feature SQL safety, analysis and lineage."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

import jupyter_features as jf
from jupyter_features.analysis import column_lineage, parse_feature_sql
from jupyter_features.engines.duckdb import sandbox_describe
from jupyter_features.errors import (
    FeatureViewError,
    TTLError,
    UnknownColumnError,
    UnknownSourceError,
    UnsafeSQLError,
)


@pytest.fixture
def tx_ws(ws: jf.Workspace) -> jf.Workspace:
    tx = pd.DataFrame(
        {
            "user_id": [1, 2],
            "ts": [datetime(2024, 1, 1), datetime(2024, 1, 2)],
            "amount": [1.0, 2.0],
            "merchant": ["a", "b"],
        }
    )
    ws.register_source("tx", tx, timestamp="ts")
    return ws


UNSAFE = [
    "DROP TABLE tx",
    "DELETE FROM tx",
    "INSERT INTO tx VALUES (1)",
    "UPDATE tx SET amount = 0",
    "CREATE TABLE x AS SELECT * FROM tx",
    "COPY tx TO '/tmp/leak.csv'",
    "ATTACH '/tmp/other.db' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA database_list",
    "SET threads = 1",
    "SELECT * FROM tx; DROP TABLE tx",
    "SELECT user_id, ts, 1 AS f FROM read_csv('/etc/passwd')",
    "SELECT user_id, ts, 1 AS f FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    "SELECT * FROM 'https://example.com/x.parquet'",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM glob('/*')",
    "SELECT user_id, ts, getenv('HOME') AS f FROM tx",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM other_db.main.tx",
    "WITH x AS (SELECT * FROM read_json('/etc/x.json')) SELECT * FROM x",
    "SELECT user_id, ts, (SELECT count(*) FROM read_csv('/etc/passwd')) AS f FROM tx",
    "SELECT user_id, ts, current_setting('threads') AS f FROM tx",
]


@pytest.mark.parametrize("sql", UNSAFE)
def test_unsafe_sql_is_refused_and_changes_nothing(tx_ws: jf.Workspace, sql: str) -> None:
    before = tx_ws.sql("SELECT * FROM tx")
    with pytest.raises(jf.errors.FeaturesError) as info:
        tx_ws.feature_view("bad", sql, entity="user_id", timestamp="ts")
    assert "feature view 'bad'" in str(info.value)
    assert isinstance(info.value, (UnsafeSQLError, UnknownSourceError))
    assert "bad" not in tx_ws.views
    pd.testing.assert_frame_equal(tx_ws.sql("SELECT * FROM tx"), before)


def test_sandbox_blocks_file_reads_even_past_the_parser() -> None:
    schemas = {"tx": {"user_id": "BIGINT"}}
    for sql in ("SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM '/etc/hostname'"):
        with pytest.raises(Exception, match="(?i)(disabled|permission|outside|not exist)"):
            sandbox_describe(sql, schemas)
    assert sandbox_describe("SELECT user_id, 1.5 AS f FROM tx", schemas) == [
        ("user_id", "BIGINT"),
        ("f", "DECIMAL(2,1)"),
    ]


def test_unknown_source_did_you_mean(tx_ws: jf.Workspace) -> None:
    with pytest.raises(UnknownSourceError, match="did you mean 'tx'"):
        tx_ws.feature_view("v", "SELECT user_id, ts, amount FROM txs", entity="user_id", timestamp="ts")


def test_missing_columns_are_named(tx_ws: jf.Workspace) -> None:
    with pytest.raises(UnknownColumnError, match="entity column 'user' .*did you mean 'user_id'"):
        tx_ws.feature_view("v", "SELECT user_id, ts, amount FROM tx", entity="user", timestamp="ts")
    with pytest.raises(UnknownColumnError, match="timestamp column 'tss'"):
        tx_ws.feature_view("v", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="tss")
    with pytest.raises(FeatureViewError, match="amout"):
        tx_ws.feature_view("v", "SELECT user_id, ts, amout FROM tx", entity="user_id", timestamp="ts")
    with pytest.raises(FeatureViewError, match="not a timestamp"):
        tx_ws.feature_view(
            "v", "SELECT user_id, amount AS ts, merchant FROM tx", entity="user_id", timestamp="ts"
        )
    with pytest.raises(FeatureViewError, match="no feature columns"):
        tx_ws.feature_view("v", "SELECT user_id, ts FROM tx", entity="user_id", timestamp="ts")
    assert tx_ws.views == {}


@pytest.mark.parametrize("ttl", ["30", "thirty days", "-1d", "0s", "1y", True, [1]])
def test_bad_ttl(tx_ws: jf.Workspace, ttl: object) -> None:
    with pytest.raises(TTLError, match="feature view 'v'"):
        tx_ws.feature_view(
            "v", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts", ttl=ttl
        )  # type: ignore[arg-type]


def test_ttl_forms() -> None:
    assert jf.format_ttl(jf.parse_ttl("30d")) == "30d"
    assert jf.format_ttl(jf.parse_ttl("1d12h")) == "1d12h"
    assert jf.format_ttl(jf.parse_ttl("90 minutes")) == "1h30m"
    assert jf.format_ttl(jf.parse_ttl("1500ms")) == "1500ms"
    assert jf.parse_ttl(None) is None


def test_schema_types_and_lineage(tx_ws: jf.Workspace) -> None:
    users = pd.DataFrame(
        {"user_id": [1], "age": [30], "segment": pd.Categorical(["gold"], categories=["gold", "silver"])}
    )
    tx_ws.register_source("users", users)
    fv = tx_ws.feature_view(
        "v",
        """WITH t AS (SELECT user_id, ts, amount * 2 AS a2, merchant FROM tx)
           SELECT t.user_id, t.ts, a2, merchant, amount_flag, u.age, u.segment, [a2, 1.0]::FLOAT[] AS emb, ts AS seen
           FROM t JOIN users u USING (user_id), (SELECT true AS amount_flag)""",
        entity="user_id", timestamp="ts",
    )  # fmt: skip
    assert fv.schema == {
        "a2": "float64", "merchant": "string", "amount_flag": "bool", "age": "int64",
        "segment": "categorical", "emb": "list<float>", "seen": "timestamp",
    }  # fmt: skip
    assert fv.feature("segment").vocabulary == ["gold", "silver"]
    assert fv.lineage["a2"] == ["tx.amount"]
    assert fv.lineage["age"] == ["users.age"]
    assert fv.sources == ("tx", "users")


def test_lineage_of_window_function() -> None:
    sql = "SELECT user_id, ts, sum(amount) OVER (PARTITION BY user_id ORDER BY ts) AS s FROM tx"
    schema = {"tx": {"user_id": "BIGINT", "ts": "TIMESTAMP", "amount": "DOUBLE"}}
    assert column_lineage(sql, ["s"], schema) == {"s": ["tx.amount", "tx.ts", "tx.user_id"]}


def test_parse_returns_sources_sorted_without_ctes() -> None:
    parsed = parse_feature_sql(
        "WITH c AS (SELECT 1) SELECT * FROM b JOIN a USING (k), c", {"a": 1, "b": 2}, owner="x"
    )
    assert parsed.sources == ("a", "b")


def test_redefinition_keeps_history(tx_ws: jf.Workspace) -> None:
    tx_ws.feature_view("v", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts")
    with pytest.raises(UnsafeSQLError):
        tx_ws.feature_view("v", "DROP TABLE tx", entity="user_id", timestamp="ts")
    assert tx_ws.views["v"].feature_names == ["amount"]
    tx_ws.feature_view("v", "SELECT user_id, ts, amount, merchant FROM tx", entity="user_id", timestamp="ts")
    assert [v.feature_names for v in tx_ws.history("v")] == [["amount"], ["amount", "merchant"]]


def test_sql_that_does_not_tokenize_is_refused(tx_ws: jf.Workspace) -> None:
    with pytest.raises(UnsafeSQLError, match="does not parse"):
        tx_ws.feature_view("v", "SELECT user_id, ts, 'unclosed FROM tx", entity="user_id", timestamp="ts")
