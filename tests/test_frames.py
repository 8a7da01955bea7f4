"""Training frames larger than memory: streamed to Arrow or parquet, labels from a parquet path
or SQL, under the engine's memory limit, spilling to its temp directory."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from oracle import ViewCase, label_frames, normalize, view_frames

import jupyter_features as jf
from jupyter_features.errors import LabelFrameError
from jupyter_features.featureview import format_ttl


def _define(ws: jf.Workspace, case: ViewCase) -> None:
    ws.register_source(f"src_{case.name}", case.frame, timestamp="ts")
    cols = ", ".join(case.entity + ["ts"] + ([case.created] if case.created else []) + case.features)
    ws.feature_view(
        case.name, f"SELECT {cols} FROM src_{case.name}", entity=case.entity, timestamp="ts",
        created_timestamp=case.created, ttl=format_ttl(case.ttl),
    )  # fmt: skip


def _same(streamed: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal column by column, values compared as the oracle tests compare them."""
    expected = expected.reset_index(drop=True)
    assert list(streamed.columns) == list(expected.columns)
    assert len(streamed) == len(expected)
    for col in expected.columns:
        if pd.api.types.is_datetime64_any_dtype(expected[col]):
            assert list(pd.to_datetime(streamed[col])) == list(expected[col]), col
        else:
            assert normalize(streamed[col]) == normalize(expected[col]), col


@settings(
    max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(data=st.data(), tie_heavy=st.booleans())
def test_arrow_and_parquet_equal_pandas(tmp_path: Path, data: st.DataObject, tie_heavy: bool) -> None:
    ws = jf.Workspace(tmp_path)
    cases = [
        data.draw(view_frames("by_a", ["a"], data.draw(st.booleans()), tie_heavy)),
        data.draw(view_frames("by_ab", ["a", "b"], data.draw(st.booleans()), tie_heavy)),
    ]
    for case in cases:
        _define(ws, case)
    labels = data.draw(label_frames(["a", "b"]))
    refs = [f"{c.name}:*" for c in cases]
    expected = ws.training_frame(labels, refs, timestamp="label_ts")

    reader = ws.training_frame(labels, refs, timestamp="label_ts", to="arrow")
    assert isinstance(reader, pa.RecordBatchReader)
    _same(reader.read_all().to_pandas(), expected)

    out = ws.training_frame(labels, refs, timestamp="label_ts", to="parquet", path=tmp_path / "out.parquet")
    assert out == tmp_path / "out.parquet"
    _same(pq.read_table(out).to_pandas(), expected)


def _ts(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, 1) + timedelta(days=day, hours=hour)


@pytest.fixture
def spend(tmp_path: Path) -> jf.Workspace:
    ws = jf.Workspace(tmp_path)
    tx = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2],
            "ts": [_ts(0), _ts(2), _ts(2), _ts(5), _ts(1)],
            "created": [_ts(0), _ts(2, 1), _ts(2, 3), _ts(5), _ts(1)],
            "amount": [10.0, 20.0, 25.0, 50.0, 7.0],
        }
    )
    ws.register_source("tx", tx, timestamp="ts")
    ws.feature_view(
        "spend", "SELECT user_id, ts, created, amount FROM tx", entity="user_id",
        timestamp="ts", created_timestamp="created", ttl="2d",
    )  # fmt: skip
    return ws


LABELS = pd.DataFrame(
    {
        "user_id": [1, 1, 2, 3, 1],
        "label_ts": [_ts(2), _ts(4, 1), _ts(3), _ts(3), _ts(5)],
        "y": ["a", "b", "c", "d", "e"],
    }
)
EXPECTED = [25.0, None, 7.0, None, 50.0]


def test_labels_as_parquet_path_glob_and_sql(spend: jf.Workspace, tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    LABELS.iloc[:3].to_parquet(tmp_path / "labels" / "part0.parquet", index=False)
    LABELS.iloc[3:].to_parquet(tmp_path / "labels" / "part1.parquet", index=False)
    LABELS.to_parquet(tmp_path / "labels.parquet", index=False)
    for labels in (
        "labels.parquet",  # relative to the workspace root, like sources
        str(tmp_path / "labels.parquet"),
        tmp_path / "labels.parquet",
        "labels/*.parquet",
        f"SELECT * FROM read_parquet('{tmp_path / 'labels.parquet'}')",
    ):
        for to in ("pandas", "arrow", "parquet"):
            path = tmp_path / "out.parquet" if to == "parquet" else None
            got = spend.training_frame(labels, ["spend:amount"], timestamp="label_ts", to=to, path=path)
            frame = (
                got
                if to == "pandas"
                else pq.read_table(got).to_pandas()
                if to == "parquet"
                else got.read_all().to_pandas()
            )
            assert frame["y"].tolist() == LABELS["y"].tolist(), (labels, to)
            assert normalize(frame["spend__amount"]) == EXPECTED, (labels, to)


def test_streamed_frame_keeps_label_columns(spend: jf.Workspace, tmp_path: Path) -> None:
    labels = LABELS.assign(
        label_ts=LABELS["label_ts"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"),
        group=pd.Categorical(["x", "y", "x", "z", "y"]),
        weight=pd.array([1, None, 3, 4, 5], dtype="Int64"),
    )
    table = spend.training_frame(labels, ["spend:amount"], timestamp="label_ts", to="arrow").read_all()
    source = pa.Table.from_pandas(labels, preserve_index=False)
    assert table.schema.names == [*labels.columns, "spend__amount"]
    assert table.select(list(labels.columns)).equals(source)  # types too: the zone, the dictionary
    assert normalize(table["spend__amount"].to_pandas()) == EXPECTED


def test_large_batches_keep_label_order(spend: jf.Workspace) -> None:
    n = 250_000  # several batches and threads: the order still comes from the label rows
    labels = pd.DataFrame(
        {"user_id": [1, 2, 3, 1] * (n // 4), "label_ts": [_ts(2), _ts(3), _ts(3), _ts(5)] * (n // 4)}
    )
    labels["n"] = range(n)
    reader = spend.training_frame(labels, ["spend:amount"], timestamp="label_ts", to="arrow")
    batches = list(reader)
    assert len(batches) > 1
    table = pa.Table.from_batches(batches)
    assert table["n"].to_pylist() == list(range(n))
    assert normalize(table["spend__amount"].to_pandas()[:4]) == [25.0, 7.0, None, 50.0]


def test_bad_requests(spend: jf.Workspace, tmp_path: Path) -> None:
    with pytest.raises(LabelFrameError, match="path="):
        spend.training_frame(LABELS, ["spend:*"], timestamp="label_ts", to="parquet")
    with pytest.raises(LabelFrameError, match="path="):
        spend.training_frame(LABELS, ["spend:*"], timestamp="label_ts", path=tmp_path / "x.parquet")
    with pytest.raises(LabelFrameError, match="'polars'"):
        spend.training_frame(LABELS, ["spend:*"], timestamp="label_ts", to="polars")
    with pytest.raises(LabelFrameError, match="no .parquet file matches"):
        spend.training_frame(tmp_path / "missing.parquet", ["spend:*"], timestamp="label_ts")
    with pytest.raises(LabelFrameError, match="not a time"):
        spend.training_frame(LABELS.assign(label_ts=1), ["spend:*"], timestamp="label_ts", to="arrow")
    with pytest.raises(LabelFrameError, match="reserved"):
        spend.training_frame(LABELS.assign(__jf_row=1), ["spend:*"], timestamp="label_ts", to="arrow")
    with pytest.raises(jf.errors.UnknownColumnError, match="did you mean 'label_tz'"):
        spend.training_frame(
            "SELECT 1 AS user_id, now() AS label_tz", ["spend:*"], timestamp="label_ts", to="arrow"
        )
    with pytest.raises(LabelFrameError, match="VARCHAR"):
        spend.training_frame(LABELS.assign(user_id="1"), ["spend:*"], timestamp="label_ts", to="arrow")
    assert not list(tmp_path.glob("*.partial")) and not (tmp_path / "x.parquet").exists()


# -- the engine's memory settings ---------------------------------------------------------


def _settings(con: duckdb.DuckDBPyConnection) -> tuple[str, int, str]:
    row = con.sql(
        "SELECT current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
    ).fetchall()[0]
    return row[0], int(row[1]), row[2]


def _as_duckdb_shows(memory_limit: str) -> str:
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    return str(con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0])


@pytest.mark.parametrize("how", ["arguments", "features.toml"])
def test_memory_settings_reach_both_connections(tmp_path: Path, how: str) -> None:
    if how == "arguments":
        ws = jf.Workspace(tmp_path, memory_limit="123MB", threads=1, temp_directory="spill")
    else:
        (tmp_path / "features.toml").write_text(
            '[engine]\nmemory_limit = "123MB"\nthreads = 1\ntemp_directory = "spill"\n'
        )
        ws = jf.Workspace(tmp_path)
    expected = (_as_duckdb_shows("123MB"), 1, str(tmp_path / "spill"))
    assert _settings(ws.duckdb.con) == expected
    ws.register_source("tx", LABELS, timestamp="label_ts")  # the sandbox is rebuilt: still applied
    with ws.duckdb.feature_connection() as con:
        assert _settings(con) == expected
        with pytest.raises(duckdb.Error):  # and locked there
            con.execute("SET memory_limit = '10GB'")


def test_join_spills_to_temp_directory_under_a_small_memory_limit(tmp_path: Path) -> None:
    rows, labels = 3_000_000, 1_000_000
    feats = tmp_path / "feats.parquet"
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT n % 50000 AS user_id, TIMESTAMP '2024-01-01' + to_seconds(hash(n) % 31536000) AS ts,
                     hash(n, 1) % 1000 AS amount, (hash(n, 2) % 100000)::DOUBLE AS score
              FROM range({rows}) r(n)) TO '{feats}' (FORMAT parquet)
    """)
    con.execute(f"""
        COPY (SELECT n AS label_id, hash(n, 3) % 50000 AS user_id,
                     TIMESTAMP '2024-01-01' + to_seconds(hash(n, 4) % 31536000) AS label_ts
              FROM range({labels}) r(n)) TO '{tmp_path / "labels.parquet"}' (FORMAT parquet)
    """)
    spill = tmp_path / "spill"
    ws = jf.Workspace(tmp_path, memory_limit="128MB", threads=2, temp_directory=spill)
    ws.register_source("tx", str(feats), timestamp="ts")
    ws.feature_view("v", "SELECT user_id, ts, amount, score FROM tx", entity="user_id", timestamp="ts")
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            seen.update(os.listdir(spill) if spill.exists() else ())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = ws.training_frame(
            "labels.parquet", ["v:*"], timestamp="label_ts", to="parquet", path=tmp_path / "o.parquet"
        )
    finally:
        done.set()
        watcher.join()
    assert any(name.endswith(".tmp") for name in seen), seen  # DuckDB spilled there during the join
    check = con.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE o.label_id <> l.label_id), count(o.v__score)
        FROM read_parquet('{out}') o POSITIONAL JOIN read_parquet('{tmp_path / "labels.parquet"}') l
    """).fetchone()
    assert check is not None
    assert check[0] == labels and check[1] == 0 and check[2] > labels * 0.9
