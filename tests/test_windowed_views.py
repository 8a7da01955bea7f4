"""Windowed feature views through the workspace: definition, spec and hash, and training frames
mixing windowed and plain views, against the brute-force oracles, on DuckDB and Spark."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from oracle import ViewCase, normalize, oracle_join, view_frames
from test_registry_contract import ADMIN, sqlite_server, token_file  # noqa: F401 - fixtures
from window_oracle import WindowCase, assert_matches, oracle_windows, window_cases, window_labels

import jupyter_features as jf
from jupyter_features.errors import FeatureViewError, UnknownFeatureError
from jupyter_features.featureview import FeatureView, ViewJoin, definition_hash
from jupyter_features.times import format_ttl

BASE = datetime(2024, 1, 1)

PLANES = """SELECT tailnum, count(*) AS flights, avg(dep_delay) AS delay, max(dep_delay) AS worst,
                  count(*) FILTER (WHERE dep_delay > 15) AS late
           FROM flights GROUP BY tailnum"""


def _hours(*hours: float) -> list[datetime]:
    return [BASE + timedelta(hours=h) for h in hours]


@pytest.fixture
def flights(ws: jf.Workspace) -> jf.Workspace:
    ws.register_source(
        "flights",
        pd.DataFrame(
            {
                "tailnum": ["N1", "N1", "N1", "N2", "N1"],
                "dep_ts": _hours(0, 1, 30, 0, 24),
                "dep_delay": pd.array([10, 20, None, 5, 40], dtype="Int32"),
                "origin": ["JFK"] * 5,
            }
        ),
        timestamp="dep_ts",
    )
    return ws


# -- definition ----------------------------------------------------------------------------------


def test_windowed_view_lists_alias_window_features(flights: jf.Workspace) -> None:
    fv = flights.feature_view(
        "plane_history", PLANES, entity=["tailnum"], timestamp="dep_ts", windows=["1h", "24h", "7d"]
    )
    assert fv.windows == ("1h", "24h", "7d")
    assert list(fv.schema)[:5] == ["flights_1h", "delay_1h", "worst_1h", "late_1h", "flights_24h"]
    assert len(fv.schema) == 12
    assert fv.schema["flights_24h"] == "int64" and fv.schema["delay_7d"] == "float64"
    assert fv.feature("worst_1h").duckdb_type == "INTEGER"
    assert fv.lineage["delay_24h"] == ["flights.dep_delay"] and fv.lineage["flights_1h"] == []
    plan = fv.window_plan()
    assert plan is not None and plan.feature_names == fv.feature_names
    # a comma string is the same definition
    again = flights.analyse_view(
        "plane_history", PLANES, entity="tailnum", timestamp="dep_ts", windows="1h, 24h,7d"
    )
    assert again.windows == fv.windows and again.definition_hash == fv.definition_hash
    assert "windows=['1h', '24h', '7d']" in repr(fv)


def test_spec_carries_windows_only_when_there_are_some(flights: jf.Workspace) -> None:
    flights.register_source("snap", pd.DataFrame({"tailnum": ["N1"], "ts": _hours(0), "x": [1.0]}))
    plain = flights.feature_view("plain", "SELECT tailnum, ts, x FROM snap", entity="tailnum", timestamp="ts")
    assert plain.windows == () and plain.window_plan() is None
    spec = plain.to_spec()
    assert "windows" not in spec
    # the hash of a plain view is what it was before windows existed: the same payload
    assert definition_hash(spec) == definition_hash({**spec, "windows": []})
    assert ViewJoin.of(plain).windows == ()

    fv = flights.feature_view("ph", PLANES, entity=["tailnum"], timestamp="dep_ts", windows=["1h", "24h"])
    spec = fv.to_spec()
    assert spec["windows"] == ["1h", "24h"]
    back = FeatureView.from_spec(spec)
    assert back.windows == ("1h", "24h") and back.definition_hash == fv.definition_hash
    # other windows: another definition, another hash
    other = flights.feature_view("ph", PLANES, entity=["tailnum"], timestamp="dep_ts", windows=["1h", "1d"])
    assert other.definition_hash != fv.definition_hash
    assert definition_hash({**spec, "windows": ["1h", "2h"]}) != fv.definition_hash
    join = ViewJoin.of(fv, ["flights_24h"], ["out"])
    assert join.windows == ("1h", "24h") and join.window_plan() is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ttl": "2d"}, "windows and ttl cannot be combined"),
        ({"created_timestamp": "dep_ts"}, "drop created_timestamp"),
        ({"windows": ["1h", "60m"]}, "same length"),
        ({"windows": "1h,,2h"}, "empty entry"),
        ({"windows": ["soon"]}, "numbers and units"),
        ({"windows": 3}, "must be a list"),
        ({"sql": "SELECT tailnum, dep_ts, dep_delay FROM flights"}, "needs GROUP BY tailnum"),
        ({"sql": "SELECT tailnum, median(dep_delay) AS m FROM flights GROUP BY 1"}, "not a supported aggregate"),
        ({"sql": "SELECT tailnum, sum(origin) AS s FROM flights GROUP BY 1"}, "origin"),
        ({"sql": "SELECT tailnum, count(*) AS n FROM flights GROUP BY 1", "timestamp": "dep_delay"},
         "not a timestamp"),
        ({"sql": "SELECT tailnum, count(*) AS __jf_n FROM flights GROUP BY 1"}, "reserved"),
    ],
)  # fmt: skip
def test_windowed_definitions_refused_with_the_fix(
    flights: jf.Workspace, kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {"sql": PLANES, "entity": "tailnum", "timestamp": "dep_ts", "windows": ["1h"]}
    args.update(kwargs)
    with pytest.raises(FeatureViewError, match=match):
        flights.feature_view("bad", args.pop("sql"), **args)
    assert "bad" not in flights.views


def test_sql_for_shows_the_relation_and_the_aggregates(flights: jf.Workspace) -> None:
    fv = flights.feature_view("ph", PLANES, entity=["tailnum"], timestamp="dep_ts", windows=["1h", "24h"])
    text = fv.sql_for("spark")
    assert text.startswith("-- ph: windowed view")
    assert "count(*) FILTER (WHERE dep_delay > 15) -> late_1h, late_24h" in text
    assert "avg(dep_delay) -> delay_1h, delay_24h" in text
    assert "GROUP BY" not in text and "`__jf_ts`" in text


# -- training frames -------------------------------------------------------------------------


def test_training_frame_mixes_windowed_and_plain(flights: jf.Workspace) -> None:
    ws = flights
    ws.register_source("snap", pd.DataFrame({"tailnum": ["N1", "N2"], "ts": _hours(0, 0), "x": [1.0, 2.0]}))
    ws.feature_view("ph", PLANES, entity=["tailnum"], timestamp="dep_ts", windows=["1h", "24h"])
    ws.feature_view("plain", "SELECT tailnum, ts, x FROM snap", entity="tailnum", timestamp="ts")
    labels = pd.DataFrame(
        {"tailnum": ["N1", "N1", "N2", "N3", None], "label_ts": _hours(1, 25, 2, 0, 1), "y": [1, 0, 1, 0, 1]},
        index=[5, 3, 3, 1, 0],
    )
    original = labels.copy()
    out = ws.training_frame(
        labels, ["plain:x", "ph:flights_24h", "ph:delay_1h", "ph:late_24h"], timestamp="label_ts"
    )
    pd.testing.assert_frame_equal(out[list(labels.columns)], original)
    assert list(out.columns)[3:] == ["plain__x", "ph__flights_24h", "ph__delay_1h", "ph__late_24h"]
    # (t - w, t]: at 1h the flights at 0h and 1h are in 24h; at 25h the one at 1h is not, 24h is
    assert normalize(out["ph__flights_24h"]) == [2.0, 1.0, 1.0, 0.0, 0.0]
    assert normalize(out["ph__delay_1h"]) == [20.0, None, None, None, None]  # 24h is not in (24h, 25h]
    assert normalize(out["ph__late_24h"]) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert normalize(out["plain__x"]) == [1.0, 1.0, 2.0, None, None]
    plain = ws.training_frame(labels, ["ph:flights_24h"], timestamp="label_ts", plain_names=True)
    assert list(plain.columns) == ["tailnum", "label_ts", "y", "flights_24h"]
    streamed = ws.training_frame(labels, ["ph:*", "plain:*"], timestamp="label_ts", to="arrow").read_all()
    frame = ws.training_frame(labels, ["ph:*", "plain:*"], timestamp="label_ts")
    for column in streamed.column_names[3:]:
        assert normalize(streamed[column].to_pylist()) == normalize(frame[column]), column
    only = ws.training_frame(labels, ["ph:flights_1h"], timestamp="label_ts", to="arrow").read_all()
    assert only.column_names == ["tailnum", "label_ts", "y", "ph__flights_1h"]
    assert only["ph__flights_1h"].to_pylist() == [1, 0, 0, 0, 0]
    with pytest.raises(UnknownFeatureError, match="flights_2h"):
        ws.training_frame(labels, ["ph:flights_2h"], timestamp="label_ts")


def _define_windowed(ws: jf.Workspace, case: WindowCase) -> None:
    ws.register_source(case.source, case.frame, timestamp="ts")
    ws.feature_view(case.name, case.sql, entity=case.entity, timestamp="ts", windows=case.windows)


def _define_plain(ws: jf.Workspace, case: ViewCase) -> None:
    source = f"src_{case.name}"
    ws.register_source(source, case.frame, timestamp="ts")
    cols = ", ".join(case.entity + ["ts"] + ([case.created] if case.created else []) + case.features)
    ws.feature_view(
        case.name, f"SELECT {cols} FROM {source}", entity=case.entity, timestamp="ts",
        created_timestamp=case.created, ttl=format_ttl(case.ttl),
    )  # fmt: skip


def _check_mixed(
    ws: jf.Workspace, windowed: list[WindowCase], plain: list[ViewCase], labels: pd.DataFrame
) -> None:
    for w in windowed:
        _define_windowed(ws, w)
    for p in plain:
        _define_plain(ws, p)
    original = labels.copy()
    refs = [f"{c.name}:*" for c in plain] + [f"{c.name}:*" for c in windowed]
    result = ws.training_frame(labels, refs, timestamp="label_ts")
    pd.testing.assert_frame_equal(result[list(labels.columns)], original)
    pd.testing.assert_frame_equal(labels, original)
    expected_plain = oracle_join(labels, "label_ts", plain)
    names = list(expected_plain) + [f"{c.name}__{f}" for c in windowed for f in c.feature_names]
    assert list(result.columns) == list(labels.columns) + names
    for col, values in expected_plain.items():
        assert normalize(result[col]) == normalize(values), col
    for case in windowed:
        assert_matches(result, oracle_windows(labels, "label_ts", case), prefix=f"{case.name}__")
    if ws.engine is ws.duckdb:  # the streamed frame: the same values, in label order
        streamed = ws.training_frame(labels, refs, timestamp="label_ts", to="arrow").read_all()
        assert streamed.column_names == list(result.columns)
        for col in expected_plain:
            assert normalize(streamed[col].to_pylist()) == normalize(result[col]), col
        # windowed floats to the oracle's tolerance: the streamed plan may add in another order
        columns = pd.DataFrame({c: pd.Series(streamed[c].to_pylist(), dtype=object) for c in names})
        for case in windowed:
            assert_matches(columns, oracle_windows(labels, "label_ts", case), prefix=f"{case.name}__")


#: DuckDB here, Spark in local mode (marked; CI runs it).
ENGINES = ["duckdb", pytest.param("spark", marks=pytest.mark.spark)]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("spark_session") if request.param == "spark" else request.param


def _examples(engine: Any) -> settings:
    return settings(
        max_examples=50 if engine == "duckdb" else 6,  # Spark is slow on two cores
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large,
        ],
    )  # fmt: skip


def test_windowed_and_plain_views_match_oracles(engine: Any, tmp_path: Path) -> None:
    """Several windowed views (one on composite keys) and a plain view in one call."""

    @_examples(engine)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        ws = jf.Workspace(tmp_path, engine=engine)
        single = data.draw(window_cases("win_a", ["a"]))
        composite = data.draw(window_cases("win_ab", ["a", "b"]))
        plain = data.draw(view_frames("plain_a", ["a"], data.draw(st.booleans())))
        labels = data.draw(window_labels(["a", "b"], [single, composite]))
        _check_mixed(ws, [single, composite], [plain], labels)

    check()


# -- materialization (each entity's events in the longest window; windows evaluated when read) ----


def test_materialize_writes_the_windows_at_end(flights: jf.Workspace, store_url: str) -> None:
    ws = flights
    fv = ws.feature_view("ph", PLANES, entity=["tailnum"], timestamp="dep_ts", windows=["1h", "24h"])
    end = BASE + timedelta(hours=24, minutes=30)
    result = ws.materialize(["ph"], store=store_url, end=end, progress=False)["ph"]
    assert result.rows == 1 and result.mode == "full"  # N2's last flight (0h) is out of every window
    rows = [{"tailnum": "N1"}, {"tailnum": "N2"}]
    read = ws.online_features(["ph:*"], rows, store=store_url, at=end).to_pandas()
    read.columns = [c.split("__")[-1] for c in read.columns]
    labels = pd.DataFrame({"tailnum": ["N1", "N2"], "label_ts": [end, end]})
    frame = ws.training_frame(labels, ["ph:*"], timestamp="label_ts", plain_names=True)
    assert normalize(read.loc[0, fv.feature_names]) == normalize(frame.loc[0, fv.feature_names])
    assert normalize(read.loc[0, ["flights_1h", "flights_24h", "delay_24h"]]) == [1.0, 2.0, 30.0]
    # N2 has no event in any window: counts 0, all else null, as in the training frame
    assert normalize(read.loc[1, fv.feature_names]) == normalize(frame.loc[1, fv.feature_names])
    # windows slide: an incremental run is a full one
    later = ws.materialize(
        ["ph"], store=store_url, end=end + timedelta(hours=1), incremental=True, progress=False
    )
    assert later["ph"].mode == "full"
    assert ws.check_online(["ph"], store=store_url, progress=False).ok
    with pytest.raises(jf.errors.FeaturesError, match="columns its aggregates read"):
        ws.push("ph", [{"tailnum": "N1"}], store=store_url)


@pytest.mark.spark
def test_spark_windows_at_end_match_duckdb(spark_session: Any, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "tailnum": ["N1", "N1", "N1", "N2", "N1", "N3"],
            "dep_ts": _hours(0, 1, 30, 0, 24, 2),
            "dep_delay": pd.array([10, 20, None, 5, 40, 1], dtype="Int32"),
        }
    )
    results = []
    for engine in ("duckdb", spark_session):
        ws = jf.Workspace(tmp_path, engine=engine)
        ws.register_source("flights", frame, timestamp="dep_ts")
        fv = ws.feature_view("ph", PLANES, entity=["tailnum"], timestamp="dep_ts", windows=["1h", "24h"])
        table = ws.engine.latest(ViewJoin.of(fv), BASE + timedelta(hours=24, minutes=30))
        results.append(table.to_pandas().sort_values("tailnum").reset_index(drop=True))
    duck, spark = results
    assert list(duck["tailnum"]) == ["N1", "N3"]
    assert list(spark.columns) == list(duck.columns)
    for column in duck.columns:
        assert normalize(spark[column]) == normalize(duck[column]), column


# -- registry, YAML, the server's checks ---------------------------------------------------------


def test_registry_round_trip_through_a_server_and_yaml(
    flights: jf.Workspace,
    tmp_path: Path,
    sqlite_server: str,  # noqa: F811
) -> None:
    import uuid

    import httpx

    import registry_client
    from registry_client.yaml_folder import export_yaml, import_yaml

    name = "ph_" + uuid.uuid4().hex[:8]
    ws = jf.Workspace(tmp_path / "mine", registry=sqlite_server, token=ADMIN)
    ws.register_source("flights", flights.sources["flights"].data, timestamp="dep_ts")
    fv = ws.feature_view(name, PLANES, entity=["tailnum"], timestamp="dep_ts", windows=["1h", "24h"])
    assert ws.export()[name].version == 1
    assert ws.export()[name].version == 1  # unchanged: no new version
    reg = ws.registry
    record = reg.get(name)
    assert record.spec["windows"] == ["1h", "24h"] and record.hash == fv.definition_hash
    assert reg.lineage(name)["features"]["delay_24h"] == ["flights.dep_delay"]
    # a colleague takes it from the registry: analysed again here, then joined
    colleague = jf.Workspace(tmp_path / "colleague", registry=sqlite_server, token=ADMIN)
    colleague.register_source("flights", flights.sources["flights"].data, timestamp="dep_ts")
    theirs = colleague.get_view(name)
    assert theirs.windows == ("1h", "24h") and theirs.feature_names == fv.feature_names
    labels = pd.DataFrame({"tailnum": ["N1", "N2"], "label_ts": _hours(1, 1)})
    frame = colleague.training_frame(labels, [f"{name}@1:flights_24h"], timestamp="label_ts")
    assert frame[f"{name}__flights_24h"].tolist() == [2, 1]
    # other windows: a new version
    ws.feature_view(name, PLANES, entity=["tailnum"], timestamp="dep_ts", windows=["1h", "7d"])
    assert ws.export()[name].version == 2
    # YAML: export, import into an empty registry, the same records
    folder = tmp_path / "yaml"
    export_yaml(reg, folder)
    assert "- 1h\n" in (folder / f"{name}.yaml").read_text()
    empty = registry_client.connect(f"sqlite:///{tmp_path}/empty.db")
    import_yaml(empty, folder)
    assert [r.spec.get("windows") for r in empty.versions(name)] == [["1h", "24h"], ["1h", "7d"]]
    assert [r.hash for r in empty.versions(name)] == [r.hash for r in reg.versions(name)]
    # the server checks windows: 422 naming the field
    spec = fv.to_spec()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    for windows, said in [
        (["soon"], "windows"), (["0h"], "positive"), ([f"{i + 1}h" for i in range(17)], "windows"),
        (["1h", "60m"], "same length"), ("1h", "windows"), ([1], "windows"),
    ]:  # fmt: skip
        r = httpx.post(
            f"{sqlite_server}/api/v1/views", json={"spec": {**spec, "windows": windows}}, headers=headers
        )
        assert r.status_code == 422 and said in r.text, (windows, r.status_code, r.text)
    r = httpx.post(f"{sqlite_server}/api/v1/views", json={"spec": {**spec, "ttl": "2d"}}, headers=headers)
    assert r.status_code == 422 and "neither ttl" in r.text


def test_a_plain_spec_stays_without_windows_in_the_registry(ws: jf.Workspace) -> None:
    ws.register_source("snap", pd.DataFrame({"k": [1], "ts": _hours(0), "x": [1.0]}), timestamp="ts")
    fv = ws.feature_view("plain", "SELECT k, ts, x FROM snap", entity="k", timestamp="ts")
    record = ws.export()["plain"]
    assert "windows" not in record.spec and record.hash == fv.definition_hash
    assert ws.registry.apply({**fv.to_spec(), "windows": []}).version == 1


def test_preview_of_a_windowed_view_without_rows(ws: jf.Workspace) -> None:
    empty = pd.DataFrame({"k": pd.array([], dtype="Int64"), "ts": pd.to_datetime([]), "x": []})
    ws.register_source("nothing", empty.astype({"x": "float64"}), timestamp="ts")
    fv = ws.feature_view(
        "quiet", "SELECT k, count(*) AS n, avg(x) AS m FROM nothing GROUP BY k", entity="k", timestamp="ts",
        windows=["1h"],
    )  # fmt: skip
    preview = fv.preview()
    assert preview.rows == 0 and preview.slide is not None and preview.slide.empty
    assert preview.slide_chart is None and "the windows sliding" in preview.html()
