"""Serialized latest records, so that searches and view reads do not parse and dump specs each time.

An entry is keyed by a view's mark, (name, latest version, updated_at): the registry
changes ``updated_at`` in the same transaction as anything in the latest record, so a
key never maps to outdated JSON, whichever process wrote. Each read still asks the
database for the marks; only the specs' JSON is reused.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import orjson

from registry_client.sql import SQLRegistry

__all__ = ["RecordCache"]


class RecordCache:
    def __init__(self, registry: SQLRegistry, max_entries: int = 20_000) -> None:
        self.registry = registry
        self.max_entries = max_entries
        self._json: dict[tuple[str, int, str], bytes] = {}
        self._lock = threading.Lock()

    def one(self, mark: tuple[str, int, str]) -> bytes:
        data = self._json.get(mark)
        if data is None:
            name, version, _ = mark
            data = orjson.dumps(self.registry.get(name, version=version).to_dict())
            with self._lock:
                if len(self._json) >= self.max_entries:
                    self._json.clear()
                self._json[mark] = data
        return data

    def json_list(self, marks: Sequence[tuple[str, int, str]]) -> bytes:
        """The JSON array of the records ``marks`` name, in their order."""
        return b"[" + b",".join([self.one(m) for m in marks]) + b"]"
