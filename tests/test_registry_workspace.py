"""The registry from the notebook's side: ws.export, pinned versions, views only in the registry;
and migrations that upgrade an older registry database."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_registry_contract import (  # noqa: F401 - fixtures
    ADMIN,
    drop_pg_schema,
    make_spec,
    pg_schema_url,
    sqlite_server,
    token_file,
)

import jupyter_features as jf
import registry_client
from jupyter_features.errors import RegistryError, SourceError, UnknownFeatureViewError

TX = pd.DataFrame(
    {
        "user_id": [1, 1, 2, 2],
        "ts": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-02", "2024-01-04"]),
        "amount": [10.0, 20.0, 5.0, 7.0],
    }
)
LABELS = pd.DataFrame(
    {"user_id": [1, 2, 1], "label_ts": pd.to_datetime(["2024-01-03", "2024-01-05", "2024-01-02"])}
)


def _workspace(path: Path, registry: str | None = None, token: str | None = None) -> jf.Workspace:
    ws = jf.Workspace(path, registry=registry or f"sqlite:///{path}/shared/registry.db", token=token)
    ws.register_source("tx", TX, timestamp="ts")
    return ws


def _define(ws: jf.Workspace, factor: int) -> Any:
    return ws.feature_view(
        "spend", f"SELECT user_id, ts, amount * {factor} AS spend FROM tx", entity="user_id", timestamp="ts",
        description="spend", owner="fraud-team", tags=["payments"],
    )  # fmt: skip


def test_export_gives_versions_and_is_audited(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    _define(ws, 1)
    ws.feature_view("other", "SELECT user_id, ts, amount AS raw FROM tx", entity="user_id", timestamp="ts")
    first = ws.export()
    assert {n: r.version for n, r in first.items()} == {"spend": 1, "other": 1}
    assert ws.get_view("spend").version == 1  # the session view is pinned to what the registry gave
    assert ws.export("spend")["spend"] == first["spend"]  # unchanged: nothing new
    _define(ws, 2)
    assert ws.export(["spend"])["spend"].version == 2
    assert first["spend"].hash == ws.registry.get("spend", 1).hash
    audit = ws.registry.activity("export")
    assert [a["detail"]["views"] for a in audit] == [{"spend": 2}, {"spend": 1}, {"spend": 1, "other": 1}]
    assert audit[0]["detail"]["workspace"] == str(tmp_path.resolve()) and audit[0]["detail"]["host"]
    with pytest.raises(UnknownFeatureViewError, match="did you mean 'spend'"):
        ws.export(["spnd"])


def test_export_records_feature_statistics_and_refreshes_them(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    _define(ws, 1)
    record = ws.export()["spend"]
    stats = record.spec["stats"]["spend"]
    assert stats["count"] == 4 and stats["nulls"] == 0 and stats["null_rate"] == 0.0
    assert (stats["min"], stats["max"], stats["mean"]) == (5.0, 20.0, 10.5)
    assert sum(n for _lo, _hi, n in stats["bins"]) == 4
    # New data, same definition: the same version, with the statistics of the new data.
    ws.register_source("tx", pd.concat([TX, TX.assign(amount=TX.amount * 10)]), timestamp="ts")
    again = ws.export()["spend"]
    assert again.version == record.version == 1
    assert ws.registry.get("spend").spec["stats"]["spend"]["max"] == 200.0
    # Statistics are optional, and never make a new version by themselves.
    assert ws.export(stats=False)["spend"].version == 1
    assert ws.registry.versions("spend")[-1].version == 1
    assert ws.registry.get("spend").spec["stats"]["spend"]["max"] == 200.0  # kept, not dropped


def test_export_records_the_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/ana/fraud.ipynb")  # set by jupyter_server for kernels
    ws = _workspace(tmp_path)
    _define(ws, 1)
    ws.export()
    detail = ws.registry.activity("export")[0]["detail"]
    assert detail["notebook"] == "/home/ana/fraud.ipynb" and detail["views"] == {"spend": 1}


def test_pinned_versions_and_registry_only_views_in_training_frames(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    _define(ws, 1)
    ws.export()
    _define(ws, 3)
    ws.export()
    frame = ws.training_frame(LABELS, ["spend@1:spend"], timestamp="label_ts")
    assert frame["spend__spend"].tolist() == [20.0, 7.0, 10.0]  # version 1 from the registry
    latest = ws.training_frame(LABELS, ["spend:*"], timestamp="label_ts")
    assert latest["spend__spend"].tolist() == [60.0, 21.0, 30.0]
    assert ws.training_frame(LABELS, ["spend@2:spend"], timestamp="label_ts").equals(latest)

    colleague = _workspace(tmp_path / "colleague", registry=f"sqlite:///{tmp_path}/shared/registry.db")
    assert colleague.views == {}
    shared = colleague.training_frame(LABELS, ["spend:spend"], timestamp="label_ts")
    assert shared["spend__spend"].tolist() == [60.0, 21.0, 30.0]
    assert colleague.get_view("spend", 1).version == 1
    with pytest.raises(UnknownFeatureViewError, match="version 9"):
        colleague.training_frame(LABELS, ["spend@9:spend"], timestamp="label_ts")
    stranger = jf.Workspace(tmp_path / "stranger", registry=f"sqlite:///{tmp_path}/shared/registry.db")
    with pytest.raises(SourceError, match="register_source"):
        stranger.training_frame(LABELS, ["spend:spend"], timestamp="label_ts")


def test_export_to_a_registry_server(tmp_path: Path, sqlite_server: str) -> None:  # noqa: F811
    ws = _workspace(tmp_path, registry=sqlite_server, token=ADMIN)
    name = "served_" + uuid.uuid4().hex[:8]
    ws.feature_view(name, "SELECT user_id, ts, amount AS raw FROM tx", entity="user_id", timestamp="ts")
    assert ws.export()[name].version == 1
    colleague = _workspace(tmp_path / "colleague", registry=sqlite_server, token=ADMIN)
    frame = colleague.training_frame(LABELS, [f"{name}@1:raw"], timestamp="label_ts")
    assert frame[f"{name}__raw"].tolist() == [20.0, 7.0, 10.0]
    assert colleague.registry.activity("export", limit=1)[0]["detail"]["views"] == {name: 1}


# -- migrations ------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    postgres_url = request.getfixturevalue("postgres_url")
    schema = "jfmig_" + uuid.uuid4().hex[:10]
    yield pg_schema_url(postgres_url, schema)
    drop_pg_schema(postgres_url, schema)


def test_an_older_database_is_upgraded_on_open(store_url: str) -> None:
    from registry_client import tables as _tables
    from registry_client.connections import make_engine

    engine, _ = make_engine(store_url)
    with engine.begin() as conn:  # a registry as the first release left it: no usage, no activity
        assert _tables.migrate(conn, upto=1) == 1
        conn.execute(
            _tables.versions.insert().values(
                name="legacy",
                version=1,
                created_at="2025-01-01T00:00:00.000000+00:00",
                created_by="old@host",
                hash=registry_client.VersionRecord.__name__,
                spec="{}",
            )  # fmt: skip
        )
    engine.dispose()
    reg = registry_client.connect(store_url)
    assert reg.schema_version == len(_tables.MIGRATIONS)  # type: ignore[attr-defined]
    assert reg.versions("legacy")[0].created_by == "old@host"
    reg.apply(make_spec("fresh"))
    reg.record_usage("model", ["fresh:*"])  # tables from later migrations work
    reg.record_activity("export", {"views": {"fresh": 1}})
    assert reg.search(used_by="model")[0].name == "fresh"
    reg.close()

    engine, _ = make_engine(store_url)
    with engine.begin() as conn:
        conn.execute(_tables.schema_version.update().values(version=99))
    engine.dispose()
    with pytest.raises(RegistryError, match="newer than this jupyter-features"):
        registry_client.connect(store_url)
