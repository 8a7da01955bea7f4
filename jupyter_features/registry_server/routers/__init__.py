"""The registry's REST routes, one module per resource; each exposes ``router``."""

from __future__ import annotations

__all__: list[str] = []
