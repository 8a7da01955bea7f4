"""Health checks: ``ws.check_online`` finds exactly what was changed in a store behind its back,
in SQLite and in Redis, and agrees with a brute-force comparison of what readers get against
the latest rows on randomized data; ``ws.check_model`` names what keeps a model from serving;
``jupyter-features check`` and ``%features check`` are the same checks for CI and notebooks."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from online_stores import entity_hash

import jupyter_features as jf
from jupyter_features.cli import main
from jupyter_features.health import HealthReports, ModelReport, OnlineReport
from jupyter_features.sqltext import EVENT_TS

END = datetime(2024, 1, 10)


def _tx() -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            (1, "2024-01-01", 10.0, "US", True),
            (1, "2024-01-05", 20.5, "US", False),
            (2, "2024-01-02", 7.25, "GB", None),
            (3, "2024-01-03", 0.1, "FR", True),
            (4, "2024-01-04", None, None, False),
            (5, "2024-02-01", 1.0, "DE", True),  # after END
        ],
        columns=["user_id", "ts", "amount", "country", "vip"],
    )
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame


SPEND_SQL = "SELECT user_id, ts, amount, country, vip, ts AS seen, [amount, 2.0] AS emb FROM tx"


def _workspace(tmp_path: Path, store_url: str, tx: pd.DataFrame | None = None) -> jf.Workspace:
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    ws.register_source("tx", _tx() if tx is None else tx, timestamp="ts")
    ws.feature_view("spend", SPEND_SQL, entity="user_id", timestamp="ts", ttl="30d")
    return ws


# -- changing a store behind its back ------------------------------------------------------------
def _version(ws: jf.Workspace, view: str) -> int:
    table = ws.online_store().current(view)
    assert table is not None
    return table.version


def set_value(
    ws: jf.Workspace, view: str, key: int, feature: str, value: Any, column: str = "user_id"
) -> None:
    """Write ``value`` over one stored value, the way a hand or a bug would: straight into the store."""
    url = ws.settings.online_store_url
    version = _version(ws, view)
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
            con.execute(f'UPDATE "{view}__v{version}" SET "{feature}" = ? WHERE "{column}" = ?', (value, key))
        return
    table = ws.online_store().current(view)
    assert table is not None
    client, hash_key = entity_hash(url, view, version, str(key))
    raw = client.hget(hash_key, str(key))
    if raw is None and table.base_version is not None:  # an incremental version: the entity is in its base
        raw = client.hget(entity_hash(url, view, table.base_version, str(key))[1], str(key))
    packed = json.loads(raw)
    packed[1 + table.feature_names.index(feature)] = value
    client.hset(hash_key, str(key), json.dumps(packed))
    client.close()


def delete_entity(ws: jf.Workspace, view: str, key: int) -> None:
    url = ws.settings.online_store_url
    version = _version(ws, view)
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
            con.execute(f'DELETE FROM "{view}__v{version}" WHERE user_id = ?', (key,))
        return
    client, hash_key = entity_hash(url, view, version, str(key))
    client.hdel(hash_key, str(key))
    client.close()


def add_entity(ws: jf.Workspace, view: str, key: int, values: list[Any], ts_us: int) -> None:
    url = ws.settings.online_store_url
    version = _version(ws, view)
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
            marks = ", ".join("?" * (2 + len(values)))
            con.execute(f'INSERT INTO "{view}__v{version}" VALUES ({marks})', (key, ts_us, *values))
        return
    client, hash_key = entity_hash(url, view, version, str(key))
    client.hset(hash_key, str(key), json.dumps([ts_us, *values]))
    client.close()


def _us(day: str) -> int:
    return int(pd.Timestamp(day).value // 1000)


def test_a_consistent_store_is_ok(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    rep = ws.check_online(["spend"], progress=False)
    assert isinstance(rep, OnlineReport) and rep.ok
    (check,) = rep.checks
    assert (check.entities, check.values, check.missing, check.extra, check.problem) == (4, 0, 0, 0, "")
    assert check.end == END and check.version == _version(ws, "spend")
    assert rep.mismatches.empty and rep.missing.empty and rep.extra.empty
    assert "✓" in rep._repr_html_() and "✗" not in rep._repr_html_()


def test_a_changed_value_is_reported_exactly(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    set_value(ws, "spend", 2, "amount", 7.250000000000001)  # one ulp away: floats compare exactly
    rep = ws.check_online("spend", progress=False)
    assert not rep.ok
    assert rep.mismatches.to_dict("records") == [
        {"view": "spend", "user_id": 2, "feature": "amount", "offline": 7.25, "online": 7.250000000000001}
    ]
    (check,) = rep.checks
    assert (check.mismatched, check.values, check.per_feature) == (1, 1, {"amount": 1})
    assert rep.missing.empty and rep.extra.empty
    html = rep._repr_html_()
    assert "✗" in html and "7.25" in html
    assert rep.chart() is not None


@pytest.mark.parametrize(
    ("feature", "value", "offline", "online"),
    [
        ("country", "XX", "GB", "XX"),
        ("vip", True, None, True),
        ("seen", _us("2024-01-03"), datetime(2024, 1, 2), datetime(2024, 1, 3)),
        ("emb", None, [7.25, 2.0], None),
    ],
)
def test_each_type_is_compared(
    tmp_path: Path, store_url: str, feature: str, value: Any, offline: Any, online: Any
) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    if feature == "emb" and store_url.startswith("sqlite"):
        value = None  # a BLOB in SQLite; NULL is the change
    set_value(ws, "spend", 2, feature, value)
    rep = ws.check_online(["spend"], progress=False)
    assert rep.mismatches[["user_id", "feature", "offline", "online"]].to_dict("records") == [
        {"user_id": 2, "feature": feature, "offline": offline, "online": online}
    ]
    assert rep.mismatches["offline"].dtype == object and rep.mismatches["online"].dtype == object


def test_null_values_stay_none_beside_text(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    set_value(ws, "spend", 4, "country", "XX")  # offline it is null
    rep = ws.check_online(["spend"], progress=False)
    assert rep.mismatches[["offline", "online"]].to_dict("records") == [{"offline": None, "online": "XX"}]
    assert "offline None, online 'XX'" in "\n".join(rep.lines())


def test_deleted_and_added_entities_are_missing_and_extra(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    delete_entity(ws, "spend", 3)
    add_entity(ws, "spend", 99, [1.0, "NL", True, _us("2024-01-06"), None], _us("2024-01-06"))
    rep = ws.check_online(["spend"], progress=False)
    assert not rep.ok
    assert rep.missing.to_dict("records") == [{"view": "spend", "user_id": 3}]
    assert rep.extra.to_dict("records") == [{"view": "spend", "user_id": 99}]
    assert rep.mismatches.empty
    (check,) = rep.checks
    assert (check.entities, check.missing, check.extra, check.values) == (5, 1, 1, 0)
    text = "\n".join(rep.lines())
    assert "user_id=3: missing" in text and "user_id=99: extra" in text


def test_a_view_never_materialized_is_named(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    rep = ws.check_online(["spend"], progress=False)
    assert not rep.ok and "not materialized" in rep.checks[0].problem


def test_checks_are_recorded_in_the_activity_log(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, f"sqlite:///{tmp_path}/online.db")
    ws.export(["spend"], stats=False)
    ws.materialize(["spend"], end=END, progress=False)
    ws.check_online(["spend"], progress=False)
    (check,) = ws.registry.activity("check")
    (run,) = ws.registry.activity("materialize")
    assert check["detail"]["ok"] is True and check["detail"]["views"] == {"spend": 1}
    assert check["detail"]["results"][0]["entities"] == 4
    assert run["detail"]["views"] == {"spend": 1}
    assert run["detail"]["runs"][0]["end"] == END.isoformat()
    assert run["detail"]["runs"][0]["features"] == ["amount", "country", "vip", "seen", "emb"]


def test_the_materialized_definition_is_checked_not_a_newer_one(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, f"sqlite:///{tmp_path}/online.db")
    ws.export(["spend"], stats=False)
    ws.materialize(["spend"], end=END, progress=False)
    ws.feature_view("spend", SPEND_SQL + " WHERE amount > 1", entity="user_id", timestamp="ts", ttl="30d")
    assert ws.check_online(["spend"], progress=False).ok  # version 1, from the registry
    fresh = jf.Workspace(tmp_path / "ws2", online_store=f"sqlite:///{tmp_path}/online.db")
    fresh.register_source("tx", _tx(), timestamp="ts")
    fresh.feature_view("spend", SPEND_SQL + " WHERE amount > 1", entity="user_id", timestamp="ts", ttl="30d")
    rep = fresh.check_online(["spend"], progress=False)
    assert not rep.ok and "another definition" in rep.checks[0].problem


# -- incremental runs and late rows ------------------------------------------------------------
def test_incremental_runs_are_checked_against_a_full_recompute(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    more = pd.concat([_tx(), pd.DataFrame({"user_id": [2, 6], "ts": pd.to_datetime(["2024-01-12", "2024-01-13"]),
                                           "amount": [3.0, 4.0], "country": ["GB", "IT"], "vip": [True, None]})])  # fmt: skip
    ws.register_source("tx", more, timestamp="ts")
    ws.feature_view("spend", SPEND_SQL, entity="user_id", timestamp="ts", ttl="30d")
    run = ws.materialize(["spend"], end=datetime(2024, 1, 15), incremental=True, progress=False)["spend"]
    assert run.mode == "incremental"
    rep = ws.check_online(["spend"], progress=False)
    assert rep.ok, rep.lines()
    assert rep.checks[0].entities == 5 and rep.checks[0].end == datetime(2024, 1, 15)

    # A row arriving late (event time before the watermark) is seen by full runs only: real staleness.
    late = pd.concat([more, pd.DataFrame({"user_id": [3], "ts": pd.to_datetime(["2024-01-14"]), "amount": [5.0],
                                          "country": ["FR"], "vip": [False]})])  # fmt: skip
    ws.register_source("tx", late, timestamp="ts")
    ws.feature_view("spend", SPEND_SQL, entity="user_id", timestamp="ts", ttl="30d")
    ws.materialize(["spend"], end=datetime(2024, 1, 16), incremental=True, progress=False)
    rep = ws.check_online(["spend"], progress=False)
    assert not rep.ok
    assert set(rep.mismatches["user_id"]) == {3}
    assert set(rep.mismatches["feature"]) == {"amount", "vip", "seen", "emb"}  # country stays FR
    ws.materialize(["spend"], end=datetime(2024, 1, 16), progress=False)  # a full run catches up
    assert ws.check_online(["spend"], progress=False).ok


def test_a_past_ttl_base_row_of_a_layered_version_is_not_served(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    # 60 days on, every row is past the 30-day TTL: readers are served nothing, and neither is the scan.
    ws.materialize(["spend"], end=END + timedelta(days=60), incremental=True, progress=False)
    scanned = ws.online_store().scan("spend")[1].read_all()
    assert scanned.num_rows == 0
    rep = ws.check_online(["spend"], progress=False)
    assert rep.ok and rep.checks[0].entities == 0


def test_at_compares_with_the_values_as_of_another_time(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    rep = ws.check_online(["spend"], at=datetime(2024, 2, 2), progress=False)
    assert not rep.ok and rep.checks[0].at == datetime(2024, 2, 2)
    assert rep.missing["user_id"].tolist() == [5]  # its row came after the last run


# -- sampling ----------------------------------------------------------------------------------
def test_sample_compares_that_many_random_entities(tmp_path: Path, store_url: str) -> None:
    tx = pd.DataFrame({"user_id": range(200), "ts": pd.Timestamp("2024-01-02"), "amount": [float(i) for i in range(200)],
                       "country": "US", "vip": True})  # fmt: skip
    ws = _workspace(tmp_path, store_url, tx)
    ws.materialize(["spend"], end=END, progress=False)
    for key in range(0, 200, 2):
        set_value(ws, "spend", key, "amount", -1.0)
    one = ws.check_online(["spend"], sample=50, seed=3, progress=False)
    again = ws.check_online(["spend"], sample=50, seed=3, progress=False)
    (check,) = one.checks
    assert check.entities == 50 and check.sample == 50 and not one.ok
    assert 0 < check.mismatched < 50 and check.mismatched == check.values
    assert set(one.mismatches["user_id"]) <= set(range(0, 200, 2))
    assert one.mismatches.equals(again.mismatches)
    full = ws.check_online(["spend"], progress=False)
    assert full.checks[0].mismatched == 100 and full.checks[0].entities == 200
    assert len(ws.check_online(["spend"], limit=7, progress=False).mismatches) == 7
    with pytest.raises(jf.errors.CheckError, match="sample"):
        ws.check_online(["spend"], sample=0, progress=False)


# -- randomized: the check agrees with readers against the oracle -----------------------------------
SETTINGS = settings(
    max_examples=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip

floats = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=True, width=64))
texts = st.one_of(
    st.none(),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=6),
)
FEATURES = ("f_float", "f_int", "f_text", "f_bool")


@st.composite
def frames(draw: Any) -> tuple[pd.DataFrame, list[str]]:
    """Rows of one or two keys (text keys holding the key encoding's separator and escapes), no two
    rows of a key at the same time (so the latest row is unique), every type's edge values."""
    n = draw(st.integers(0, 30))
    composite = draw(st.booleans())
    hours = draw(st.lists(st.integers(0, 400), min_size=n, max_size=n, unique=True))
    data: dict[str, list[Any]] = {"a": [draw(st.integers(-3, 3)) for _ in range(n)]}
    entity = ["a"]
    if composite:
        data["b"] = [
            draw(st.sampled_from(["x", "y\\", "z\x1fw", "\\u001f", "é", "r\x1es"])) for _ in range(n)
        ]
        entity.append("b")
    data["ts"] = [datetime(2024, 1, 1) + timedelta(hours=h) for h in hours]
    data["f_float"] = [draw(floats) for _ in range(n)]
    data["f_int"] = [draw(st.one_of(st.none(), st.integers(-(2**62), 2**62))) for _ in range(n)]
    data["f_text"] = [draw(texts) for _ in range(n)]
    data["f_bool"] = [draw(st.one_of(st.none(), st.booleans())) for _ in range(n)]
    frame = pd.DataFrame(data)
    frame["a"] = frame["a"].astype("int64")
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["f_float"] = frame["f_float"].astype("float64")
    frame["f_int"] = frame["f_int"].astype("Int64")
    frame["f_text"] = frame["f_text"].astype(object)
    frame["f_bool"] = frame["f_bool"].astype("boolean")
    return frame, entity


def oracle(
    frame: pd.DataFrame, entity: list[str], end: datetime, ttl: str | None
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Entity key → what a reader should get: its latest row at or before ``end``, within the TTL."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in frame.to_dict("records"):
        key = tuple(row[k] for k in entity)
        if row["ts"] <= end and (key not in best or row["ts"] > best[key]["ts"]):
            best[key] = row
    if ttl is not None:
        best = {k: r for k, r in best.items() if r["ts"] >= end - pd.Timedelta(ttl)}
    plain = {"f_float": float, "f_int": int, "f_text": str, "f_bool": bool}
    return {k: {f: None if pd.isna(r[f]) else plain[f](r[f]) for f in FEATURES} for k, r in best.items()}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (a is None and b is None)


@SETTINGS
@given(case=frames(), end_hours=st.integers(0, 420), ttl=st.sampled_from([None, "3d", "10d"]), data=st.data())
def test_the_check_agrees_with_readers_and_the_oracle(
    tmp_path_factory: pytest.TempPathFactory, store_url: str, case: Any, end_hours: int, ttl: Any, data: Any
) -> None:
    frame, entity = case
    tmp = tmp_path_factory.mktemp("h")
    url = store_url if store_url.startswith("redis") else f"sqlite:///{tmp}/online.db"
    ws = jf.Workspace(tmp / "ws", online_store=url)
    ws.register_source("src", frame, timestamp="ts")
    name = f"v{tmp.name.replace('-', '_')}"
    cols = ", ".join([*entity, "ts", *FEATURES])
    ws.feature_view(name, f"SELECT {cols} FROM src", entity=entity, timestamp="ts", ttl=ttl)
    end = datetime(2024, 1, 1) + timedelta(hours=end_hours)
    if data.draw(st.booleans(), label="incremental"):  # a full run, then an incremental one up to end
        first = data.draw(st.integers(0, end_hours), label="first end")
        ws.materialize([name], end=datetime(2024, 1, 1) + timedelta(hours=first), progress=False)
        assert ws.materialize([name], end=end, incremental=True, progress=False)[name].mode == "incremental"
    else:
        ws.materialize([name], end=end, progress=False)
    expected = oracle(frame, entity, end, ttl)
    changed: set[tuple[Any, str]] = set()
    if expected and entity == ["a"] and data.draw(st.booleans(), label="change a value"):
        (key,) = data.draw(st.sampled_from(sorted(expected)), label="entity")
        feature, value = data.draw(
            st.sampled_from([("f_float", 0.5), ("f_int", 12345), ("f_text", "changed")])
        )
        set_value(ws, name, key, feature, value, column="a")
        if not _same(expected[(key,)][feature], value):
            changed.add(((key,), feature))

    keys = sorted(expected)
    got = ws.online_features(
        [f"{name}:*"], [dict(zip(entity, k, strict=True)) for k in keys], at=end
    ).to_dict()
    readers_differ = {
        (k, f)
        for i, k in enumerate(keys)
        for f in FEATURES
        if not _same(got[f"{name}__{f}"][i], expected[k][f])
    }
    rep = ws.check_online([name], progress=False)
    found = {(tuple(r[k] for k in entity), r["feature"]) for r in rep.mismatches.to_dict("records")}
    assert found == readers_differ == changed
    (check,) = rep.checks
    assert (check.entities, check.missing, check.extra, check.problem) == (len(expected), 0, 0, "")
    assert rep.ok == (not changed)
    ws.close()


# -- models ------------------------------------------------------------------------------------
def _two_views(tmp_path: Path, store_url: str) -> jf.Workspace:
    ws = _workspace(tmp_path, store_url)
    ws.feature_view("country", "SELECT user_id, ts, country FROM tx", entity="user_id", timestamp="ts")
    ws.export(stats=False)
    return ws


def test_a_model_with_a_view_not_materialized_is_not_ok(tmp_path: Path, store_url: str) -> None:
    ws = _two_views(tmp_path, store_url)
    ws.registry.record_usage("fraud_model", ["spend:amount", "spend:vip", "country:*"])
    ws.materialize(["spend"], progress=False)
    m = ws.check_model("fraud_model")
    assert isinstance(m, ModelReport) and not m.ok
    table = m.table.set_index("view")
    assert bool(table.loc["spend", "ok"]) and not bool(table.loc["country", "ok"])
    assert table.loc["country", "online"] == False  # noqa: E712 - a numpy bool
    assert table.loc["country", "missing features"] == "country"
    assert "not materialized" in table.loc["country", "note"]
    assert table.loc["spend", "version used"] == 1 and table.loc["spend", "online version"] == 1
    assert table.loc["spend", "ttl"] == "30d" and table.loc["country", "ttl"] == "no TTL"
    assert "country" in m.headline() and "✗" in m._repr_html_()
    ws.materialize(["country"], progress=False)
    assert ws.check_model("fraud_model").ok


def test_a_model_trained_on_an_older_definition_is_not_ok(tmp_path: Path, store_url: str) -> None:
    ws = _two_views(tmp_path, store_url)
    ws.registry.record_usage("fraud_model", ["spend@1:amount"])
    ws.feature_view("spend", SPEND_SQL + " WHERE amount > 1", entity="user_id", timestamp="ts", ttl="30d")
    ws.export(["spend"], stats=False)
    ws.materialize(["spend"], progress=False)
    m = ws.check_model("fraud_model")
    (view,) = m.views
    assert (view.version_used, view.latest_version, view.online_version) == (1, 2, 2)
    assert not m.ok and not view.same_definition
    assert "version used 1, latest 2, online 2" in m.lines()[0]
    ws.materialize(["spend@1"], progress=False)  # serving what the model was trained on is ok
    assert ws.check_model("fraud_model").ok


def test_an_unpinned_model_used_the_version_latest_when_it_was_recorded(
    tmp_path: Path, store_url: str
) -> None:
    ws = _two_views(tmp_path, store_url)
    ws.registry.record_usage("fraud_model", ["spend:amount"])
    ws.feature_view("spend", SPEND_SQL + " WHERE amount > 1", entity="user_id", timestamp="ts", ttl="30d")
    ws.export(["spend"], stats=False)
    ws.materialize(["spend"], progress=False)
    (view,) = ws.check_model("fraud_model").views
    assert (view.version_used, view.latest_version, view.online_version) == (1, 2, 2) and not view.ok


def test_stale_runs_and_missing_features_are_not_ok(tmp_path: Path, store_url: str) -> None:
    ws = _two_views(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)  # long ago: past its 30-day TTL
    ws.registry.record_usage("fraud_model", ["spend:amount"])
    (view,) = ws.check_model("fraud_model").views
    assert view.fresh is False and not view.ok and "TTL 30d" in view.note()
    ws.materialize(["spend"], progress=False)
    assert ws.check_model("fraud_model").ok


def test_an_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    ws = _two_views(tmp_path, f"sqlite:///{tmp_path}/online.db")
    with pytest.raises(jf.errors.NotFoundError, match="record_usage"):
        ws.check_model("nobody")


# -- the command line and the magic ---------------------------------------------------------------
def _cli_setup(tmp_path: Path) -> tuple[list[str], Path]:
    folder = tmp_path / "proj"
    folder.mkdir()
    _tx().to_csv(folder / "tx.csv", index=False)
    sources = folder / "sources.py"
    sources.write_text(f"ws.register_source('tx', {str(folder / 'tx.csv')!r}, timestamp='ts')\n")
    store = f"sqlite:///{folder}/online.db"
    ws = jf.Workspace(folder, online_store=store)
    ws.register_source("tx", str(folder / "tx.csv"), timestamp="ts")
    ws.feature_view("spend", SPEND_SQL, entity="user_id", timestamp="ts", ttl="30d")
    ws.feature_view("country", "SELECT user_id, ts, country FROM tx", entity="user_id", timestamp="ts")
    ws.export(stats=False)
    ws.materialize(["spend"], end=END, progress=False)
    ws.registry.record_usage("fraud_model", ["spend:*", "country:country"])
    ws.close()
    return ["--dir", str(folder), "--store", store, "--sources-from", str(sources), "--no-progress"], folder


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, folder = _cli_setup(tmp_path)
    assert main(["check", "spend", *args]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["check", "fraud_model", *args]) == 1
    out = capsys.readouterr().out
    assert "NOT OK  fraud_model uses country" in out and "not materialized" in out
    version = jf.Workspace(folder).online_store(args[3]).current("spend")
    assert version is not None
    with sqlite3.connect(str(folder / "online.db")) as con:
        con.execute(f'UPDATE "spend__v{version.version}" SET amount = 0 WHERE user_id = 1')
    assert main(["check", "spend", "--sample", "3", *args]) in (0, 1)
    assert main(["check", "spend", *args]) == 1
    assert "user_id=1: amount offline 20.5, online 0.0" in capsys.readouterr().out
    assert main(["check", "nope", *args]) == 2
    assert "unknown feature view 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["check", "spend", "--sample", "0", *args])


@pytest.fixture(scope="module")
def shell() -> Any:
    # The shared instance, not globalipapp.start_ipython(): that answers only its first caller.
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    ip = TerminalInteractiveShell.instance()
    ip.run_cell("%load_ext kernels_magic", store_history=False)
    return ip


def test_magic_checks_views_and_models(tmp_path: Path, shell: Any) -> None:
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    args, folder = _cli_setup(tmp_path)
    ws = jf.Workspace(folder, online_store=args[3])
    ws.register_source("tx", str(folder / "tx.csv"), timestamp="ts")
    jf.set_workspace(ws)
    try:
        with capture_output():
            result = shell.run_cell("%features check spend fraud_model --sample 10", store_history=False)
        reports = result.result
        assert isinstance(reports, HealthReports) and not reports.ok
        assert [type(r).__name__ for r in reports] == ["ModelReport", "OnlineReport"]
        assert reports[1].ok and not reports[0].ok
        html = reports._repr_html_()
        assert "✗" in html and "fraud_model" in html and "country" in html
        with capture_output():
            bad = shell.run_cell("%features check", store_history=False)
        assert isinstance(bad.error_in_exec, UsageError) and "model or feature view" in str(bad.error_in_exec)
        with capture_output():
            bad = shell.run_cell("%features check spend --sample x", store_history=False)
        assert isinstance(bad.error_in_exec, UsageError)
        with capture_output() as captured:
            bad = shell.run_cell("%features check nope", store_history=False)
        assert "unknown feature view 'nope'" in str(bad.error_in_exec) + captured.stdout + captured.stderr
    finally:
        jf.set_workspace(None)
        ws.close()


def test_scan_returns_the_canonical_form(tmp_path: Path, store_url: str) -> None:
    ws = _workspace(tmp_path, store_url)
    ws.materialize(["spend"], end=END, progress=False)
    table, reader = ws.online_store().scan("spend")
    rows = sorted(reader.read_all().to_pylist(), key=lambda r: r["user_id"])
    assert table.view == "spend" and len(rows) == table.rows == 4
    assert rows[0] == {"user_id": 1, EVENT_TS: _us("2024-01-05"), "amount": 20.5, "country": "US", "vip": False,
                       "seen": _us("2024-01-05"), "emb": [20.5, 2.0]}  # fmt: skip
    assert rows[3]["amount"] is None and rows[3]["emb"][1] == 2.0
    with pytest.raises(jf.errors.NotMaterializedError):
        ws.online_store().scan("nothing")


def test_keys_holding_separators_scan_back_exactly(tmp_path: Path, store_url: str) -> None:
    """Redis pages are joined by the record separator unless a field holds it (then JSON): both
    come back exactly, as do the key encoding's own separator and escapes."""
    keys = ["plain", "rec\x1esep", "unit\x1fsep", "back\\slash", "\\u001f", "é"]
    tx = pd.DataFrame({"k": keys, "ts": pd.Timestamp("2024-01-02"), "x": range(len(keys))})
    ws = jf.Workspace(tmp_path / "ws", online_store=store_url)
    ws.register_source("tx", tx, timestamp="ts")
    ws.feature_view("by_text", "SELECT k, ts, x FROM tx", entity="k", timestamp="ts")
    ws.materialize(["by_text"], end=END, progress=False)
    _, reader = ws.online_store().scan("by_text")
    assert sorted(reader.read_all().to_pylist(), key=lambda r: r["x"]) == [
        {"k": k, EVENT_TS: _us("2024-01-02"), "x": i} for i, k in enumerate(keys)
    ]
    assert ws.check_online(["by_text"], progress=False).ok


def test_a_registry_that_cannot_record_only_warns(tmp_path: Path) -> None:
    """The audit entry of a run or a check never undoes it: an unreachable registry warns."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ws = jf.Workspace(
        tmp_path / "ws", registry=f"http://127.0.0.1:{port}", online_store=f"sqlite:///{tmp_path}/o.db"
    )
    ws.register_source("tx", _tx(), timestamp="ts")
    ws.feature_view("spend", SPEND_SQL, entity="user_id", timestamp="ts", ttl="30d")
    with pytest.warns(UserWarning, match="did not record this materialize"):
        run = ws.materialize(["spend"], end=END, progress=False)["spend"]
    assert run.rows == 4
    with pytest.warns(UserWarning, match="did not record this check"):
        assert ws.check_online(["spend"], progress=False).ok
