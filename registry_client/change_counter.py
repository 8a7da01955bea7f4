"""The registry's change counter, read cheaply: the key under which a server may reuse answers.

Every write to views, versions or usage increments ``registry_changes.counter`` in its own
transaction (:func:`count_change`). A reader that reads the counter first and the data
after gets data at least as new as the counter says, so an answer computed after reading
``n`` may be given to any request that reads ``n`` again, whichever process wrote.

Reading it is on the path of every cached request, so :class:`ChangeCounter` keeps one
connection of its own, in autocommit, and runs one text statement on it without
SQLAlchemy's per-statement work: about 10 µs on SQLite, one round trip on PostgreSQL.
An event loop reads it with :meth:`ChangeCounter.read_async`: on PostgreSQL through an
asyncio connection of psycopg, so the loop goes on answering while the database does.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from jupyter_features.errors import RegistryUnavailableError

from . import tables as t

__all__ = ["ChangeCounter", "count_change"]

_NO_ROW = (
    "registry {where}: table registry_changes has lost its one row; "
    "put it back with INSERT INTO registry_changes (counter) VALUES (0)"
)


def count_change(conn: Connection) -> None:
    """Increment the counter in ``conn``'s transaction (call it after the transaction's writes,
    so that on PostgreSQL the counter's row is the last lock a writer takes)."""
    conn.execute(update(t.changes).values(counter=t.changes.c.counter + 1))


class ChangeCounter:
    """Reads the counter of the database behind ``engine`` on a connection of its own (thread-safe)."""

    def __init__(self, engine: Engine, where: str) -> None:
        self._engine = engine
        self._where = where  # the registry's redacted URL, for messages
        translate = engine.get_execution_options().get("schema_translate_map")
        options: dict[str, Any] = {"schema_translate_map": translate, "render_schema_translate": True}
        self._sql = str(
            select(t.changes.c.counter).compile(dialect=engine.dialect, **(options if translate else {}))
        )
        self._conn: Any = None
        self._lock = threading.Lock()
        self._async: Any = None  # psycopg.AsyncConnection, bound to the loop that opened it

    def read(self) -> int:
        """The counter now; a lost connection is opened again once before this gives up."""
        errors = self._engine.dialect.loaded_dbapi.Error
        with self._lock:
            for attempt in range(2):
                try:
                    if self._conn is None:
                        self._conn = self._open()
                    cursor = self._conn.cursor()
                    try:
                        cursor.execute(self._sql)
                        row = cursor.fetchone()
                    finally:
                        cursor.close()
                except errors as exc:
                    self._drop()
                    if attempt == 1:
                        raise self._failed(exc) from exc
                    continue
                return self._value(row)
        raise AssertionError("unreachable")

    async def read_async(self) -> int:
        """:meth:`read` for an event loop; call it from one task at a time (SQLite: :meth:`read`)."""
        if self._engine.dialect.name != "postgresql":
            return self.read()
        import psycopg

        for attempt in range(2):
            try:
                if self._async is None:
                    args, params = self._engine.dialect.create_connect_args(self._engine.url)
                    self._async = await psycopg.AsyncConnection.connect(*args, **params, autocommit=True)
                async with self._async.cursor() as cursor:
                    await cursor.execute(self._sql)
                    row = await cursor.fetchone()
            except psycopg.Error as exc:
                await self.aclose()
                if attempt == 1:
                    raise self._failed(exc) from exc
                continue
            return self._value(row)
        raise AssertionError("unreachable")

    def _failed(self, exc: Exception) -> RegistryUnavailableError:
        return RegistryUnavailableError(f"registry {self._where}: the database failed: {exc}")

    def _value(self, row: Any) -> int:
        """The counter in ``row``, the one row of the counter's table."""
        if row is None:
            raise RegistryUnavailableError(_NO_ROW.format(where=self._where))
        return int(row[0])

    async def aclose(self) -> None:
        """Close the event loop's connection (on that loop)."""
        if self._async is not None:
            connection, self._async = self._async, None
            try:
                await connection.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                pass

    def _open(self) -> Any:
        proxy = self._engine.raw_connection()
        connection: Any = proxy.dbapi_connection
        proxy.detach()  # ours until close(), outside the pool's count
        if self._engine.dialect.name == "postgresql":
            connection.rollback()
            connection.autocommit = True  # each read sees the latest commit and holds no snapshot
        return connection

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                pass
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()
