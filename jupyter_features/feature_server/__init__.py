"""`jupyter-features serve`: online features over HTTP for services that are not in Python.

``POST /api/v1/online-features`` with ``{"features": ["view:feature", ...],
"entities": [{"user_id": 42}, ...]}`` (or columnar ``{"user_id": [42, 7]}``) answers
``{"results": {"view__feature": [...]}}``, the same as ``ws.online_features(...).to_dict()``;
timestamps are ISO 8601 text and NaN/inf floats are null. ``GET /health`` and
``GET /metrics`` are for operators; errors are ``{"error": ..., "type": ...}``.

app.py is the ASGI app (the route table), read_request.py the strict request checks,
metrics.py the Prometheus metrics and cli.py the command, with ``--workers``.
"""

from __future__ import annotations

from .app import DEFAULT_PORT, create_app
from .cli import add_cli, serve

__all__ = ["create_app", "serve", "add_cli", "DEFAULT_PORT"]
