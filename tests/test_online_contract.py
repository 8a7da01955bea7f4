"""The contract every online store passes (SQLite, Redis): typed values, keys, versions,
atomic switch, incremental runs, locking and clear errors."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from online_stores import stored_versions

import jupyter_features as jf
from jupyter_features.errors import (
    MaterializationBusyError,
    MaterializationError,
    OnlineStoreError,
    UnknownColumnError,
    UnknownFeatureError,
)
from jupyter_features.online import OnlineResult, open_store


def _tx(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "amount", "country", "vip", "emb"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame


TX = _tx(
    [
        (1, "2024-01-01", 10.0, "US", True, [1.0, 2.0]),
        (1, "2024-01-05", 20.5, "US", False, [3.0, 4.5]),
        (2, "2024-01-02", 7.25, "GB", None, None),
        (3, "2023-06-01", 99.0, "FR", True, [0.0]),  # older than the TTL at end
        (4, "2024-02-01", 1.0, "DE", True, [1.0]),  # after end
    ]
)
SPEND_SQL = """
SELECT user_id, ts, amount, CAST(amount * 2 AS BIGINT) AS doubled, country, vip,
       ts AS seen, emb, CAST(country AS ENUM('US', 'GB', 'FR', 'DE')) AS region
FROM tx
"""
END = datetime(2024, 1, 10)


def _workspace(tmp_path: Path, store_url: str, tx: pd.DataFrame = TX) -> jf.Workspace:
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    ws.register_source("tx", tx, timestamp="ts")
    ws.feature_view("spend", SPEND_SQL, entity="user_id", timestamp="ts", ttl="30d")
    return ws


def test_values_keep_their_types(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    result = ws.materialize(["spend"], end=END, progress=False)["spend"]
    assert (result.rows, result.rows_written, result.mode, result.version) == (2, 2, "full", result.version)
    res = ws.online_features(
        ["spend:*"], [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}, {"user_id": 99}], at=END
    )
    assert isinstance(res, OnlineResult)
    assert res.to_dict() == {
        "spend__amount": [20.5, 7.25, None, None],
        "spend__doubled": [41, 14, None, None],
        "spend__country": ["US", "GB", None, None],
        "spend__vip": [False, None, None, None],
        "spend__seen": [datetime(2024, 1, 5), datetime(2024, 1, 2), None, None],
        "spend__emb": [[3.0, 4.5], None, None, None],
        "spend__region": ["US", "GB", None, None],
    }
    d = res.to_dict()
    assert type(d["spend__doubled"][0]) is int and type(d["spend__vip"][0]) is bool
    frame = res.to_pandas()
    assert list(frame.columns) == ["user_id", *d]
    assert frame["spend__doubled"].dtype == "Int64" and frame["spend__amount"].dtype == "float64"
    assert str(frame["spend__seen"].dtype).startswith("datetime64")
    assert res.types["spend__emb"] == "list<float>"
    # a pushed row of every type reads back typed the same, from the store and from a replica
    pushed = {
        "user_id": 5, "ts": datetime(2024, 1, 9), "amount": 1.5, "doubled": 3, "country": "FR", "vip": True,
        "seen": datetime(2024, 1, 9, 12), "emb": [0.5, -1.0], "region": "FR",
    }  # fmt: skip
    ws.push("spend", [pushed])
    rows = [{"user_id": 1}, {"user_id": 5}, {"user_id": 99}]
    got = ws.online_features(["spend:*"], rows, at=END).to_dict()
    assert {k: v[1] for k, v in got.items()} == {
        f"spend__{k}": v for k, v in pushed.items() if k not in ("user_id", "ts")
    }
    assert type(got["spend__doubled"][1]) is int and type(got["spend__vip"][1]) is bool
    with ws.online_replica(["spend"]) as replica:
        assert replica.get(["spend:*"], rows, at=END).to_dict() == got


def test_selected_features_order_and_repeated_keys(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize("spend", end=END, progress=False)
    rows = [{"user_id": 2}, {"user_id": 1}, {"user_id": 2}, {"user_id": "1"}]
    res = ws.online_features(["spend:country", "spend:amount"], rows, at=END)
    assert res.to_dict() == {
        "spend__country": ["GB", "US", "GB", "US"],
        "spend__amount": [7.25, 20.5, 7.25, 20.5],
    }
    assert ws.online_features(["spend:amount"], [], at=END).to_dict() == {"spend__amount": []}
    single = ws.online_features("spend:doubled", [{"user_id": 1}], at=END)
    assert single.to_dict() == {"spend__doubled": [41]}
    columnar = ws.online_features(["spend:doubled"], {"user_id": [2, 1]}, at=END)  # type: ignore[arg-type]
    assert columnar.to_dict() == {"spend__doubled": [14, 41]}
    # a key that cannot be an integer matches nothing
    assert ws.online_features(["spend:doubled"], [{"user_id": "x"}, {"user_id": None}], at=END).to_dict() == {
        "spend__doubled": [None, None]
    }


def test_composite_keys_with_awkward_text(tmp_path: Path, store_url: str) -> None:
    frame = pd.DataFrame(
        {
            "shop": ["a\x1fb", "a", "a\\", "é ü", "a"],
            "sku": [1, 1, 2, 3, 2],
            "ts": pd.to_datetime(["2024-01-01"] * 5),
            "price": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    ws.register_source("prices", frame, timestamp="ts")
    ws.feature_view("price", "SELECT * FROM prices", entity=["shop", "sku"], timestamp="ts")
    ws.materialize(["price"], end=END, progress=False)
    rows = [{"shop": s, "sku": k} for s, k in zip(frame["shop"], frame["sku"], strict=True)]
    rows.append({"shop": "a", "sku": 3})
    assert ws.online_features(["price:price"], rows, at=END).to_dict() == {
        "price__price": [1.0, 2.0, 3.0, 4.0, 5.0, None]
    }
    assert ws.online_features(["price:price"], [{"shop": "a\\", "sku": "2"}], at=END).to_dict() == {
        "price__price": [3.0]
    }


def test_scan_serves_what_reads_serve(tmp_path: Path, store_url: str) -> None:
    """``scan`` gives every row readers are served — after a full and an incremental run, past-TTL
    rows left out — with the values reads give, in the canonical form (timestamps in µs)."""
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    ws.materialize(["spend"], end=datetime(2024, 2, 6), incremental=True, progress=False)
    store = ws.online_store()
    table, reader = store.scan("spend")
    scanned = {row["user_id"]: row for row in reader.read_all().to_pylist()}
    assert table.version == store.current("spend").version  # type: ignore[union-attr]
    keys = [1, 2, 3, 4]
    read = ws.online_features(["spend:*"], [{"user_id": k} for k in keys], at=datetime(2024, 2, 6)).to_dict()
    served = [k for i, k in enumerate(keys) if read["spend__amount"][i] is not None]
    assert sorted(scanned) == served == [4]  # 1 and 2 are past the 30-day TTL at 2024-02-06
    for name in table.feature_names:
        value = read[f"spend__{name}"][keys.index(4)]
        expected = int(pd.Timestamp(value).value // 1000) if name == "seen" else value
        assert scanned[4][name] == expected, name


def test_new_version_switches_and_old_is_removed(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    first = ws.materialize(["spend"], end=END, progress=False)["spend"]
    before = ws.online_features(["spend:amount"], [{"user_id": 4}], at=END).to_dict()
    second = ws.materialize(["spend"], end=datetime(2024, 2, 6), progress=False)["spend"]
    assert second.version > first.version
    assert ws.online_features(["spend:amount"], [{"user_id": 4}], at=datetime(2024, 2, 6)).to_dict() == {
        "spend__amount": [1.0]
    }
    assert before == {"spend__amount": [None]}
    # a reader that cached the first version follows the switch on its next read
    assert ws.online_features(["spend:amount", "spend:country"], [{"user_id": 1}], at=END).to_dict()[
        "spend__amount"
    ] == [None]  # 2024-01-05 is older than 30 days at 2024-02-06
    store = open_store(store_url)
    try:
        assert store.current("spend").version == second.version  # type: ignore[union-attr]
        assert _versions_present(store_url, "spend") == [second.version]
    finally:
        store.close()


def _versions_present(url: str, view: str) -> list[int]:
    """Every version of ``view`` that still has data in the store (served or garbage)."""
    if url.startswith("sqlite"):
        import sqlite3

        con = sqlite3.connect(url.split("sqlite:///", 1)[1])
        try:
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            con.close()
        import re

        found = (re.fullmatch(rf"{view}__v(\d+)(__rows|__tiles)?", n) for n in names)
        return sorted({int(m.group(1)) for m in found if m})
    return sorted(stored_versions(url, view))


def test_redefined_view_is_read_with_its_new_schema(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    assert ws.online_features(["spend:*"], [{"user_id": 1}], at=END).to_dict()["spend__doubled"] == [41]
    reader = jf.Workspace(tmp_path / "reader", online_store=store_url)  # caches version 1's plan
    assert reader.online_features(["spend:doubled"], [{"user_id": 1}], at=END).to_dict() == {
        "spend__doubled": [41]
    }
    ws.feature_view(
        "spend", "SELECT user_id, ts, country AS doubled FROM tx", entity="user_id", timestamp="ts"
    )
    ws.materialize(["spend"], end=END, progress=False)
    assert reader.online_features(["spend:doubled"], [{"user_id": 1}], at=END).to_dict() == {
        "spend__doubled": ["US"]
    }
    with pytest.raises(UnknownFeatureError, match="no feature 'amount'"):
        reader.online_features(["spend:amount"], [{"user_id": 1}], at=END)


def test_incremental_reads_only_new_rows_and_upserts(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url, TX.iloc[:3])
    ws.materialize(["spend"], end=END, progress=False)
    more = pd.concat(
        [
            TX.iloc[:3],
            _tx([(2, "2024-01-12", 8.0, "GB", True, [9.0]), (5, "2024-01-11", 5.0, "US", False, [])]),
        ]
    )
    ws.register_source("tx", more, timestamp="ts")
    result = ws.materialize(["spend"], end=datetime(2024, 1, 15), incremental=True, progress=False)["spend"]
    assert (result.mode, result.rows_written, result.rows) == ("incremental", 2, 3)
    assert result.since == END
    res = ws.online_features(
        ["spend:amount", "spend:emb"], [{"user_id": u} for u in (1, 2, 5)], at=datetime(2024, 1, 15)
    ).to_dict()
    assert res == {"spend__amount": [20.5, 8.0, 5.0], "spend__emb": [[3.0, 4.5], [9.0], []]}
    # TTL keeps applying as of each run's end: user 1 (2024-01-05) expires by 2024-02-10
    late = ws.materialize(["spend"], end=datetime(2024, 2, 10), incremental=True, progress=False)["spend"]
    assert late.rows_written == 0
    res = ws.online_features(
        ["spend:amount"], [{"user_id": u} for u in (1, 2, 5)], at=datetime(2024, 2, 10)
    ).to_dict()
    assert res == {"spend__amount": [None, 8.0, 5.0]}
    with pytest.raises(MaterializationError, match="before the last run's watermark"):
        ws.materialize(["spend"], end=END, incremental=True, progress=False)


def test_incremental_after_a_redefinition_runs_in_full(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    ws.feature_view("spend", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts")
    result = ws.materialize(["spend"], end=END, incremental=True, progress=False)["spend"]
    assert result.mode == "full" and result.rows == 3


def test_second_materialization_of_a_view_fails_clearly(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    store = open_store(store_url)
    try:
        with store.lock("spend"):
            with pytest.raises(MaterializationBusyError, match="already being materialized"):
                ws.materialize(["spend"], end=datetime(2024, 2, 2), progress=False)
            # other views are not blocked
            ws.feature_view("other", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts")
            ws.materialize(["other"], end=END, progress=False)
        ws.materialize(["spend"], end=datetime(2024, 2, 2), progress=False)  # free again
    finally:
        store.close()
    assert ws.online_features(["spend:amount"], [{"user_id": 4}], at=datetime(2024, 2, 2)).to_dict() == {
        "spend__amount": [1.0]
    }


def test_concurrent_runs_never_interleave(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        local = _workspace(tmp_path, store_url)
        barrier.wait()
        try:
            local.materialize(["spend"], end=END, progress=False)
            outcomes.append("ok")
        except MaterializationBusyError:
            outcomes.append("busy")

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "ok" in outcomes and len(outcomes) == 2
    assert ws.online_features(["spend:amount"], [{"user_id": 1}], at=END).to_dict() == {
        "spend__amount": [20.5]
    }


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path, store_url: str) -> None:
    import subprocess
    import sys

    ws = _workspace(tmp_path, store_url)
    # a process takes the lock and dies without releasing it
    code = (
        "import os, sys; from jupyter_features.online import open_store\n"
        f"s = open_store({store_url!r}); s.lock('spend').__enter__(); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    ws.materialize(["spend"], end=END, progress=False)
    assert ws.online_features(["spend:amount"], [{"user_id": 1}], at=END).to_dict() == {
        "spend__amount": [20.5]
    }


def test_failed_run_leaves_previous_version_served(tmp_path: Path, store_url: str) -> None:
    from jupyter_features.materialize import materialize_view

    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)

    def explode(view: str, done: int, total: int) -> None:
        if done:
            raise RuntimeError("boom")

    store = open_store(store_url)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            materialize_view(
                ws.engine,
                ws.get_view("spend"),
                store,
                end=datetime(2024, 2, 2),
                progress=False,
                on_progress=explode,
            )
        served = store.current("spend")
        assert served is not None and served.end == END
    finally:
        store.close()
    assert ws.online_features(["spend:amount"], [{"user_id": 4}], at=END).to_dict() == {
        "spend__amount": [None]
    }
    assert len(_versions_present(store_url, "spend")) == 1


def test_clear_errors(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    with pytest.raises(OnlineStoreError, match="'spend' is not materialized"):
        ws.online_features(["spend:amount"], [{"user_id": 1}], at=END)
    ws.materialize(["spend"], end=END, progress=False)
    with pytest.raises(UnknownFeatureError, match="did you mean 'amount'"):
        ws.online_features(["spend:amout"], [{"user_id": 1}], at=END)
    with pytest.raises(UnknownColumnError, match="entity row 1 has no key 'user_id'"):
        ws.online_features(["spend:amount"], [{"user_id": 1}, {"id": 2}], at=END)
    with pytest.raises(OnlineStoreError, match="is not what .* serves"):
        ws.online_features(["spend@7:amount"], [{"user_id": 1}], at=END)


def test_unknown_scheme() -> None:
    with pytest.raises(OnlineStoreError, match="unknown scheme"):
        open_store("mysql://x")


def test_public_surface() -> None:
    import sys

    import jupyter_features.online as online

    public = {
        n for n, v in vars(online).items()
        if not n.startswith("_") and not isinstance(v, type(sys))
        and getattr(v, "__module__", "").startswith("jupyter_features")
    }  # fmt: skip
    assert public == set(online.__all__) - {"STORES"}  # STORES: a plain dict, no __module__
    assert all(hasattr(online, n) for n in online.__all__)
    assert jf.OnlineResult is OnlineResult


def test_large_batches(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    rows = [{"user_id": i % 7} for i in range(40_000)]
    got = ws.online_features(["spend:doubled"], rows, at=END).to_dict()["spend__doubled"]
    assert got == [{1: 41, 2: 14}.get(i % 7) for i in range(40_000)]


def test_store_urls_hide_passwords() -> None:
    store = open_store("redis://user:s3cret@127.0.0.1:1/2?prefix=x:")
    try:
        assert "s3cret" not in store.url and store.url.startswith("redis://user:***@127.0.0.1:1/2")
        with pytest.raises(OnlineStoreError, match="unreachable") as info:
            store.current("v")
        assert "s3cret" not in str(info.value)
    finally:
        store.close()


def test_a_run_with_no_rows_serves_nothing(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    empty = ws.materialize(["spend"], end=datetime(2020, 1, 1), progress=False)["spend"]
    assert (empty.rows, empty.rows_written) == (0, 0)
    assert ws.online_features(["spend:amount"], [{"user_id": 1}, {"user_id": 2}], at=END).to_dict() == {
        "spend__amount": [None, None]
    }
