"""One contract for every registry backend: SQLite, PostgreSQL, and a real server over each.

The fixtures here (specs, stores, live servers) are shared by the other
test_registry_* modules, which import them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import registry_client
from jupyter_features.errors import (
    ConfigError,
    FeatureReferenceError,
    InvalidSpecError,
    NotFoundError,
    RegistryConflictError,
    UnknownFeatureError,
)
from jupyter_features.featureview import FeatureView
from registry_client import Registry, VersionRecord
from registry_client.http import HTTPRegistry

BACKENDS = ["sqlite", "postgresql", "http-sqlite", "http-postgresql"]
ADMIN, WRITER, READER = "admin-token-0001", "write-token-0001", "read-token-0001"
#: The names the test token file gives the admin and write tokens (the read token has none).
ADMIN_NAME, WRITER_NAME = "ops-admin", "alice"


# -- shared helpers and fixtures -----------------------------------------------------------
def make_spec(
    name: str,
    *,
    expr: str = "amount * 2",
    features: tuple[str, ...] = ("spend",),
    ttl: str | None = "30d",
    description: str = "spend of a user",
    owner: str = "fraud-team",
    tags: tuple[str, ...] = ("payments",),
    entity: str = "user_id",
) -> dict[str, Any]:
    """A FeatureView.to_spec() dict over a source 'tx' (user_id, ts, amount)."""
    columns = ", ".join(f"{expr} + {i} AS {f}" for i, f in enumerate(features))
    return {
        "name": name,
        "sql": f"SELECT {entity}, ts, {columns} FROM tx",
        "entity": [entity],
        "timestamp": "ts",
        "created_timestamp": None,
        "ttl": ttl,
        "description": description,
        "owner": owner,
        "tags": list(tags),
        "features": [
            {"name": f, "type": "float64", "duckdb_type": "DOUBLE", "description": f"doc of {f}"}
            for f in features
        ],
        "lineage": {f: ["tx.amount"] for f in features},
        "sources": ["tx"],
    }


def pg_schema_url(postgres_url: str, schema: str) -> str:
    return f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"


def drop_pg_schema(postgres_url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_text(
        f"# the test tokens\n{ADMIN} admin {ADMIN_NAME}\n{WRITER} write {WRITER_NAME}  # a comment\n{READER} read\n"
    )
    return path


@pytest.fixture(scope="session")
def pg_store(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL registry URL in a schema of its own, dropped after the run."""
    schema = "jfreg_" + uuid.uuid4().hex[:10]
    yield pg_schema_url(postgres_url, schema)
    drop_pg_schema(postgres_url, schema)


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory, token_file: Path) -> Iterator[str]:
    from jupyter_features.registry_server.process import start_server

    folder = tmp_path_factory.mktemp("sqlite-server")
    with start_server(
        f"sqlite:///{folder}/registry.db", token_file=token_file, log=folder / "server.log"
    ) as server:
        yield server.url


@pytest.fixture(scope="session")
def postgres_server(
    pg_store: str, tmp_path_factory: pytest.TempPathFactory, token_file: Path
) -> Iterator[str]:
    from jupyter_features.registry_server.process import start_server

    folder = tmp_path_factory.mktemp("pg-server")
    with start_server(pg_store, token_file=token_file, log=folder / "server.log") as server:
        yield server.url


def open_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Registry, str]:
    """A registry of ``kind`` and the URL to open more clients on it."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/registry.db"
    elif kind == "postgresql":
        url = request.getfixturevalue("pg_store")
    elif kind == "http-sqlite":
        url = request.getfixturevalue("sqlite_server")
    else:
        url = request.getfixturevalue("postgres_server")
    return registry_client.connect(url, token=ADMIN), url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Registry, str]]:
    registry, url = open_backend(request.param, request, tmp_path)
    try:
        yield registry, url
    finally:
        registry.close()


@pytest.fixture
def reg(backend: tuple[Registry, str]) -> Registry:
    return backend[0]


@pytest.fixture
def name() -> str:
    """A view name no other test uses (stores are shared within a run)."""
    return "v" + uuid.uuid4().hex[:10]


# -- the contract ----------------------------------------------------------------------------
def test_connect_picks_the_backend_by_scheme(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scheme"):
        registry_client.connect("ftp://example.org/registry")
    with pytest.raises(ConfigError, match="no scheme"):
        registry_client.connect("registry.db")
    deep = tmp_path / "a" / "b" / "registry.db"
    reg = registry_client.connect(f"sqlite:///{deep}")
    assert isinstance(reg, Registry) and deep.exists()
    reg.close()


def test_postgresql_schema_by_search_path_option(postgres_url: str) -> None:
    schema = "jfopt_" + uuid.uuid4().hex[:10]
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        reg = registry_client.connect(f"{postgres_url}?options=-csearch_path%3D{schema}")
        reg.apply(make_spec("in_schema"))
        reg.close()
        with engine.begin() as conn:
            assert conn.execute(text(f'SELECT name FROM "{schema}".view_versions')).scalar() == "in_schema"
    finally:
        engine.dispose()
        drop_pg_schema(postgres_url, schema)


def author(reg: Registry, declared: str) -> str:
    """Who a version or an activity entry is recorded as: a server names the token's owner."""
    return ADMIN_NAME if isinstance(reg, HTTPRegistry) else declared


def test_apply_numbers_versions_by_definition(reg: Registry, name: str) -> None:
    first = reg.apply(make_spec(name), created_by="alice@laptop")
    assert (first.name, first.version, first.created_by) == (name, 1, author(reg, "alice@laptop"))
    assert first.hash == FeatureView.from_spec(make_spec(name)).definition_hash
    assert reg.apply(make_spec(name)) == first  # same definition: nothing new
    assert reg.apply({**make_spec(name), "ttl": "720h"}).version == 1  # same TTL, other spelling
    second = reg.apply(make_spec(name, expr="amount * 3"))
    assert second.version == 2 and second.hash != first.hash
    assert reg.apply(make_spec(name, ttl="7d")).version == 3  # TTL is part of the definition
    assert reg.apply(make_spec(name, ttl="7d", features=("spend", "more"))).version == 4  # schema too
    assert [v.version for v in reg.versions(name)] == [1, 2, 3, 4]


def test_metadata_change_refreshes_latest_in_place(reg: Registry, name: str) -> None:
    reg.apply(make_spec(name))
    reg.apply(make_spec(name, expr="amount * 3"))
    edited = reg.apply(make_spec(name, expr="amount * 3", description="new words", owner="risk", tags=("x",)))
    assert edited.version == 2
    latest = reg.get(name)
    assert (latest.description, latest.owner, latest.tags) == ("new words", "risk", ["x"])
    assert reg.get(name, 1).description == "spend of a user"  # older versions keep theirs
    assert reg.search(name, owner="risk") == [latest]


def test_get_and_versions(reg: Registry, name: str) -> None:
    v1 = reg.apply(make_spec(name))
    v2 = reg.apply(make_spec(name, expr="amount - 1"))
    assert reg.get(name) == v2 and reg.get(name, version=1) == v1
    record = reg.get(name, 1)
    assert isinstance(record, VersionRecord) and record.ref == f"{name}@1"
    assert (
        record.entity == ["user_id"]
        and record.feature_names == ["spend"]
        and record.schema == {"spend": "float64"}
    )
    assert record.features[0]["description"] == "doc of spend"
    assert record.to_feature_view().version == 1
    assert record.created_at.tzinfo is not None
    assert VersionRecord.from_dict(record.to_dict()) == record


def test_missing_views_and_versions_say_what_exists(reg: Registry, name: str) -> None:
    reg.apply(make_spec(name))
    with pytest.raises(NotFoundError, match=f"did you mean '{name}'"):
        reg.get(name[:-1] + "x")
    with pytest.raises(NotFoundError, match="no version 5; it has versions 1 to 1"):
        reg.get(name, version=5)
    with pytest.raises(NotFoundError):
        reg.versions("never_defined_" + name)
    with pytest.raises(InvalidSpecError):
        reg.get("not a name")


def test_list_holds_the_latest_of_each(reg: Registry, name: str) -> None:
    reg.apply(make_spec(name + "_a"))
    reg.apply(make_spec(name + "_a", expr="amount + 7"))
    reg.apply(make_spec(name + "_b"))
    mine = {r.name: r.version for r in reg.list() if r.name.startswith(name)}
    assert mine == {name + "_a": 2, name + "_b": 1}


def test_search_by_text_and_facets(reg: Registry, name: str) -> None:
    reg.apply(
        make_spec(name + "_spend", description="Seven-day SPEND of a card holder", tags=("payments", "fraud"))
    )
    reg.apply(make_spec(name + "_merchant", features=("chargebacks",), entity="merchant_id", owner="risk-team",
                        description="merchant chargebacks", tags=("fraud",)))  # fmt: skip
    reg.apply(
        {**make_spec(name + "_profile", features=("age",), tags=("profile",)),
         "features": [{"name": "age", "type": "int64", "duckdb_type": "BIGINT", "description": "years"}]}
    )  # fmt: skip

    def names(**kw: Any) -> list[str]:
        text = kw.pop("text", "")
        return [r.name.removeprefix(name) for r in reg.search(f"{name} {text}".strip(), **kw)]

    assert names() == ["_merchant", "_profile", "_spend"]
    assert names(text="spend card") == ["_spend"]  # every word, any case, docs included
    assert names(text="chargebacks") == ["_merchant"]  # feature names are searched
    assert names(tag="fraud") == ["_merchant", "_spend"]
    assert names(tag="Fraud", owner="risk-team") == ["_merchant"]
    assert names(entity="merchant_id") == ["_merchant"]
    assert names(type="int64") == ["_profile"]
    assert names(type="float64", tag="profile") == []
    assert names(text="100%_sure") == []  # LIKE wildcards are literal
    reg.record_usage(f"{name}_model", [f"{name}_spend:spend", f"{name}_profile:*"])
    assert names(used_by=f"{name}_model") == ["_profile", "_spend"]


def test_usage_and_lineage(reg: Registry, name: str) -> None:
    reg.apply(make_spec(name, features=("spend", "count")))
    lineage = reg.lineage(name)
    assert lineage["sources"] == ["tx"] and lineage["features"]["spend"] == ["tx.amount"]
    assert lineage["used_by"] == {}
    model = f"{name}_fraud_model"
    reg.record_usage(model, [f"{name}@1:spend", f"{name}:count"])
    rows = reg.usage(model)
    assert {(r["feature"], r["version"]) for r in rows} == {("spend", 1), ("count", None)}
    assert reg.lineage(name)["used_by"] == {model: [f"{name}:count", f"{name}@1:spend"]}
    reg.record_usage(model, [f"{name}:spend"])  # replaces what the model used
    assert [r["feature"] for r in reg.usage(model)] == ["spend"]
    with pytest.raises(UnknownFeatureError, match="did you mean 'spend'"):
        reg.record_usage(model, [f"{name}:spnd"])
    with pytest.raises(NotFoundError):
        reg.record_usage(model, [f"{name}@9:spend"])
    with pytest.raises(FeatureReferenceError):
        reg.record_usage(model, ["not a reference"])


def test_activity_records_who_and_where(reg: Registry, name: str) -> None:
    kind = "export_" + name
    reg.record_activity(kind, {"views": {name: 1}, "notebook": "fraud.ipynb"})
    reg.record_activity(kind, {"views": {name: 2}})
    entries = reg.activity(kind)
    assert [e["detail"]["views"][name] for e in entries] == [2, 1]  # newest first
    first = entries[-1]
    assert first["kind"] == kind and first["detail"]["notebook"] == "fraud.ipynb"
    assert first["detail"]["host"] and first["detail"]["user"]
    assert first["actor"] == author(reg, f"{first['detail']['user']}@{first['detail']['host']}")
    assert first["at"] <= entries[0]["at"]


def test_invalid_specs_are_refused_with_the_field(reg: Registry, name: str) -> None:
    bad: list[tuple[Any, str]] = [
        ("not a dict", "spec"),
        ({**make_spec(name), "entity": []}, "entity"),
        ({**make_spec(name), "features": []}, "features"),
        ({**make_spec(name), "ttl": "soon"}, "TTL"),
        ({**make_spec(name), "sql": "x" * 200_001}, "sql"),
        ({**make_spec(name), "features": [{"name": "a", "type": "float46"}]}, "float64"),
        ({**make_spec(name), "name": "bad name"}, "name"),
        ({**make_spec(name), "description": "nul\x00byte"}, "NUL"),
    ]
    for spec, needle in bad:
        with pytest.raises(InvalidSpecError, match=needle):
            reg.apply(spec)
    with pytest.raises(NotFoundError):
        reg.get(name)  # nothing was stored


def test_yaml_round_trip_is_exact(backend: tuple[Registry, str], name: str, tmp_path: Path) -> None:
    reg, _ = backend
    reg.apply(make_spec(name), created_by="alice@a")
    reg.apply(
        make_spec(name, expr="amount * 3", description="multi\nline\n  description: yes"), created_by="bob@b"
    )
    reg.apply(make_spec(name + "_other", ttl=None, tags=()))
    folder = tmp_path / "yaml"
    paths = reg.export_yaml(folder)
    assert str(folder / f"{name}.yaml") in paths
    text = (folder / f"{name}.yaml").read_text()
    assert "sql: SELECT user_id" in text and "multi\n" in text

    target = registry_client.connect(f"sqlite:///{tmp_path}/copy.db")
    target.import_yaml(folder)
    for view in (name, name + "_other"):
        assert target.versions(view) == reg.versions(view)
    again = tmp_path / "again"
    target.export_yaml(again)
    assert (again / f"{name}.yaml").read_bytes() == (folder / f"{name}.yaml").read_bytes()
    target.import_yaml(folder)  # importing twice changes nothing
    assert target.versions(name) == reg.versions(name)
    target.close()


def test_yaml_import_into_this_backend(reg: Registry, name: str, tmp_path: Path) -> None:
    source = registry_client.connect(f"sqlite:///{tmp_path}/source.db")
    source.apply(make_spec(name), created_by="carol@c")
    source.apply(make_spec(name, expr="amount / 2"), created_by="dave@d")
    source.export_yaml(tmp_path / "yaml")
    (tmp_path / "yaml" / f"{name}_hand.yaml").write_text(
        "# written by hand: a bare spec is applied\n"
        + __import__("yaml").safe_dump(make_spec(name + "_hand"))
    )
    reg.import_yaml(tmp_path / "yaml")
    assert reg.versions(name) == source.versions(name)
    assert reg.get(name + "_hand").version == 1
    # a different definition under an existing number is a conflict, not an overwrite
    other = registry_client.connect(f"sqlite:///{tmp_path}/other.db")
    other.apply(make_spec(name, expr="amount + 100"))
    other.export_yaml(tmp_path / "conflict")
    with pytest.raises(RegistryConflictError, match="immutable"):
        reg.import_yaml(tmp_path / "conflict")
    # an edited definition no longer matches its hash
    path = tmp_path / "yaml" / f"{name}.yaml"
    path.write_text(path.read_text().replace("amount / 2", "amount / 4"))
    with pytest.raises(InvalidSpecError, match="hash does not match"):
        reg.import_yaml(tmp_path / "yaml")
    source.close()
    other.close()


def test_concurrent_exports_never_lose_or_duplicate_versions(
    backend: tuple[Registry, str], name: str
) -> None:
    """Threads with their own clients apply distinct and identical definitions of one view at once."""
    _, url = backend
    threads, per_thread = 6, 4
    results: list[VersionRecord] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        client = registry_client.connect(url, token=ADMIN)
        try:
            start.wait()
            for j in range(per_thread):
                results.append(client.apply(make_spec(name, expr=f"amount * {i * 100 + j + 1}")))
                results.append(client.apply(make_spec(name, expr="amount * 0.5")))  # everybody's same one
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            client.close()

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert errors == []
    reg = registry_client.connect(url, token=ADMIN)
    versions = reg.versions(name)
    reg.close()
    numbers = [v.version for v in versions]
    assert numbers == list(range(1, len(numbers) + 1))  # no gaps, no duplicates
    distinct = {r.hash for r in results if r.spec["sql"] != make_spec(name, expr="amount * 0.5")["sql"]}
    assert len(distinct) == threads * per_thread
    assert distinct <= {v.hash for v in versions}  # no definition lost
    assert all(a.hash != b.hash for a, b in zip(versions, versions[1:], strict=False))  # a version per change
    for record in results:
        assert versions[record.version - 1] == record
