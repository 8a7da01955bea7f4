"""A real `jupyter lab` on a free loopback port, with a seeded registry, and headless Chromium.

The browser is Debian's chromium package driven by Playwright through
``executable_path``: no browser is ever downloaded. When chromium or Playwright is
missing the tests fail in CI and are skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab_seed import seed

CHROMIUM = os.environ.get("JUPYTER_FEATURES_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require(ok: bool, message: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{message}; CI needs it for the UI tests", pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    root: Path
    registry_url: str
    log: Path

    def page_url(self, path: str = "lab") -> str:
        return f"{self.url}/{path}?token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(lab: Lab, process: subprocess.Popen[bytes], deadline: float) -> None:
    status = f"{lab.url}/api/status?token={lab.token}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(status, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"jupyter lab did not answer at {status} in time:\n{lab.log_tail()}")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`jupyter lab` serving a folder with transactions.csv and export.ipynb, over a seeded registry."""
    from jupyter_core.paths import jupyter_path

    # Where JupyterLab looks: JUPYTER_PATH first (a build of this checkout), then the environment.
    _require(
        any((Path(p) / "jupyter-features/package.json").exists() for p in jupyter_path("labextensions")),
        "the jupyter-features JupyterLab extension is not installed (pip install -e . builds it)",
    )
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    registry_url = f"sqlite:///{base / 'registry' / 'registry.db'}"
    seed(root, registry_url)
    config = base / "config"
    (config / "labconfig").mkdir(parents=True)
    # No "get Jupyter news?" prompt over the page.
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_FEATURES_")}
    env.update(
        JUPYTER_FEATURES_REGISTRY=registry_url,
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        IPYTHONDIR=str(base / "ipython"),
    )
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "jupyter-lab.log"
    lab = Lab(f"http://127.0.0.1:{port}", token, root, registry_url, log)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(lab, process, time.monotonic() + 120)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _require(shutil.which(CHROMIUM) is not None or Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright is not installed (pip install -e '.[dev]')")
        raise
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser: Any, lab: Lab) -> Iterator[Any]:
    """One JupyterLab page for the module's tests, which build on each other in order."""
    context = browser.new_context(viewport={"width": 1440, "height": 960})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(lab.page_url())
    page.wait_for_selector("#jp-main-dock-panel", state="attached")
    try:
        yield page
    finally:
        context.close()
    assert not [e for e in errors if "jupyter-features" in e or "FeaturesSidebar" in e], errors


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
