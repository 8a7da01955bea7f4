"""The magics, run as real cells through an IPython InteractiveShell."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import jupyter_features as jf
from jupyter_features.demo import define_views, generate_data
from jupyter_features.preview import FeatureViewPreview
from kernels_magic.errors import MagicError
from kernels_magic.sqlcell import QueryResult


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "data"
    generate_data(folder, rows=2_000)
    return folder


@pytest.fixture(scope="module")
def shell() -> Any:
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython()
    ip.run_cell("%load_ext kernels_magic", store_history=False)
    return ip


@pytest.fixture
def ip(shell: Any, ws: Any, demo_data: Path) -> Iterator[Any]:
    define_views(ws, demo_data)
    jf.set_workspace(ws)
    try:
        yield shell
    finally:
        jf.set_workspace(None)
        for name in ("df", "out", "mydf", "items"):
            shell.user_ns.pop(name, None)


def run(ip: Any, cell: str) -> tuple[Any, Any]:
    with capture_output() as captured:
        result = ip.run_cell(cell, store_history=False)
    return result, captured


def test_load_ext_registers_the_magics(shell: Any) -> None:
    magics = shell.magics_manager.magics
    assert {"sql", "feature"} <= set(magics["cell"]) and "features" in magics["line"]


def test_importing_and_loading_stay_light() -> None:
    code = (
        "import sys, kernels_magic\n"
        "assert 'jupyter_features' not in sys.modules and 'duckdb' not in sys.modules\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'kernels_magic')\n"
        "heavy = [m for m in ('altair', 'sklearn', 'ipywidgets', 'jupyter_features') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sql_over_sources_and_notebook_dataframes(ip: Any, ws: jf.Workspace) -> None:
    ip.user_ns["mydf"] = pd.DataFrame({"merchant_id": [0, 1, 2], "label": ["a", "b", "c"]})
    result, _ = run(
        ip,
        "%%sql\nSELECT m.label, count(*) AS n\nFROM transactions t JOIN mydf m USING (merchant_id)\nGROUP BY 1 ORDER BY 1",
    )
    assert result.success, result.error_in_exec
    out = result.result
    assert isinstance(out, QueryResult) and out.frames == ["mydf"]
    expected = ws.sql(
        "SELECT merchant_id, count(*) AS n FROM transactions WHERE merchant_id < 3 GROUP BY 1 ORDER BY 1"
    )
    assert out.frame["n"].tolist() == expected["n"].tolist()
    assert "mydf" not in ws.duckdb.tables()  # registered for the cell only
    html = out._repr_html_()
    assert "3 rows × 2 columns" in html and " ms" in html


def test_sql_binds_limits_and_runs_several_statements(ip: Any, ws: jf.Workspace) -> None:
    result, _ = run(
        ip, "%%sql -o out --limit 7\nCREATE TEMP TABLE small AS SELECT 1 AS x;\nSELECT * FROM transactions"
    )
    assert result.success, result.error_in_exec
    assert isinstance(ip.user_ns["out"], pd.DataFrame) and len(ip.user_ns["out"]) == 7
    assert result.result.limited and result.result.statements == 2
    assert "small" in ws.duckdb.tables()
    result, _ = run(ip, "%%sql\nSELECT count(*) AS n FROM small")
    assert result.result.frame["n"].tolist() == [1]
    result, _ = run(ip, "%%sql\nSELECT 1 AS a FROM range(5);\nSELECT 2 AS b")  # a half-read SELECT first
    assert result.result.frame["b"].tolist() == [2]
    ws.duckdb.con.register("probe", pd.DataFrame({"a": [1]}))  # nothing half-read left behind
    ws.duckdb.con.unregister("probe")


def test_sql_profile_shows_stats_and_charts(ip: Any) -> None:
    result, captured = run(ip, "%%sql --profile\nSELECT amount, is_fraud, ts FROM transactions")
    assert result.success, result.error_in_exec
    prof = result.result.profile
    assert prof is not None and [c.name for c in prof.columns] == ["amount", "is_fraud", "ts"]
    assert prof.rows == 2_000
    assert set(prof.charts) == {"amount", "is_fraud", "ts"}


def test_sql_errors_are_one_line_with_the_cell_line(ip: Any) -> None:
    result, captured = run(ip, "%%sql\nSELECT 1;\nSELECT\n  amout\nFROM transactions")
    assert isinstance(result.error_in_exec, MagicError)
    text = captured.stdout + captured.stderr
    assert "SQL error on line 3" in text and 'Candidate bindings: "amount"' in text
    assert "   3 |   amout" in text
    assert "Traceback" not in text and "kernels_magic" not in text
    result, captured = run(ip, "%%sql\nSELEC 1")
    assert "SQL error on line 1: Parser Error" in captured.stdout


def test_sql_usage_errors(ip: Any) -> None:
    for line, fix in [
        ("%%sql --limit many", "not a whole number"),
        ("%%sql -o 1x", "not a valid name"),
        ("%%sql --bogus", "unrecognized arguments"),
        ("%%sql 'unclosed", "close every quote"),
    ]:
        result, captured = run(ip, f"{line}\nSELECT 1")
        assert isinstance(result.error_in_exec, UsageError), line
        assert fix in str(result.error_in_exec)


def test_feature_magic_defines_and_previews(ip: Any, ws: jf.Workspace) -> None:
    cell = (
        "%%feature merchant_volume --entity merchant_id --timestamp ts --ttl 30d "
        '--description "Transactions a merchant saw so far" --owner risk-team --tags fraud,volume\n'
        "SELECT merchant_id, ts, count(*) OVER (PARTITION BY merchant_id ORDER BY ts) AS tx_so_far\n"
        "FROM transactions"
    )
    result, captured = run(ip, cell)
    assert result.success, result.error_in_exec
    preview = result.result
    assert isinstance(preview, FeatureViewPreview) and preview.rows == 2_000
    view = ws.get_view("merchant_volume")
    assert view.entity == ("merchant_id",) and view.owner == "risk-team" and view.tags == ("fraud", "volume")
    assert view.description == "Transactions a merchant saw so far"
    ip.display_formatter.formatters["text/html"].enabled = True
    with capture_output() as shown:
        ip.display_formatter.format(preview)
    kinds = [set(o.data) for o in shown.outputs]
    assert any("text/html" in k for k in kinds)  # the preview
    assert any("application/vnd.vegalite.v5+json" in k for k in kinds)  # its charts, rendered offline
    assert any("application/vnd.jupyter.widget-view+json" in k for k in kinds)  # the export button
    result, _ = run(ip, cell.replace("--ttl 30d", "--ttl 7d"))
    assert "ttl: 30d → 7d" in result.result.diff.changes


def test_feature_magic_defines_a_windowed_view_and_shows_the_windows_slide(ip: Any, ws: jf.Workspace) -> None:
    cell = (
        "%%feature merchant_recent --entity merchant_id --timestamp ts --windows 1h,24h,7d\n"
        "SELECT merchant_id, count(*) AS tx, sum(amount) AS volume, max(amount) AS biggest,\n"
        "       count(*) FILTER (WHERE amount > 100) AS big\n"
        "FROM transactions GROUP BY merchant_id"
    )
    result, _ = run(ip, cell)
    assert result.success, result.error_in_exec
    preview = result.result
    view = ws.get_view("merchant_recent")
    assert view.windows == ("1h", "24h", "7d") and view.feature_names[:2] == ["tx_1h", "volume_1h"]
    assert preview.rows == 2_000 and len(view.feature_names) == 12
    slide = preview.slide
    assert slide is not None and slide["merchant_id"].nunique() == 3 and slide["at"].nunique() == 5
    assert list(slide.columns) == ["merchant_id", "at", *view.feature_names]
    # the slide is what a training frame gives for those entities at those times
    labels = slide[["merchant_id", "at"]].reset_index(drop=True)
    frame = ws.training_frame(labels, ["merchant_recent:*"], timestamp="at", plain_names=True)
    pd.testing.assert_frame_equal(
        frame[view.feature_names].astype(float),
        slide[view.feature_names].reset_index(drop=True).astype(float),
    )
    assert "windows <b>1h, 24h, 7d</b>" in preview.html() and "the windows sliding" in preview.html()
    chart = preview.slide_chart.to_dict()
    assert (
        chart["facet"]["row"]["field"] == "aggregate"
        and chart["spec"]["encoding"]["color"]["field"] == "window"
    )
    ip.display_formatter.formatters["text/html"].enabled = True
    with capture_output() as shown:
        ip.display_formatter.format(preview)
    charts = [o for o in shown.outputs if "application/vnd.vegalite.v5+json" in o.data]
    assert len(charts) == 2  # the slide, then the histograms
    listing, _ = run(ip, "%features list")
    assert listing.result.set_index("view").loc["merchant_recent", "windows"] == "1h, 24h, 7d"
    result, _ = run(ip, cell.replace("1h,24h,7d", "1h,2h"))
    assert "windows: 1h, 24h, 7d → 1h, 2h" in result.result.diff.changes
    result, captured = run(ip, cell.replace("1h,24h,7d", "1h,soon"))
    assert isinstance(result.error_in_exec, MagicError) and "numbers and units" in captured.stdout


def test_feature_usage_errors_register_nothing(ip: Any, ws: jf.Workspace) -> None:
    before = ws.views
    body = "\nSELECT merchant_id, ts, amount FROM transactions"
    for line, fix in [
        ("%%feature v --timestamp ts", "--entity"),
        ("%%feature v --entity merchant_id", "--timestamp"),
        ("%%feature v --entity merchant_id --timestamp ts --ttl soon", "write a number and a unit"),
        ("%%feature 9v --entity merchant_id --timestamp ts", "not a valid name"),
        ("%%feature v --entity , --timestamp ts", "one or more key columns"),
    ]:
        result, _ = run(ip, line + body)
        assert isinstance(result.error_in_exec, UsageError), line
        assert fix in str(result.error_in_exec), (line, str(result.error_in_exec))
    result, captured = run(ip, "%%feature v --entity merchant_id --timestamp tss" + body)
    assert isinstance(result.error_in_exec, MagicError)
    assert "UnknownColumnError: feature view 'v': timestamp column 'tss'" in captured.stdout
    assert "did you mean 'ts'" in captured.stdout and "Traceback" not in captured.stdout
    assert ws.views.keys() == before.keys()


def test_feature_no_preview(ip: Any, ws: jf.Workspace) -> None:
    result, captured = run(
        ip,
        "%%feature quick --entity user_id --timestamp ts --no-preview\nSELECT user_id, ts, amount FROM transactions",
    )
    assert result.success and result.result is None
    assert "feature view 'quick' defined: amount (float64)" in captured.stdout
    assert "quick" in ws.views


def test_features_list_show_and_browse(ip: Any) -> None:
    result, _ = run(ip, "%features list")
    listing = result.result
    assert list(listing["view"]) == ["merchant_risk", "user_profile", "user_spend"]
    assert list(listing["where"]) == ["session"] * 3
    result, _ = run(ip, "%features show user_profile")
    assert isinstance(result.result, FeatureViewPreview) and result.result.view.name == "user_profile"
    result, _ = run(ip, "%features browse")
    assert type(result.result).__name__ == "FeatureBrowser"
    assert list(result.result.views.options) == ["merchant_risk", "user_profile", "user_spend"]


def test_features_export_goes_to_the_registry(ip: Any, ws: jf.Workspace) -> None:
    result, captured = run(ip, "%features export user_spend")
    assert result.success, result.error_in_exec
    assert "exported user_spend → version 1" in captured.stdout
    assert ws.registry.get("user_spend").version == 1
    result, captured = run(ip, "%features export")
    assert "exported merchant_risk → version 1" in captured.stdout
    assert "exported user_spend → version 1" in captured.stdout
    result, captured = run(ip, "%features export nope")
    assert isinstance(result.error_in_exec, MagicError) and "unknown feature view 'nope'" in captured.stdout


def test_features_materialize(ip: Any, ws: jf.Workspace) -> None:
    result, captured = run(ip, "%features materialize user_profile")
    assert result.success, result.error_in_exec
    assert "materialized user_profile" in captured.stdout
    users = ws.sql("SELECT user_id FROM users ORDER BY user_id LIMIT 1")["user_id"].tolist()
    online = ws.online_features(["user_profile:age"], [{"user_id": users[0]}]).to_dict()
    expected = ws.sql(f"SELECT age FROM users WHERE user_id = {users[0]}")["age"].tolist()
    assert online["user_profile__age"] == expected


def test_features_usage_errors(ip: Any) -> None:
    for line, fix in [
        ("%features", "needs a command"),
        ("%features lst", "did you mean 'list'"),
        ("%features show", "needs a feature view name"),
        ("%features show a b", "takes one name"),
        ("%features list extra", "takes no arguments"),
        ("%features materialize", "needs a feature view name"),
        ("%features materialize user_spend --store", "--store needs a URL"),
        ("%features export --force", "unknown option"),
    ]:
        result, _ = run(ip, line)
        assert isinstance(result.error_in_exec, UsageError), line
        assert fix in str(result.error_in_exec), (line, str(result.error_in_exec))


def test_features_export_to_an_unreachable_registry_says_so(
    shell: Any, tmp_path: Path, demo_data: Path
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    offline = jf.Workspace(tmp_path, registry=f"http://127.0.0.1:{port}")
    define_views(offline, demo_data)
    jf.set_workspace(offline)
    try:
        result, captured = run(shell, "%features export user_spend")
    finally:
        jf.set_workspace(None)
    assert isinstance(result.error_in_exec, MagicError)
    assert "RegistryUnavailableError" in captured.stdout and "not reachable" in captured.stdout
    assert "Traceback" not in captured.stdout
