"""One read of the change counter for every request that came while the last one ran.

On PostgreSQL reading the counter is a round trip to another process, which on a busy
machine waits for the scheduler. Here a read runs as a task of the event loop (an
asyncio connection), and requests that arrive while it runs wait for the next read,
which starts when it ends: each request gets a value read after it arrived (so it sees
every write committed before it came), and a burst of requests shares one round trip
while the loop goes on answering. SQLite's read takes microseconds and is done inline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["SharedCounterReads"]


class SharedCounterReads:
    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        self._next: asyncio.Future[int] | None = None  # the read that starts when the running one ends
        self._running: asyncio.Task[None] | None = None

    async def value(self) -> int:
        """The counter, read after this call began."""
        future = self._next
        if future is None:
            future = self._next = asyncio.get_running_loop().create_future()
            if self._running is None:
                self._start()
        return await asyncio.shield(future)

    def _start(self) -> None:
        assert self._next is not None
        future, self._next = self._next, None
        self._running = asyncio.ensure_future(self._run(future))

    async def _run(self, future: asyncio.Future[int]) -> None:
        try:
            future.set_result(await self._read())
        except Exception as exc:  # noqa: BLE001 - handed to every waiter
            future.set_exception(exc)
            future.exception()  # every waiter gets it; none may be left to retrieve it
        except BaseException:  # the loop is stopping
            future.cancel()
            raise
        finally:
            self._running = None
            if self._next is not None:
                self._start()
