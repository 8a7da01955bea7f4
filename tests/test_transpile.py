"""Transpiling feature SQL to Spark, Snowflake and BigQuery: what passes, what is refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import jupyter_features as jf
from jupyter_features.errors import TranspileError
from jupyter_features.transpile import CONSTRUCTS, DIALECTS, constructs_table, transpile

SCHEMA = {
    "tx": {
        "user_id": "BIGINT", "ts": "TIMESTAMP", "day": "DATE", "amount": "DOUBLE", "n": "INTEGER",
        "name": "VARCHAR", "kind": "ENUM('a', 'b')", "emb": "DOUBLE[]",
    }
}  # fmt: skip

WINDOW_7D = (
    "SELECT user_id, ts, sum(amount) OVER (PARTITION BY user_id ORDER BY ts "
    "RANGE BETWEEN INTERVAL 7 DAYS PRECEDING AND CURRENT ROW) AS spend_7d FROM tx"
)


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("spark", "ORDER BY ts NULLS LAST RANGE BETWEEN INTERVAL '7' DAYS PRECEDING AND CURRENT ROW"),
        ("snowflake", "RANGE BETWEEN INTERVAL '7 DAYS' PRECEDING AND CURRENT ROW"),
    ],
)
def test_time_windows_carry_to_spark_and_snowflake(dialect: str, expected: str) -> None:
    assert expected in transpile(WINDOW_7D, dialect, schema=SCHEMA)


def test_time_windows_are_refused_for_bigquery() -> None:
    with pytest.raises(
        TranspileError, match="RANGE window frame with an INTERVAL offset .* bigquery: .*numeric ORDER BY"
    ):
        transpile(WINDOW_7D, "bigquery", schema=SCHEMA)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_common_feature_sql_carries_everywhere(dialect: str) -> None:
    sql = """
        WITH daily AS (
            SELECT user_id, date_trunc('day', ts) AS ts, count(*) AS n, avg(amount) FILTER (WHERE amount > 0) AS avg_pos,
                   max(CASE WHEN name LIKE 'x%' THEN 1 ELSE 0 END) AS has_x
            FROM tx GROUP BY ALL
        )
        SELECT user_id, ts, n, coalesce(avg_pos, 0) AS avg_pos, has_x,
               lag(n) OVER (PARTITION BY user_id ORDER BY ts) AS prev_n,
               CAST(round(avg_pos) AS BIGINT) AS avg_rounded, CAST(n AS BIGINT) AS n64,
               ts + INTERVAL 1 DAY AS next_day, extract(year FROM ts) AS y
        FROM daily
        QUALIFY row_number() OVER (PARTITION BY user_id, ts ORDER BY n DESC) = 1
    """
    out = transpile(sql, dialect, schema=SCHEMA)
    assert "daily" in out and "LAG(" in out.upper()
    if dialect == "spark":  # Spark has no QUALIFY: sqlglot filters a subquery instead
        assert "QUALIFY" not in out.upper() and "ROW_NUMBER()" in out.upper()


REFUSED = [
    (
        "SELECT a.user_id, a.ts, b.amount FROM tx a ASOF JOIN tx b ON a.user_id = b.user_id AND a.ts >= b.ts",
        "ASOF JOIN",
    ),
    ("SELECT user_id, ts FROM tx SEMI JOIN tx t2 USING (user_id)", "SEMI JOIN"),
    ("SELECT user_id, ts, my_udf(amount) AS y FROM tx", r"function my_udf\(\)"),
    (
        "SELECT user_id, ts, CAST(amount AS INTEGER) AS y FROM tx",
        r"CAST\(.*amount AS INT.*\(its operand is DOUBLE\).*rounds",
    ),
    ("SELECT user_id, ts, CAST(name AS BIGINT) AS y FROM tx", r"CAST\(.*name AS BIGINT\)"),
    ("SELECT user_id, ts, log(amount) AS y FROM tx", r"one-argument log\(x\)"),
    ("SELECT user_id, ts, extract(dow FROM ts) AS y FROM tx", r"EXTRACT\(DOW"),
    ("SELECT user_id, ts, epoch_ms(ts) AS y FROM tx", "function"),
    ("SELECT user_id, ts, list_transform(emb, x -> x * 2) AS y FROM tx", "function"),
    ("SELECT user_id, ts, ts - day AS y FROM tx", "subtracting dates or timestamps"),
    ("SELECT user_id, ts, CAST(amount AS STRUCT(a INTEGER)) AS y FROM tx", "the type STRUCT"),
]


@pytest.mark.parametrize(("sql", "named"), REFUSED)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_unfaithful_constructs_are_refused_by_name(sql: str, named: str, dialect: str) -> None:
    with pytest.raises(TranspileError, match=named) as info:
        transpile(sql, dialect, schema=SCHEMA, owner="feature view 'v'")
    message = str(info.value)
    assert message.startswith("feature view 'v': ") and f"to {dialect}" in message and "README" in message


@pytest.mark.parametrize(
    ("sql", "refused_in", "named"),
    [
        ("SELECT user_id, ts, greatest(amount, 0) AS g FROM tx", {"bigquery"}, "GREATEST"),
        ("SELECT user_id, median(amount) AS m, max(ts) AS ts FROM tx GROUP BY 1", {"bigquery"}, "median"),
        ("SELECT user_id, ts, CAST([1.0, 2.0] AS DOUBLE[]) AS emb FROM tx", {"snowflake"}, "list<float>"),
        ("SELECT * EXCLUDE (name) FROM tx", {"spark"}, "EXCLUDE"),
    ],
)
def test_dialect_specific_refusals(sql: str, refused_in: set[str], named: str) -> None:
    for dialect in DIALECTS:
        if dialect in refused_in:
            with pytest.raises(TranspileError, match=named):
                transpile(sql, dialect, schema=SCHEMA)
        else:
            assert transpile(sql, dialect, schema=SCHEMA)


def test_casts_need_the_schema_to_prove_an_integer_operand() -> None:
    sql = "SELECT user_id, ts, CAST(n AS BIGINT) AS n64 FROM tx"
    assert "CAST(n AS BIGINT)" in transpile(sql, "spark", schema=SCHEMA)
    with pytest.raises(TranspileError, match="CAST"):
        transpile(sql, "spark")  # without types, n might be fractional


def test_bad_input() -> None:
    with pytest.raises(TranspileError, match="unknown SQL dialect 'oracle'; choose one of: spark"):
        transpile("SELECT 1", "oracle")
    with pytest.raises(TranspileError, match="does not parse"):
        transpile("SELECT FROM WHERE (", "spark")


def test_sql_for_uses_the_workspace_schema(ws: jf.Workspace) -> None:
    tx = pd.DataFrame({"user_id": [1], "ts": [pd.Timestamp("2024-01-01")], "amount": [2.5], "n": [3]})
    ws.register_source("tx", tx, timestamp="ts")
    fv = ws.feature_view(
        "spend",
        WINDOW_7D.replace("spend_7d", "spend_7d, CAST(n AS INTEGER) AS n"),
        entity="user_id",
        timestamp="ts",
    )
    spark_sql = fv.sql_for("spark")
    assert "RANGE BETWEEN INTERVAL '7' DAYS PRECEDING" in spark_sql and "CAST(n AS INT)" in spark_sql
    assert "\n" in spark_sql  # pretty-printed for review
    with pytest.raises(TranspileError, match="feature view 'spend': a RANGE window frame"):
        fv.sql_for("bigquery")


def test_readme_lists_the_supported_constructs() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert constructs_table() in readme, (
        "regenerate the README 'Spark' table with transpile.constructs_table()"
    )
    assert all(c.label in readme for c in CONSTRUCTS)
