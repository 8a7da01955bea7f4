"""The Features sidebar and the Export to registry button, in a real JupyterLab in headless Chromium.

The tests run in order on one page: browse the seeded registry, then open a
notebook, insert a feature into it, and export the notebook's feature view.
"""

from __future__ import annotations

import ast
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from lab_seed import SEEDED_VIEWS

import registry_client

pytestmark = pytest.mark.ui

SIDEBAR = "#jupyter-features-sidebar"
ITEMS = f"{SIDEBAR} .jp-FeaturesSidebar-item"


def open_sidebar(page: Any) -> Any:
    tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-features-sidebar"]')
    tab.wait_for()
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    sidebar = page.locator(SIDEBAR)
    sidebar.wait_for(state="visible")
    return sidebar


def widen_sidebar(page: Any, width: int = 420) -> None:
    """Drag the handle between the left area and the main area so the sidebar is ``width`` wide."""
    box = page.locator(SIDEBAR).bounding_box()
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + width, handle["y"] + 200, steps=5)
    page.mouse.up()


def shown_views(page: Any) -> list[str]:
    return page.locator(f"{ITEMS} .jp-FeaturesSidebar-viewName").all_inner_texts()


def wait_views(page: Any, expected: list[str]) -> None:
    page.wait_for_function(
        """([selector, expected]) => {
            const names = [...document.querySelectorAll(selector)].map(e => e.textContent);
            return JSON.stringify(names) === JSON.stringify(expected);
        }""",
        arg=[f"{ITEMS} .jp-FeaturesSidebar-viewName", expected],
    )


def search(page: Any, text: str) -> None:
    page.locator(f"{SIDEBAR} input[type=search]").fill(text)


def test_sidebar_lists_the_seeded_views(page: Any, screenshots: Path) -> None:
    sidebar = open_sidebar(page)
    widen_sidebar(page)
    wait_views(page, list(SEEDED_VIEWS))
    item = sidebar.locator('.jp-FeaturesSidebar-item[data-view="user_spend"]')
    assert item.locator(".jp-FeaturesSidebar-version").inner_text() == "v2"
    assert item.locator(".jp-FeaturesSidebar-chip").all_inner_texts() == [
        "spend_7dfloat64",
        "tx_count_7dint64",
    ]
    assert "3 feature views" in sidebar.locator(".jp-FeaturesSidebar-count").first.inner_text()
    # fraud_model uses merchant_risk, which no online store serves: the list warns.
    merchant = sidebar.locator('.jp-FeaturesSidebar-item[data-view="merchant_risk"]')
    assert merchant.locator(".jp-FeaturesSidebar-warnBadge").inner_text() == "⚠ not online"
    assert "fraud_model uses it" in merchant.locator(".jp-FeaturesSidebar-itemWarning").inner_text()
    assert item.locator(".jp-FeaturesSidebar-warnBadge").count() == 0
    # a windowed view shows its windows; a plain one does not
    assert merchant.locator(".jp-FeaturesSidebar-windows").inner_text() == "windows 1d · 7d"
    assert item.locator(".jp-FeaturesSidebar-windows").count() == 0
    page.screenshot(path=str(screenshots / "sidebar.png"))


def test_search_and_facets_filter_the_list(page: Any) -> None:
    sidebar = open_sidebar(page)
    search(page, "merchant")
    wait_views(page, ["merchant_risk"])
    assert "1 of 3" in sidebar.locator(".jp-FeaturesSidebar-count").first.inner_text()
    search(page, "spent")
    wait_views(page, ["user_spend"])
    search(page, "")
    wait_views(page, list(SEEDED_VIEWS))
    sidebar.locator('select[data-facet="owner"]').select_option("growth-team")
    wait_views(page, ["user_profile"])
    sidebar.locator('select[data-facet="owner"]').select_option("")
    sidebar.locator('select[data-facet="used_by"]').select_option("fraud_model")
    wait_views(page, ["merchant_risk", "user_spend"])
    sidebar.locator('select[data-facet="type"]').select_option("bool")
    wait_views(page, ["merchant_risk"])
    sidebar.locator("button", has_text="clear").click()
    wait_views(page, list(SEEDED_VIEWS))


def test_detail_pane_shows_schema_sql_lineage_and_versions(page: Any, screenshots: Path) -> None:
    sidebar = open_sidebar(page)
    sidebar.locator('.jp-FeaturesSidebar-item[data-view="user_spend"]').click()
    detail = sidebar.locator('.jp-FeaturesSidebar-detail[data-view="user_spend"]')
    detail.wait_for()
    rows = detail.locator(".jp-FeaturesSidebar-feature")
    assert rows.count() == 2
    assert rows.nth(0).locator(".jp-FeaturesSidebar-featureName").inner_text() == "spend_7d"
    assert rows.nth(0).locator(".jp-FeaturesSidebar-type").inner_text() == "float64"
    assert "sum of amounts" in rows.nth(0).inner_text()
    assert rows.nth(1).locator(".jp-FeaturesSidebar-type").inner_text() == "int64"
    assert detail.locator(".jp-FeaturesSidebar-histogram").count() == 2
    assert "fraud-team" in detail.locator(".jp-FeaturesSidebar-facts").inner_text()
    sql = detail.locator(".jp-FeaturesSidebar-sql")
    assert "FROM transactions" in sql.inner_text()
    sql.locator("span").first.wait_for()  # highlighted by JupyterLab's SQL language support
    lineage = detail.locator('.jp-FeaturesSidebar-lineageList li[data-feature="spend_7d"]').inner_text()
    assert "transactions.amount" in lineage and "spend_7d" in lineage
    assert "fraud_model" in detail.locator(".jp-FeaturesSidebar-usedBy").inner_text()
    versions = detail.locator(".jp-FeaturesSidebar-versions li")
    assert versions.count() == 2
    assert "alice@laptop" in versions.nth(0).inner_text()
    # Where it is online, the end of its last run and its last check, from the activity log.
    run = detail.locator(".jp-FeaturesSidebar-runs li")
    assert run.count() == 1
    assert "online.db" in run.locator(".jp-FeaturesSidebar-store").inner_text()
    facts = run.locator(".jp-FeaturesSidebar-runFacts").inner_text()
    assert "v2" in facts and "last run ended" in facts and "2024" in facts
    check = detail.locator(".jp-FeaturesSidebar-check")
    assert check.get_attribute("data-ok") == "true"
    assert check.locator(".jp-FeaturesSidebar-badge").inner_text() == "✓ consistent"
    assert "entities compared" in check.inner_text()
    assert detail.locator(".jp-FeaturesSidebar-warning").count() == 0
    sidebar.screenshot(path=str(screenshots / "feature-preview.png"))  # the detail pane alone

    sidebar.locator(".jp-FeaturesSidebar-back").click()
    sidebar.locator('.jp-FeaturesSidebar-item[data-view="merchant_risk"]').click()
    other = sidebar.locator('.jp-FeaturesSidebar-detail[data-view="merchant_risk"]')
    other.locator(".jp-FeaturesSidebar-warning").wait_for()
    assert (
        "not materialized in any online store" in other.locator(".jp-FeaturesSidebar-warnings").inner_text()
    )
    assert "Not materialized" in other.locator(".jp-FeaturesSidebar-online").inner_text()
    facts = other.locator(".jp-FeaturesSidebar-facts").inner_text()
    assert "Windows" in facts and "1d, 7d" in facts and "TTL" not in facts
    rows = other.locator(".jp-FeaturesSidebar-feature .jp-FeaturesSidebar-featureName").all_inner_texts()
    assert rows == ["avg_amount_1d", "large_tx_1d", "avg_amount_7d", "large_tx_7d"]
    other.screenshot(path=str(screenshots / "windowed-view.png"))
    sidebar.locator(".jp-FeaturesSidebar-back").click()
    sidebar.locator('.jp-FeaturesSidebar-item[data-view="user_spend"]').click()
    detail.wait_for()

    detail.locator(".jp-FeaturesSidebar-versions button", has_text="v1").click()
    page.wait_for_function(
        "s => document.querySelectorAll(s).length === 1", arg=f"{SIDEBAR} .jp-FeaturesSidebar-feature"
    )
    detail.locator(".jp-FeaturesSidebar-copy").click()
    page.get_by_text("Copied user_spend@1:*").wait_for()


def _saved_sidebar_state(lab: Any) -> Any:
    """The sidebar state JupyterLab saved in its default workspace (None until it is saved)."""
    url = f"{lab.url}/lab/api/workspaces/default?token={lab.token}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response).get("data", {}).get("jupyter-features:sidebar")


def test_sidebar_state_survives_a_reload(page: Any, lab: Any) -> None:
    deadline = time.monotonic() + 30  # JupyterLab saves its workspace a moment after a change
    while (_saved_sidebar_state(lab) or {}).get("selected") != {"name": "user_spend", "version": 1}:
        assert time.monotonic() < deadline, _saved_sidebar_state(lab)
        time.sleep(0.2)
    page.reload()
    sidebar = page.locator(SIDEBAR)
    sidebar.wait_for(state="visible")  # restored open, without a click
    detail = sidebar.locator('.jp-FeaturesSidebar-detail[data-view="user_spend"]')
    detail.wait_for()  # and showing the same view and version
    assert detail.locator(".jp-FeaturesSidebar-versionSelect").input_value() == "1"
    detail.locator(".jp-FeaturesSidebar-versionSelect").select_option("2")
    page.wait_for_function(
        "s => document.querySelectorAll(s).length === 2", arg=f"{SIDEBAR} .jp-FeaturesSidebar-feature"
    )


def _wait_notebook_ready(page: Any) -> None:
    """The notebook is rendered and its kernel is idle."""
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].some(e => e.textContent.includes('import pandas'))",
        arg=".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content",
    )
    page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=90_000)


def test_insert_into_notebook_adds_a_training_frame_cell(page: Any, lab: Any) -> None:
    page.goto(lab.page_url("lab/tree/export.ipynb"))
    _wait_notebook_ready(page)
    cells = page.locator(".jp-NotebookPanel:visible .jp-Cell")
    before = cells.count()
    sidebar = open_sidebar(page)
    sidebar.locator(".jp-FeaturesSidebar-versionSelect").select_option("2")
    page.wait_for_function(
        "s => document.querySelectorAll(s).length === 2", arg=f"{SIDEBAR} .jp-FeaturesSidebar-feature"
    )
    sidebar.locator(".jp-FeaturesSidebar-insert").click()
    page.wait_for_function(
        "([s, n]) => document.querySelectorAll(s).length === n",
        arg=[".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", before + 1],
    )
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].some(e => e.textContent.includes('training_frame'))",
        arg=".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content",
    )
    source = cells.nth(before).locator(".cm-content").text_content()
    assert "ws.training_frame(labels" in source
    assert '"user_spend@2:spend_7d", "user_spend@2:tx_count_7d"' in source
    # Take the cell out again so the notebook only defines the view.
    page.locator(".jp-NotebookPanel:visible .jp-Notebook").press("Escape")
    page.keyboard.press("d")
    page.keyboard.press("d")
    page.wait_for_function(
        "([s, n]) => document.querySelectorAll(s).length === n",
        arg=[".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", before],
    )


def test_export_button_exports_the_notebook_view(page: Any, lab: Any, screenshots: Path) -> None:
    _wait_notebook_ready(page)
    button = page.locator(".jp-NotebookPanel:visible .jp-FeaturesExportButton")
    # From the command palette, before anything is defined in the kernel: a clear warning.
    page.keyboard.press("Control+Shift+C")
    page.locator("#command-palette input").fill("Export feature views to registry")
    page.locator(
        "#command-palette .lm-CommandPalette-item", has_text="Export feature views to registry"
    ).first.click()
    page.get_by_text(re.compile("has no feature views")).first.wait_for()
    warning = page.locator(".Toastify__toast", has_text=re.compile("has no feature views"))
    warning.locator(".jp-Notification-Toast-Close").first.click()
    warning.first.wait_for(state="detached")

    page.locator(".jp-NotebookPanel:visible .jp-Cell").first.click()
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(
        ".jp-NotebookPanel:visible .jp-Cell .jp-InputPrompt:has-text('[1]')", timeout=90_000
    )
    _wait_notebook_ready(page)
    outputs = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output")
    assert outputs.count() >= 1
    assert (
        page.locator('.jp-NotebookPanel:visible [data-mime-type="application/vnd.jupyter.stderr"]').count()
        == 0
    )

    button.click()
    page.get_by_text(re.compile(r"Exported user_spend v3 to the registry")).first.wait_for()
    sidebar = open_sidebar(page)
    detail = sidebar.locator('.jp-FeaturesSidebar-detail[data-view="user_spend"]')
    page.wait_for_function(
        "s => document.querySelectorAll(s).length === 3", arg=f"{SIDEBAR} .jp-FeaturesSidebar-versions li"
    )
    assert detail.locator(".jp-FeaturesSidebar-feature").count() == 3
    assert "max_amount" in detail.locator(".jp-FeaturesSidebar-schema").inner_text()
    # The export recorded the features' statistics: each one has its histogram in the sidebar.
    assert detail.locator(".jp-FeaturesSidebar-histogram").count() == 3
    page.wait_for_function("() => !document.querySelector('.Toastify--animate')")
    page.screenshot(path=str(screenshots / "notebook-export.png"))
    detail.locator(".jp-FeaturesSidebar-back").click()
    assert (
        sidebar.locator(
            '.jp-FeaturesSidebar-item[data-view="user_spend"] .jp-FeaturesSidebar-version'
        ).inner_text()
        == "v3"
    )

    registry = registry_client.connect(lab.registry_url)
    try:
        assert [v.version for v in registry.versions("user_spend")] == [1, 2, 3]
        assert "max_amount" in registry.get("user_spend").feature_names
    finally:
        registry.close()


def _tamper(registry_url: str, view: str, change: dict[str, Any]) -> None:
    """Rewrite the latest spec of ``view`` in the SQLite file itself: what an old release or a
    hostile hand could have stored, past the registry's own checks."""
    import sqlite3

    con = sqlite3.connect(registry_url.removeprefix("sqlite:///"))
    try:
        with con:
            (spec,) = con.execute(
                "SELECT spec FROM view_versions WHERE name = ? ORDER BY version DESC LIMIT 1", (view,)
            ).fetchone()
            con.execute(
                "UPDATE view_versions SET spec = ? WHERE name = ? AND version = "
                "(SELECT max(version) FROM view_versions WHERE name = ?)",
                (json.dumps({**json.loads(spec), **change}), view, view),
            )
    finally:
        con.close()


HOSTILE_KEY = "user_id\n__import__('pathlib').Path('PWNED').touch()  #"
HOSTILE_FEATURE = 'country"]\u2028!touch PWNED2\n#'
HOSTILE_TEXT = '<img src=x onerror="window.__jfPwned = 1">'


def test_hostile_registry_content_stays_text(page: Any, lab: Any) -> None:
    """Names, descriptions and statistics straight from the registry's file are shown as text,
    and *Insert into notebook* writes them into the cell as string literals only."""
    features = [
        {"name": HOSTILE_FEATURE, "type": "string", "duckdb_type": "VARCHAR", "description": HOSTILE_TEXT}
    ]
    _tamper(lab.registry_url, "user_profile", {
        "entity": [HOSTILE_KEY], "features": features, "description": HOSTILE_TEXT, "owner": HOSTILE_TEXT,
        "stats": {HOSTILE_FEATURE: {"null_rate": "x", "min": {"a": 1}, "bins": "not bins"}},
    })  # fmt: skip
    sidebar = open_sidebar(page)
    back = sidebar.locator(".jp-FeaturesSidebar-back")
    if back.count():
        back.click()
    sidebar.locator(".jp-FeaturesSidebar-iconButton.jp-mod-refresh").click()
    item = sidebar.locator('.jp-FeaturesSidebar-item[data-view="user_profile"]')
    item.locator(".jp-FeaturesSidebar-description", has_text="<img").wait_for()
    item.click()
    detail = sidebar.locator('.jp-FeaturesSidebar-detail[data-view="user_profile"]')
    detail.locator(".jp-FeaturesSidebar-detailDescription", has_text="<img").wait_for()
    assert HOSTILE_TEXT in detail.locator(".jp-FeaturesSidebar-facts").inner_text()
    assert sidebar.locator("img").count() == 0
    assert page.evaluate("() => window.__jfPwned") is None

    cells = page.locator(".jp-NotebookPanel:visible .jp-Cell")
    before = cells.count()
    detail.locator(".jp-FeaturesSidebar-insert").click()
    page.wait_for_function(
        "([s, n]) => document.querySelectorAll(s).length === n",
        arg=[".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", before + 1],
    )
    lines = cells.nth(before).locator(".cm-line").all_inner_texts()
    source = "\n".join(line.rstrip("\n") for line in lines)
    tree = ast.parse(source)  # one statement per line: nothing a name holds became code
    assert [type(node).__name__ for node in tree.body] == ["Import", "Assign", "Assign", "Expr"], source
    call = tree.body[2].value
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "ws.training_frame"
    refs = ast.literal_eval(call.args[1])
    assert refs == [f"user_profile@1:{HOSTILE_FEATURE}"]
    calls = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert calls == ["jf.workspace()", ast.unparse(call), "train.head()"]
    # Run it: the only error is the label frame this cell asks the user to provide.
    page.keyboard.press("Control+Enter")
    page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output", has_text="NameError").first.wait_for()
    assert "labels" in cells.nth(before).locator(".jp-OutputArea-output").inner_text()
    assert not (lab.root / "PWNED").exists() and not (lab.root / "PWNED2").exists()
