"""Answers of one server process, kept while the registry's change counter stays the same.

The caller reads the counter (``SQLRegistry.changes()``) before anything else and passes
it with the request's key: an answer is reused only under the number it was computed
after, and the first request that brings another number drops every answer kept. A
write anywhere (another worker, another client of the database) changes the number, so
no answer outlives the data it was made from. Concurrent requests for one missing
answer share one computation, which runs in a worker thread so that hits keep flowing.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable

import anyio.to_thread

__all__ = ["AnswerCache", "MAX_BYTES"]

#: Bytes of answers one process keeps; the least recently used go first.
MAX_BYTES = 64 << 20


class AnswerCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.counter: int | None = None
        self._answers: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._pending: dict[Hashable, asyncio.Future[bytes | None]] = {}

    def __len__(self) -> int:
        return len(self._answers)

    async def answer(self, key: Hashable, counter: int, compute: Callable[[], bytes]) -> bytes | None:
        """The answer for ``key`` under ``counter``: kept, or ``compute()`` (in a thread) and kept.

        None when a computation this request waited for failed; the caller then answers
        some other way. Exceptions of the request's own computation propagate.
        """
        if counter != self.counter:
            self._answers.clear()
            self._pending = {}
            self._size = 0
            self.counter = counter
        data = self._answers.get(key)
        if data is not None:
            self._answers.move_to_end(key)
            return data
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            data = await anyio.to_thread.run_sync(compute)
        except BaseException:
            future.set_result(None)
            raise
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
        future.set_result(data)
        if counter == self.counter:
            self._keep(key, data)
        return data

    def _keep(self, key: Hashable, data: bytes) -> None:
        if len(data) > self.max_bytes // 4:
            return
        self._answers[key] = data
        self._size += len(data)
        while self._size > self.max_bytes:
            _, dropped = self._answers.popitem(last=False)
            self._size -= len(dropped)
