"""What only the Redis store does: incremental versions kept as changes over a full one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from online_stores import drop_redis_prefix, redis_store_url

import jupyter_features as jf
from jupyter_features.online.redis import RedisStore


@pytest.fixture
def store_url(redis_url: str, unique_prefix: str) -> Iterator[str]:
    url = redis_store_url(redis_url, unique_prefix)
    yield url
    drop_redis_prefix(url)


def _events(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame


def test_incremental_versions_hold_only_changes(tmp_path: Path, store_url: str) -> None:
    base_rows = [(i, "2024-01-01", float(i)) for i in range(100)]
    ws = jf.Workspace(tmp_path, online_store=store_url)
    ws.register_source("events", _events(base_rows), timestamp="ts")
    ws.feature_view("score", "SELECT * FROM events", entity="user_id", timestamp="ts")
    full = ws.materialize(["score"], end=datetime(2024, 1, 2), progress=False)["score"]
    reader = jf.Workspace(tmp_path / "reader", online_store=store_url)
    assert reader.online_features(["score:value"], [{"user_id": 5}]).to_dict() == {"score__value": [5.0]}

    ws.register_source(
        "events", _events([*base_rows, (5, "2024-01-03", 50.0), (200, "2024-01-03", 2.0)]), timestamp="ts"
    )
    first = ws.materialize(["score"], end=datetime(2024, 1, 4), incremental=True, progress=False)["score"]
    ws.register_source(
        "events",
        _events([*base_rows, (5, "2024-01-03", 50.0), (200, "2024-01-03", 2.0), (7, "2024-01-05", 70.0)]),
        timestamp="ts",
    )
    second = ws.materialize(["score"], end=datetime(2024, 1, 6), incremental=True, progress=False)["score"]
    assert (first.rows_written, first.rows, second.rows_written, second.rows) == (2, 101, 1, 101)

    store = RedisStore(store_url)
    try:
        client = store.client
        assert client.get(store.ks.key("score", "current")) == f"{second.version}:{full.version}".encode()
        assert client.hlen(store.ks.key("score", f"v{full.version}")) == 100  # the full version, untouched
        assert client.hlen(store.ks.key("score", f"v{second.version}")) == 3  # only the changes
        assert not client.exists(store.ks.key("score", f"v{first.version}"))  # superseded
        rows = [{"user_id": u} for u in (5, 7, 8, 200, 999)]
        expected = {"score__value": [50.0, 70.0, 8.0, 2.0, None]}
        assert reader.online_features(["score:value"], rows).to_dict() == expected  # follows the switch
        assert ws.online_features(["score:value"], rows).to_dict() == expected

        again = ws.materialize(["score"], end=datetime(2024, 1, 6), progress=False)["score"]  # full again
        assert client.get(store.ks.key("score", "current")) == str(again.version).encode()
        assert client.hlen(store.ks.key("score", f"v{again.version}")) == 101
        assert not client.exists(store.ks.key("score", f"v{full.version}"))
        assert not client.exists(store.ks.key("score", f"v{second.version}"))
        assert reader.online_features(["score:value"], rows).to_dict() == expected
    finally:
        store.close()
