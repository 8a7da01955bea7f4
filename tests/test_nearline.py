"""Nearline: reads as of a time, pushes and the in-process replica, in every online store.

The oracle is ``training_frame`` (itself checked against a brute-force join in
tests/test_pit.py): for every T at or after the last run's end, an online read at T equals
the training frame's row for a label at T over the same rows — the view's and those pushed.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import BASE, ViewCase, normalize, view_frames

import jupyter_features as jf
from jupyter_features.errors import (
    FeaturesError,
    NotMaterializedError,
    UnknownColumnError,
    UnknownFeatureViewError,
)
from jupyter_features.featureview import format_ttl

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
LATER = [
    timedelta(0),
    timedelta(minutes=5),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=3),
    timedelta(days=9),
]


def _define(ws: jf.Workspace, case: ViewCase) -> None:
    ws.register_source("src", case.frame, timestamp="ts")
    cols = ", ".join(case.entity + ["ts"] + ([case.created] if case.created else []) + case.features)
    ws.feature_view(
        case.name, f"SELECT {cols} FROM src", entity=case.entity, timestamp="ts",
        created_timestamp=case.created, ttl=format_ttl(case.ttl),
    )  # fmt: skip


@st.composite
def pushed_rows(draw: Any, case: ViewCase) -> pd.DataFrame:
    """Rows to push: keys, times before and after the run's end (late and new), features."""
    n = draw(st.integers(1, 8))
    data: dict[str, list[Any]] = {k: [draw(st.integers(0, 3)) for _ in range(n)] for k in case.entity}
    data["ts"] = [BASE + timedelta(hours=draw(st.integers(0, 30 * 24))) for _ in range(n)]
    if case.created:
        data["created"] = [BASE + timedelta(days=draw(st.integers(0, 3))) for _ in range(n)]
    data["f_int"] = [draw(st.one_of(st.none(), st.integers(-5, 5))) for _ in range(n)]
    data["f_float"] = [draw(st.one_of(st.none(), st.floats(-10, 10, allow_nan=False))) for _ in range(n)]
    frame = pd.DataFrame(data)
    frame["f_int"] = frame["f_int"].astype("Int64")
    frame["f_float"] = frame["f_float"].astype("float64")
    return frame


def _grid(case: ViewCase) -> list[dict[str, int]]:
    if len(case.entity) == 2:
        return [{"a": i, "b": j} for i in range(4) for j in range(4)]
    return [{"a": i} for i in range(5)]


def _fresh(store_url: str) -> str:
    """A store of its own for one hypothesis example (the fixture's lives across examples)."""
    n = time.monotonic_ns()
    if store_url.startswith("sqlite"):
        return store_url.replace("online.db", f"online{n}.db")
    return store_url + f"e{n}:"  # the query ends with prefix=...:


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12)
    return bool(a == b)


def _assert_online_equals_training(
    ws: jf.Workspace, case: ViewCase, at: datetime, reader: Any = None
) -> None:
    grid = _grid(case)
    labels = pd.DataFrame(grid)
    labels["t"] = at
    train = ws.training_frame(labels, [f"{case.name}:*"], timestamp="t")
    got = (reader or ws.online_features)([f"{case.name}:*"], grid, at=at).to_dict()
    for f in case.features:
        column = f"{case.name}__{f}"
        want, have = normalize(train[column]), normalize(got[column])
        assert len(have) == len(want) and all(map(_same, have, want)), (f, at, have, want)


@SETTINGS
@given(
    data=st.data(),
    composite=st.booleans(),
    with_created=st.booleans(),
    end_day=st.integers(0, 20),
    steps=st.lists(st.sampled_from(["push", "push", "full", "incremental"]), min_size=1, max_size=4),
)
def test_online_equals_training_frame_at_later_times(
    tmp_path: Path,
    store_url: str,
    data: st.DataObject,
    composite: bool,
    with_created: bool,
    end_day: int,
    steps: list[str],
) -> None:
    case = data.draw(view_frames("v", ["a", "b"] if composite else ["a"], with_created))
    ws = jf.Workspace(tmp_path / f"ws{time.monotonic_ns()}", online_store=_fresh(store_url))
    _define(ws, case)
    end = BASE + timedelta(days=end_day)
    ws.materialize([case.name], end=end, progress=False)
    for step in steps:
        if step == "push":
            ws.push(case.name, data.draw(pushed_rows(case)))
        else:
            end += timedelta(hours=data.draw(st.integers(0, 72)))
            ws.materialize([case.name], end=end, incremental=step == "incremental", progress=False)
    # the oracle reads the rows the runs wrote (the view's up to the last end) and every push
    frame = case.frame
    ws.register_source("src", frame[frame["ts"].isna() | (frame["ts"] <= end)], timestamp="ts")
    for later in LATER:
        _assert_online_equals_training(ws, case, end + later)
    with ws.online_replica([case.name]) as replica:
        for later in LATER[:3]:
            _assert_online_equals_training(ws, case, end + later, reader=replica.get)
    ws.close()


def _spend(tmp_path: Path, store_url: str) -> jf.Workspace:
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    tx = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-02"]),
            "amount": [10.0, 20.5, 7.25],
        }
    )
    ws.register_source("tx", tx, timestamp="ts")
    ws.feature_view(
        "spend", "SELECT user_id, ts, amount FROM tx", entity="user_id", timestamp="ts", ttl="30d"
    )
    return ws


END = datetime(2024, 1, 10)


def test_ttl_applies_relative_to_the_read_time(tmp_path: Path, store_url: str) -> None:
    ws = _spend(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    read = lambda at: ws.online_features(["spend:amount"], [{"user_id": 1}, {"user_id": 2}], at=at).to_dict()  # noqa: E731
    assert read(END) == {"spend__amount": [20.5, 7.25]}
    assert read("2024-02-02T00:00:00") == {"spend__amount": [20.5, None]}  # user 2's row is 31 days old
    assert read(datetime(2024, 2, 5)) == {"spend__amount": [None, None]}
    assert ws.online_features(["spend:amount"], [{"user_id": 1}]).to_dict() == {
        "spend__amount": [None]
    }  # now
    with pytest.raises(FeaturesError, match="is not a time"):
        ws.online_features(["spend:amount"], [{"user_id": 1}], at="yesterday")


def test_pushes_are_read_at_once_and_by_training_frames(tmp_path: Path, store_url: str) -> None:
    ws = _spend(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    result = ws.push("spend", [{"user_id": 1, "ts": datetime(2024, 1, 12), "amount": 99.0}])
    assert (result.rows, result.to, result.seq) == (1, "both", result.seq) and result.log_file
    read = lambda at: ws.online_features(["spend:amount"], [{"user_id": 1}, {"user_id": 3}], at=at).to_dict()  # noqa: E731
    assert read(datetime(2024, 1, 11)) == {"spend__amount": [20.5, None]}
    assert read(datetime(2024, 1, 12)) == {"spend__amount": [99.0, None]}
    # a late row (older than what the store holds) counts where it belongs and nowhere else
    ws.push(
        "spend",
        pd.DataFrame(
            {"user_id": [1, 3], "ts": pd.to_datetime(["2024-01-06", "2024-01-03"]), "amount": [5.0, 3.0]}
        ),
    )
    assert read(datetime(2024, 1, 11)) == {"spend__amount": [5.0, 3.0]}
    assert read(datetime(2024, 1, 12)) == {"spend__amount": [99.0, 3.0]}
    labels = pd.DataFrame({"user_id": [1, 1, 3], "t": [datetime(2024, 1, 11), datetime(2024, 1, 12), END]})
    assert ws.training_frame(labels, ["spend:amount"], timestamp="t")["spend__amount"].tolist() == [
        5.0,
        99.0,
        3.0,
    ]
    assert ws.check_online(["spend"], progress=False).ok  # its recompute reads the push log too
    # online only: served, not trained on; offline only: trained on, served after the next run
    ws.push("spend", [{"user_id": 4, "ts": datetime(2024, 1, 11), "amount": 1.0}], to="online")
    ws.push("spend", [{"user_id": 5, "ts": datetime(2024, 1, 11), "amount": 2.0}], to="offline")
    rows = [{"user_id": 4}, {"user_id": 5}]
    assert ws.online_features(["spend:amount"], rows, at=END + timedelta(days=2)).to_dict() == {
        "spend__amount": [1.0, None]
    }
    labels = pd.DataFrame({"user_id": [4, 5], "t": [END + timedelta(days=2)] * 2})
    assert normalize(ws.training_frame(labels, ["spend:amount"], timestamp="t")["spend__amount"]) == [
        None,
        2.0,
    ]
    for incremental in (False, True, False):
        ws.materialize(["spend"], end=END + timedelta(days=1), incremental=incremental, progress=False)
        got = ws.online_features(
            ["spend:amount"], [{"user_id": u} for u in (1, 3, 4, 5)], at=END + timedelta(days=2)
        )
        assert got.to_dict() == {"spend__amount": [99.0, 3.0, 1.0, 2.0]}, incremental


def test_bad_pushes_are_refused_and_write_nothing(tmp_path: Path, store_url: str) -> None:
    ws = _spend(tmp_path, store_url)
    with pytest.raises(NotMaterializedError, match="materialize"):
        ws.push("spend", [{"user_id": 1, "ts": END, "amount": 1.0}])
    ws.materialize(["spend"], end=END, progress=False)
    store = ws.online_store()
    before = store.push_state("spend")
    cases: list[tuple[Any, type[Exception], str]] = [
        ([{"user_id": 1, "amount": 1.0}], UnknownColumnError, "lack column"),
        ([{"user_id": 1, "ts": END, "amount": 1.0, "amout": 2.0}], UnknownColumnError, "not in the view"),
        ([{"user_id": 1, "ts": END, "amount": "lots"}], FeaturesError, "does not fit the view's type"),
        ([{"user_id": 1, "ts": 17, "amount": 1.0}], FeaturesError, "not times"),
        ([{"user_id": None, "ts": END, "amount": 1.0}], FeaturesError, "hold nulls"),
        ("user_id=1", FeaturesError, "DataFrame or a list of dicts"),
        (
            [{"user_id": 1, "ts": END, "amount": 1.0}, {"user_id": "x", "ts": END, "amount": 1.0}],
            FeaturesError,
            "values of one type",
        ),
    ]
    for rows, error, message in cases:
        with pytest.raises(error, match=message):
            ws.push("spend", rows)
    with pytest.raises(UnknownFeatureViewError, match="unknown feature view 'spent'"):
        ws.push("spent", [{"user_id": 1, "ts": END, "amount": 1.0}])
    with pytest.raises(FeaturesError, match="is not one of"):
        ws.push("spend", [{"user_id": 1, "ts": END, "amount": 1.0}], to="nowhere")
    assert store.push_state("spend") == before
    assert not (tmp_path / "ws" / ".jupyter_features" / "pushes" / "spend").exists()


def test_pushes_racing_runs_are_never_lost(tmp_path: Path, store_url: str) -> None:
    ws = _spend(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    pushed: dict[int, float] = {}
    errors: list[BaseException] = []

    def pusher() -> None:
        try:
            for i in range(40):
                user = 100 + i
                ws.push("spend", [{"user_id": user, "ts": END + timedelta(hours=1 + i % 30), "amount": float(i)}],
                        to="online" if i % 5 == 0 else "both")  # fmt: skip
                pushed[user] = float(i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=pusher)
    thread.start()
    runs = 0
    while thread.is_alive() or runs < 2:
        ws.materialize(
            ["spend"], end=END + timedelta(hours=runs * 4), incremental=runs % 2 == 1, progress=False
        )
        runs += 1
    thread.join()
    assert not errors, errors
    ws.materialize(
        ["spend"], end=END + timedelta(hours=5), progress=False
    )  # one more switch after the last push
    at = END + timedelta(days=2)
    users = sorted(pushed)
    got = ws.online_features(["spend:amount"], [{"user_id": u} for u in users], at=at).to_dict()[
        "spend__amount"
    ]
    assert got == [pushed[u] for u in users]
    labels = pd.DataFrame({"user_id": users, "t": [at] * len(users)})
    train = normalize(ws.training_frame(labels, ["spend:amount"], timestamp="t")["spend__amount"])
    assert train == [None if (u - 100) % 5 == 0 else pushed[u] for u in users]


def _wait_for(check: Any, what: str) -> None:
    for _ in range(2000):
        if check():
            return
        time.sleep(0.005)
    raise AssertionError(f"the replica did not follow: {what}")


def _scores_online(tmp_path: Path, store_url: str) -> tuple[jf.Workspace, list[int]]:
    """View ``score`` (50 users, score 1.0 each) materialized into ``store_url`` as of END."""
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    users = list(range(50))
    one = pd.DataFrame({"user_id": users, "ts": [datetime(2024, 1, 1)] * 50, "score": [1.0] * 50})
    ws.register_source("s", one, timestamp="ts")
    ws.feature_view("score", "SELECT user_id, ts, score FROM s", entity="user_id", timestamp="ts")
    ws.materialize(["score"], end=END, progress=False)
    return ws, users


def test_replica_follows_pushes_and_switches_without_mixing_versions(tmp_path: Path, store_url: str) -> None:
    ws, users = _scores_online(tmp_path, store_url)
    rows = [{"user_id": u} for u in users]
    with ws.online_replica(["score"]) as replica:
        assert replica.get(["score:score"], rows, at=END).to_dict() == {"score__score": [1.0] * 50}
        assert replica.get("score:*", [{"user_id": 999}, {"user_id": "x"}], at=END).to_dict() == {
            "score__score": [None, None]
        }
        ws.push("score", [{"user_id": 7, "ts": datetime(2024, 1, 11), "score": 5.0}])
        _wait_for(
            lambda: (
                replica.get(["score:score"], [{"user_id": 7}], at=END + timedelta(days=1))["score__score"]
                == [5.0]
            ),
            "a push",
        )
        assert replica.get(["score:score"], [{"user_id": 7}], at=END).to_dict() == {"score__score": [1.0]}
        mixed: list[Any] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                values = set(replica.get(["score:score"], rows, at=END).to_dict()["score__score"])
                if len(values) != 1:
                    mixed.append(values)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for value in (2.0, 3.0):
                scores = {"user_id": users, "ts": [datetime(2024, 1, 1)] * 50, "score": [value] * 50}
                ws.register_source("s", pd.DataFrame(scores), timestamp="ts")
                ws.materialize(["score"], end=END, progress=False)
                _wait_for(
                    lambda v=value: replica.get(["score:score"], rows, at=END)["score__score"] == [v] * 50,
                    "a switch",
                )
        finally:
            stop.set()
            thread.join()
        assert not mixed, mixed[:3]
        # the push made before the switches is replayed into every new version
        assert replica.get(["score:score"], [{"user_id": 7}], at=END + timedelta(days=1)).to_dict() == {
            "score__score": [5.0]
        }
        assert ws.online_features(
            ["score:score"], [{"user_id": 7}], at=END + timedelta(days=1)
        ).to_dict() == {"score__score": [5.0]}
        assert [kind for _, kind, _, _ in replica.applied].count("version") >= 3
        with pytest.raises(FeaturesError, match="not in this replica"):
            replica.get(["spend:amount"], rows)


def test_replica_applies_many_pushes_through_recent_overlay_and_base(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_features.online import replica as replica_module

    monkeypatch.setattr(replica_module, "_RECENT", 3)  # fold often: recent → overlay → base
    monkeypatch.setattr(replica_module, "_FOLD_MIN", 8)
    ws, users = _scores_online(tmp_path, store_url)
    rows = [{"user_id": u} for u in [*users, 999]]
    times = [END, *(END + timedelta(days=1, hours=h) for h in (0, 3, 7, 30))]
    with ws.online_replica(["score"]) as replica:
        for i in range(16):  # late and early rows, ties included, one entity several times
            at = datetime(2024, 1, 11) + timedelta(hours=(i * 5) % 11)
            batch = [{"user_id": (i * 7 + j) % 50, "ts": at, "score": float(i * 10 + j)} for j in range(4)]
            batch.append({"user_id": 3, "ts": at, "score": float(i)})
            ws.push("score", batch, to="online")
        expected = {t: ws.online_features(["score:score"], rows, at=t).to_dict() for t in times}
        _wait_for(
            lambda: all(replica.get(["score:score"], rows, at=t).to_dict() == expected[t] for t in times),
            "16 pushes",
        )
        assert [kind for _, kind, _, _ in replica.applied].count("push") >= 1


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), max_size=150))
def test_pushed_floats_are_stored_and_journaled_like_the_row_at_a_time_oracle(
    values: list[float | None],
) -> None:
    import pyarrow as pa

    from jupyter_features.online.rows import _stored, dumps, loads

    expected = [None if v is None or v != v else v for v in values]  # NaN is stored as null
    assert _stored(pa.array(values, pa.float64()), "float64") == expected
    rows = [(i, v) for i, v in enumerate(expected)]  # tuples, as a push's records are
    assert loads(dumps(rows)) == [list(r) for r in rows]  # ±Infinity survives the JSON
