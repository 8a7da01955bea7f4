"""Who and where a registry call comes from: user, host, notebook — for versions and the audit log."""

from __future__ import annotations

import functools
import getpass
import os
import socket
import sys
from typing import Any

__all__ = ["actor", "origin"]


@functools.cache
def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


@functools.cache
def _host() -> str:
    return socket.gethostname() or "localhost"


def _notebook() -> str | None:
    """The notebook path when running in a Jupyter kernel (jupyter_server sets JPY_SESSION_NAME)."""
    path = os.environ.get("JPY_SESSION_NAME")
    if path:
        return path
    ipython = sys.modules.get("IPython")  # only when already loaded: never import it here
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return None
    value = shell.user_ns.get("__vsc_ipynb_file__")  # VS Code notebooks
    return str(value) if value else None


def actor() -> str:
    """'user@host': the default ``created_by`` of a version."""
    return f"{_user()}@{_host()}"


def origin() -> dict[str, Any]:
    """user, host, notebook (or None) and pid of this process."""
    return {"user": _user(), "host": _host(), "notebook": _notebook(), "pid": os.getpid()}
