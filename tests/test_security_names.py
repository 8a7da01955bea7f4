"""Untrusted names and text: identifiers in the registry, escaping wherever they are written
(notebook cells, HTML), YAML bombs, and hostile requests to the Jupyter server extension.

The pytest-jupyter fixtures are imported into this module (as in test_serverext.py), so
each test here runs with its own event loop.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures for this module only
from test_registry_contract import (  # noqa: F401 - fixtures
    WRITER,
    make_spec,
    sqlite_server,
    token_file,
)
from tornado.httpclient import HTTPClientError

import jupyter_features as jf
import registry_client
from jupyter_features.errors import FeatureViewError, InvalidSpecError, SourceError
from jupyter_features.sources import check_identifier, check_name, is_identifier
from registry_client import VersionRecord
from registry_client.spec import canonical_spec, check_view_name
from registry_client.yaml_folder import MAX_YAML_BYTES, dump_view, load_view

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parent.parent

#: Names that must never be accepted: each would carry something besides a name.
HOSTILE_NAMES = [
    "user_id\n__import__('os').system('id')  #",
    "user_id\n",  # '$' in a regular expression accepts a trailing newline
    "user_id\r",
    "user_id\u2028x",
    "user id",
    "user-id",
    '"user_id"',
    "1user",
    "",
    "usér",
    "user_id;DROP TABLE x",
    "<script>alert(1)</script>",
    "\x00",
    "x" * 300,
]


# -- names are identifiers -----------------------------------------------------------------
@given(st.text(max_size=12))
@settings(max_examples=300, deadline=None)
def test_is_identifier_is_exactly_an_ascii_python_identifier(text: str) -> None:
    assert is_identifier(text) == (text.isascii() and text.isidentifier())


@pytest.mark.parametrize("value", HOSTILE_NAMES[:-1])  # a long identifier is still one
def test_check_identifier_names_the_field_and_the_value(value: str) -> None:
    with pytest.raises(FeatureViewError, match="entity key .* is not a valid identifier") as info:
        check_identifier(value, "entity key")
    assert repr(value[:60]) in str(info.value)
    assert len(str(info.value)) < 300
    with pytest.raises(SourceError, match="source name"):
        check_name(value)
    with pytest.raises(InvalidSpecError, match="feature view name"):
        check_view_name(value)
    assert check_identifier("user_id", "entity key") == "user_id"


def test_check_identifier_refuses_what_is_not_text() -> None:
    for value in (None, 3, ["user_id"], b"user_id"):
        with pytest.raises(FeatureViewError, match=f"a {type(value).__name__}"):
            check_identifier(value, "entity key")


def _hostile(spec: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    spec = json.loads(json.dumps(spec))
    if field == "entity":
        spec["entity"] = [value]
    elif field in ("timestamp", "created_timestamp"):
        spec[field] = value
    elif field == "features[0].name":
        spec["features"][0]["name"] = value
    else:
        spec["lineage"] = {value: ["tx.amount"]}
    return spec


FIELDS = ["entity", "timestamp", "created_timestamp", "features[0].name", "lineage"]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", [v for v in HOSTILE_NAMES if v])  # an empty one is 'missing'
def test_canonical_spec_refuses_names_that_are_not_identifiers(field: str, value: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        canonical_spec(_hostile(make_spec("v"), field, value))
    message = str(info.value)
    assert "feature view 'v'" in message and field.split(".")[0].split("[")[0] in message, message


def test_every_backend_refuses_them_with_422(
    tmp_path: Path,
    sqlite_server: str,  # noqa: F811
) -> None:
    hostile = _hostile(make_spec("v"), "entity", HOSTILE_NAMES[0])
    embedded = registry_client.connect(f"sqlite:///{tmp_path}/r.db")
    remote = registry_client.connect(sqlite_server, token=WRITER)
    try:
        for registry in (embedded, remote):
            with pytest.raises(InvalidSpecError, match="entity") as info:
                registry.apply(hostile)
            assert info.value.status_code == 422
            assert "user_id\\n__import__" in str(info.value), str(info.value)  # the value, as a repr
        folder = tmp_path / "yaml"
        folder.mkdir()
        (folder / "v.yaml").write_text(json.dumps(hostile))  # JSON is YAML: a hand-written bare spec
        with pytest.raises(InvalidSpecError, match="entity"):
            embedded.import_yaml(folder)
        assert embedded.list() == []
    finally:
        embedded.close()
        remote.close()


def test_the_server_names_the_refused_value(sqlite_server: str) -> None:  # noqa: F811
    import httpx

    body = {"spec": _hostile(make_spec("v"), "features[0].name", "spend\nimport os")}
    response = httpx.post(
        f"{sqlite_server}/api/v1/views", json=body, headers={"Authorization": f"Bearer {WRITER}"}
    )
    assert response.status_code == 422
    answer = response.json()
    assert answer["type"] == "InvalidSpecError"
    assert "features" in answer["error"] and "'spend\\nimport os'" in answer["error"], answer


# -- names written into notebook cells -----------------------------------------------------------
def _model_js() -> Path:
    path = ROOT / "labextension" / "lib" / "model.js"
    node = shutil.which("node")
    if node is None or not path.exists():
        message = "node or the built labextension (labextension/lib/model.js; `jlpm build`) is missing"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def _cells(refs_and_keys: list[tuple[list[str], list[str]]]) -> list[str]:
    """Run the front end's trainingFrameCell (the compiled TypeScript) in Node, once for many inputs."""
    script = _model_js().read_text() + (
        "\nconst input = JSON.parse(require_input());"
        "\nprocess.stdout.write(JSON.stringify(input.map(([refs, keys]) => trainingFrameCell(refs, keys))));"
        "\nfunction require_input() { return process.env.JF_CELL_INPUT; }\n"
    )
    result = subprocess.run(
        ["node", "--input-type=module"],
        input=script,
        capture_output=True,
        text=True,
        env={**os.environ, "JF_CELL_INPUT": json.dumps(refs_and_keys)},
        check=True,
    )
    return list(json.loads(result.stdout))


def _check_cell(source: str, refs: list[str]) -> None:
    """The cell is four statements that build a training frame from exactly ``refs``."""
    assert source.isascii() and all(line.isprintable() for line in source.split("\n")), source
    tree = ast.parse(source)
    assert [type(node).__name__ for node in tree.body] == ["Import", "Assign", "Assign", "Expr"], source
    call = tree.body[2].value  # type: ignore[attr-defined]
    assert ast.unparse(call.func) == "ws.training_frame"
    assert ast.literal_eval(call.args[1]) == refs
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert calls == ["jf.workspace", "ws.training_frame", "train.head"]


def test_training_frame_cells_hold_names_only_as_literals() -> None:
    cases = [([f"user_spend@2:{n}"], [n]) for n in HOSTILE_NAMES] + [
        (['a"]\n!rm -rf ~', "b\u2029c", "\\", "\U0001f600"], ["k\x85\x0c\x1c"]),
        (["user_spend@2:spend_7d", "user_spend@2:tx_count_7d"], ["user_id"]),
        (["v:*"], []),
    ]
    cells = _cells(cases)
    for (refs, _keys), cell in zip(cases, cells, strict=True):
        _check_cell(cell, refs)
    assert '["user_spend@2:spend_7d", "user_spend@2:tx_count_7d"]' in cells[-2]


@given(
    st.lists(
        st.tuples(st.lists(st.text(), max_size=3), st.lists(st.text(), max_size=2)), min_size=1, max_size=40
    )
)
@settings(max_examples=5, deadline=None)
def test_training_frame_cells_for_any_text(cases: list[tuple[list[str], list[str]]]) -> None:
    for (refs, _keys), cell in zip(cases, _cells(cases), strict=True):
        _check_cell(cell, refs)


# -- names and text written into HTML ------------------------------------------------------------
SCRIPT = "<script>alert('x')</script>"


def _hostile_view(ws: jf.Workspace) -> jf.FeatureView:
    ws.register_source("tx", ws.sql("SELECT 1 AS user_id, TIMESTAMP '2024-01-01' AS ts, 2.5 AS amount"))
    return ws.feature_view(
        "spend", "SELECT user_id, ts, amount AS spend FROM tx", entity="user_id", timestamp="ts",
        description=SCRIPT, owner=SCRIPT, tags=[SCRIPT], feature_descriptions={"spend": SCRIPT},
    )  # fmt: skip


def test_previews_and_the_browser_escape_what_they_show(ws: jf.Workspace) -> None:
    from jupyter_features.widgets.browser import CatalogEntry, detail_html, recorded_stats_html

    view = _hostile_view(ws)
    entry = CatalogEntry(
        view, "registry", {"spend": {"count": 1, "nulls": 0, "min": SCRIPT, "top": [[SCRIPT, 1]]}}
    )
    pages = [
        view.preview(export_button=False)._repr_html_(),
        detail_html(entry, ws),
        recorded_stats_html(entry),
    ]
    for page in pages:
        assert "<script>" not in page and "&lt;script&gt;" in page


def test_export_answers_are_data_and_the_button_escapes_them(ws: jf.Workspace) -> None:
    from jupyter_features.widgets import ExportButton, export_session

    assert export_session(ws) == {
        "ok": False,
        "empty": True,
        "message": "this notebook's kernel has no feature views: define one with %%feature or "
        "jf.workspace().feature_view(...), run it, then export",
    }
    _hostile_view(ws)
    answer = export_session(ws, [SCRIPT])
    assert answer["ok"] is False and SCRIPT in answer["message"]
    json.dumps(answer)
    button = ExportButton(ws, [SCRIPT])
    button.click()
    assert "<script>" not in button.status.value and "&lt;script&gt;" in button.status.value
    answer = export_session(ws)
    assert answer["ok"] is True and answer["versions"] == [
        {"name": "spend", "version": 1, "unchanged": False}
    ]
    assert answer["registry"] and json.loads(json.dumps(answer)) == answer
    assert export_session(ws)["versions"] == [{"name": "spend", "version": 1, "unchanged": True}]


# -- YAML bombs ------------------------------------------------------------------------------------
BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
name: bomb
versions: [{spec: *i}]
"""


def test_a_billion_laughs_is_refused_before_it_expands(tmp_path: Path) -> None:
    assert len(BILLION_LAUGHS) < 600
    folder = tmp_path / "yaml"
    folder.mkdir()
    (folder / "bomb.yaml").write_text(BILLION_LAUGHS)
    registry = registry_client.connect(f"sqlite:///{tmp_path}/r.db")
    tracemalloc.start()
    try:
        with pytest.raises(InvalidSpecError, match="anchors and aliases") as info:
            registry.import_yaml(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        registry.close()
    assert str(folder / "bomb.yaml") in str(info.value) and "line 1" in str(info.value)
    assert peak < 2_000_000, f"{peak:,} bytes"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: v\nsql: &s SELECT 1\n", "anchors and aliases"),  # an anchor alone
        ("base: &b {x: 1}\nname: v\nother: {<<: *b}\n", "anchors and aliases"),  # a merge key
        ("name: v\nx: " + "[" * 100 + "]" * 100 + "\n", "nested more than 64"),
        ("name: v\nx: " + "1" * 5000 + "\n", "cannot read a value"),
        ("name: v\nx: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
        ("name: v\n---\nname: w\n", "not valid YAML"),
    ],
)
def test_other_hostile_yaml_is_refused_with_the_file(text: str, message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message) as info:
        load_view(text, source="views/v.yaml")
    assert str(info.value).startswith("views/v.yaml")


def test_values_out_of_range_in_yaml_are_clear_errors(tmp_path: Path) -> None:
    folder = tmp_path / "yaml"
    folder.mkdir()
    registry = registry_client.connect(f"sqlite:///{tmp_path}/r.db")
    try:
        (folder / "v.yaml").write_text(json.dumps({**make_spec("v"), "ttl": "NAN"}).replace('"NAN"', ".nan"))
        with pytest.raises(InvalidSpecError, match="TTL nan is not a usable duration"):
            registry.import_yaml(folder)
        spec = json.dumps(make_spec("v"))
        (folder / "v.yaml").write_text(
            f"name: v\nversions:\n- {{version: 1, created_at: 0001-01-01 00:00:00+05:00, created_by: x, hash: h, spec: {spec}}}\n"
        )
        with pytest.raises(InvalidSpecError, match=r"versions\[0\]"):
            registry.import_yaml(folder)
        assert registry.list() == []
    finally:
        registry.close()


def test_oversize_yaml_files_are_refused_unread(tmp_path: Path) -> None:
    folder = tmp_path / "yaml"
    folder.mkdir()
    with (folder / "huge.yaml").open("wb") as fh:
        fh.truncate(MAX_YAML_BYTES + 1)  # sparse: nothing is written, nothing should be read
    registry = registry_client.connect(f"sqlite:///{tmp_path}/r.db")
    try:
        with pytest.raises(InvalidSpecError, match="at most 16,000,000 bytes"):
            registry.import_yaml(folder)
        (folder / "huge.yaml").write_bytes(b"name: \xff\xfe\n")
        with pytest.raises(InvalidSpecError, match="not UTF-8"):
            registry.import_yaml(folder)
    finally:
        registry.close()


def test_exports_never_hold_anchors_so_they_import_again(tmp_path: Path) -> None:
    registry = registry_client.connect(f"sqlite:///{tmp_path}/r.db")
    try:
        shared = ["payments"]
        spec = {**make_spec("v", tags=()), "tags": shared, "extra": {"a": shared, "b": shared}}
        record = registry.apply(spec)
        twice = VersionRecord(
            record.name, 1, record.created_at, "me", record.hash, {**spec, "same": spec["extra"]}
        )
        text = dump_view([twice])
        assert "&id" not in text and "*id" not in text
        assert load_view(text)[0].spec["same"] == spec["extra"]  # type: ignore[index]
    finally:
        registry.close()


# -- the Jupyter server extension answers 4xx to hostile requests ---------------------------------
@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"jupyter_features": True}}}


@pytest.fixture
def seeded(jp_root_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for variable in ("JUPYTER_FEATURES_REGISTRY", "JUPYTER_FEATURES_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = registry_client.connect(url)
    registry.apply(make_spec("user_spend"))
    registry.close()
    (jp_root_dir / "features.toml").write_text(f'[registry]\nurl = "{url}"\n')
    return url


def _fetch(loop: Any, fetch: Any, *parts: str, **params: str) -> tuple[int, dict[str, Any]]:
    try:
        response = loop.run_until_complete(fetch("jupyter-features", "api", *parts, params=params))
    except HTTPClientError as exc:
        assert exc.response is not None
        return exc.code, json.loads(exc.response.body)
    return response.code, json.loads(response.body)


@pytest.mark.parametrize(
    "version", ["²", "١", "１", "0", "-1", "+1", "1.0", "1e3", "0x1", "1_0", "9999999999", "", "abc", "1 2"]
)
def test_versions_other_than_ascii_digits_are_400(
    seeded: str, jp_fetch: Any, jp_asyncio_loop: Any, version: str
) -> None:
    code, body = _fetch(jp_asyncio_loop, jp_fetch, "views", "user_spend", version=version)
    assert code == 400, (version, code, body)
    assert body["type"] == "InvalidSpecError" and body["error"] == body["message"]
    assert "positive integer" in body["error"]


def test_valid_versions_still_answer(seeded: str, jp_fetch: Any, jp_asyncio_loop: Any) -> None:
    assert _fetch(jp_asyncio_loop, jp_fetch, "views", "user_spend", version="1")[0] == 200
    code, body = _fetch(jp_asyncio_loop, jp_fetch, "views", "user_spend", version="999999999")
    assert code == 404 and body["type"] == "NotFoundError" and body["error"]


HOSTILE_QUERIES = [
    {"q": "a" * 5000},
    {"q": "\x00\x01"},
    {"q": "%_\\'\""},
    {"q": "\U0001f600 \u2028"},
    {"entity": "x" * 2000},
    {"owner": "' OR 1=1 --"},
    {"tag": "<script>"},
    {"used_by": "\ufeff"},
    {"type": "list<float>"},
    {"colour": "red"},
]


@pytest.mark.parametrize("params", HOSTILE_QUERIES)
def test_hostile_searches_are_never_a_5xx(
    seeded: str, jp_fetch: Any, jp_asyncio_loop: Any, params: dict[str, str]
) -> None:
    code, body = _fetch(jp_asyncio_loop, jp_fetch, "views", **params)
    assert code < 500, (params, code, body)
    assert code == 200 or (body["error"] and body["type"]), body


@given(st.text(max_size=40), st.text(max_size=12))
@settings(max_examples=40, deadline=None)
def _fuzz(loop: Any, fetch: Any, q: str, version: str) -> None:
    q = q.encode("utf-8", "replace").decode("utf-8")
    version = version.encode("utf-8", "replace").decode("utf-8")
    code, _ = _fetch(loop, fetch, "views", q=q)
    assert code < 500, q
    code, _ = _fetch(loop, fetch, "views", "user_spend", version=version)
    assert code < 500, version


def test_fuzzed_queries_are_never_a_5xx(seeded: str, jp_fetch: Any, jp_asyncio_loop: Any) -> None:
    _fuzz(jp_asyncio_loop, jp_fetch)


def test_long_view_names_and_a_broken_config_are_4xx(
    seeded: str, jp_fetch: Any, jp_asyncio_loop: Any, jp_root_dir: Path
) -> None:
    code, body = _fetch(jp_asyncio_loop, jp_fetch, "views", "v" * 5000)
    assert code == 422 and body["type"] == "InvalidSpecError"
    (jp_root_dir / "features.toml").write_text("[registry\nurl = ")
    code, body = _fetch(jp_asyncio_loop, jp_fetch, "views")
    assert code == 400 and body["type"] == "ConfigError" and "features.toml" in body["error"]
