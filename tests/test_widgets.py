"""Widgets, headless: trait changes and button clicks against a real registry (SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import jupyter_features as jf
from jupyter_features.demo import define_views, generate_data
from jupyter_features.widgets import ExportButton, FeatureBrowser, catalog, export_views, search_catalog
from jupyter_features.widgets.browser import ANY


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "data"
    generate_data(folder, rows=2_000)
    return folder


@pytest.fixture
def demo_ws(ws: Any, demo_data: Path) -> jf.Workspace:
    define_views(ws, demo_data)
    return ws


def test_export_button_exports_and_shows_the_version(demo_ws: jf.Workspace) -> None:
    button = ExportButton(demo_ws, ["user_spend"])
    assert button.button.description == "Export to registry"
    button.click()
    assert button.error is None, button.error
    assert [(e.name, e.version) for e in button.exported] == [("user_spend", 1)]
    assert "version 1" in button.status.value and not button.button.disabled
    button.click()  # same definition: same version
    assert [e.version for e in button.exported] == [1]
    demo_ws.feature_view(
        "user_spend",
        "SELECT user_id, ts, amount AS last_amount FROM transactions",
        entity="user_id",
        timestamp="ts",
    )
    button.click()
    assert [e.version for e in button.exported] == [2]
    assert demo_ws.registry.get("user_spend").version == 2


def test_export_button_shows_errors_in_its_status(demo_ws: jf.Workspace, tmp_path: Path) -> None:
    button = ExportButton(demo_ws, ["no_such_view"])
    button.click()
    assert button.error is not None and "no_such_view" in button.error
    assert "✗" in button.status.value and not button.button.disabled


def test_export_views_defaults_to_every_view(demo_ws: jf.Workspace) -> None:
    exported = export_views(demo_ws)
    assert sorted(e.name for e in exported) == ["merchant_risk", "user_profile", "user_spend"]
    assert all(e.version == 1 for e in exported)
    assert str(exported[0]).endswith("@1")


def test_search_catalog_filters_by_text_and_facets(demo_ws: jf.Workspace) -> None:
    entries = catalog(demo_ws, registry=False)
    assert [e.name for e in entries] == ["merchant_risk", "user_profile", "user_spend"]
    names = lambda hits: [(e.name, [f.name for f in fs]) for e, fs in hits]  # noqa: E731
    assert names(search_catalog(entries, "spend")) == [
        ("user_spend", demo_ws.get_view("user_spend").feature_names)
    ]
    assert names(search_catalog(entries, "chargebacks_30d")) == [("merchant_risk", ["chargebacks_30d"])]
    assert names(search_catalog(entries, type="string")) == [("user_profile", ["country"])]
    assert [e.name for e, _ in search_catalog(entries, owner="risk-team")] == ["merchant_risk"]
    assert [e.name for e, _ in search_catalog(entries, tag="payments")] == ["user_spend"]
    assert [e.name for e, _ in search_catalog(entries, entity="user_id")] == ["user_profile", "user_spend"]
    assert search_catalog(entries, "spend", owner="risk-team") == []


def test_browser_reacts_to_search_facets_and_selection(demo_ws: jf.Workspace) -> None:
    browser = FeatureBrowser(demo_ws)
    assert list(browser.views.options) == ["merchant_risk", "user_profile", "user_spend"]
    assert browser.views.value == "merchant_risk"
    assert "chargebacks_30d" in browser.detail.value and "FROM chargebacks" in browser.detail.value
    browser.search.value = "spend"
    assert list(browser.views.options) == ["user_spend"]
    assert "1 view(s), 8 feature(s)" in browser.summary.value
    assert "spend_7d" in browser.table.value and "chargebacks_30d" not in browser.table.value
    browser.search.value = ""
    browser.filters["type"].value = "string"
    assert list(browser.views.options) == ["user_profile"]
    assert "country" in browser.detail.value
    browser.filters["type"].value = ANY
    browser.filters["owner"].value = "risk-team"
    assert list(browser.views.options) == ["merchant_risk"]
    browser.filters["owner"].value = ANY
    browser.search.value = "nothing matches this"
    assert list(browser.views.options) == [] and "no feature view matches" in browser.detail.value
    browser.search.value = ""
    browser.select("user_spend")
    assert "transactions.amount" in browser.detail.value  # lineage
    assert "windows <b>7d, 30d</b>" in browser.detail.value  # a windowed view
    browser.stats_button.click()
    assert "statistics" in browser.detail.value and "spend_7d" in browser.detail.value


def test_browser_shows_registry_views_and_versions(demo_ws: jf.Workspace, tmp_path: Path) -> None:
    demo_ws.export(["user_spend"])
    other = jf.Workspace(tmp_path, registry=demo_ws.settings.registry_url)  # a colleague's session
    browser = FeatureBrowser(other)
    assert [(e.name, e.origin) for e in browser.entries] == [("user_spend", "registry")]
    assert browser.stats_button.disabled  # its sources are not registered here
    assert "version" in browser.detail.value and "(registry)" in browser.detail.value
    # The statistics recorded at export, without the sources to recompute them.
    assert "recorded with version 1 at export" in browser.detail.value
    assert "spend_7d" in browser.detail.value.split("recorded with version")[1]


def test_widgets_package_loads_ipywidgets_only_on_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys, jupyter_features.widgets as w\n"
        "assert 'ipywidgets' not in sys.modules\n"
        "assert sorted(w.__all__) == sorted(w._LAZY), w.__all__\n"
        "assert all(getattr(w, name) is not None for name in w.__all__)\n"
        "w.ExportButton  # the class itself is light too\n"
        "assert 'ipywidgets' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
