"""Writing a version of a view into a Redis Cluster: partitions filled node by node in parallel,
the push journal replayed, the pointer flipped, old versions freed (see ``redis_cluster.py``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from ..errors import OnlineStoreError
from .canonical import canonical_rows
from .layout import Lease, OnlineTable, encode_key
from .redis import RedisWriter
from .redis_bulk import event_groups, hset_header, packed_groups
from .redis_nodes import Call, NodeFailed
from .redis_partitions import APPEND_PART, COUNT_PART, DROP_PART, SET_LIVE, Partitions, partitions_of
from .redis_push import covered_entries, encode_push
from .rows import push_rows_of

if TYPE_CHECKING:
    import pyarrow as pa

    from .redis_cluster import RedisClusterStore

__all__ = ["RedisClusterWriter", "begin_version", "drop_versions"]

_IN_FLIGHT = 8  # HSET commands per node sent ahead of their replies
_RENEW_EVERY = 5.0

#: KEYS: lock, current, journal, pseq. ARGV: lease token, pointer, last push replayed, journal
#: prefix, layout, covered seqs... → 0: the lock is gone; 2: pushes were journaled since the
#: replay (replay them too); 1: switched.
_FLIP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if (redis.call('GET', KEYS[4]) or '0') ~= ARGV[3] then return 2 end
local covered = {}
for i = 6, #ARGV do covered[ARGV[i]] = true end
for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local seq, layout = string.match(m, '^(%d+):%-?%d+:%-?%d+:(.*)$')
  if covered[seq] or layout ~= ARGV[5] then
    redis.call('DEL', ARGV[4] .. seq)
    redis.call('ZREM', KEYS[3], m)
  end
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

#: KEYS: source hash, copy (one partition's slot): an incremental version starts from the served
#: incremental version's changes.
_COPY = """
redis.call('COPY', KEYS[1], KEYS[2], 'REPLACE')
return 1
"""


def begin_version(
    store: RedisClusterStore,
    table: OnlineTable,
    *,
    lease: Lease,
    base: OnlineTable | None,
    covered: Collection[int],
    rows: int | None,
) -> RedisClusterWriter:
    import redis as redis_lib

    view, client, ks = table.view, store.client, store.ks
    owned = ""
    try:
        current = store.current(view)
        version = int(client.incr(ks.key(view, "next")))
        if current is not None and version <= current.version:
            version = current.version + 1
            client.set(ks.key(view, "next"), version)
        layered_on = None
        n = store.partition_count(rows)
        if base is not None and current is not None and current.version == base.version:
            layered_on = current.base_version or current.version
            n = store._counts[(view, current.version)]  # noqa: SLF001 - the store's own cache
        owned = f"{version}:{n}"
        client.sadd(ks.key(view, "versions"), owned)
        parts = Partitions(store.prefix, view, n)
        if layered_on is not None and current is not None and current.base_version is not None:
            store.calls.run(
                [(store.calls.slot(parts.live(p)), _COPY, (parts.data(p, current.version), parts.data(p, version)), ())
                 for p in range(n)],
                f"copying the changes of '{view}'",
            )  # fmt: skip
        ks.renew(lease)
    except BaseException as exc:
        if owned:
            _drop(store, view, owned)
        if isinstance(exc, redis_lib.RedisError):
            raise store.write_error(view, exc) from exc
        raise
    writer = RedisClusterWriter(
        store, table.with_version(version, 0, base_version=layered_on), lease, f"{version}/{n}", owner=True,
        partitions=n,
    )  # fmt: skip
    writer.covered = frozenset(covered)
    writer.since_us = base.end_us if layered_on is not None and base is not None else None
    return writer


class RedisClusterWriter(RedisWriter):
    """One version of a view being written into a cluster store's partitions."""

    store: RedisClusterStore

    def __init__(
        self,
        store: RedisClusterStore,
        table: OnlineTable,
        lease: Lease,
        target: str,
        *,
        owner: bool,
        partitions: int,
    ) -> None:
        super().__init__(store, table, lease, target, owner=owner)
        self.parts = Partitions(store.prefix, table.view, partitions)

    def write_batch(self, rows: pa.Table, progress: Callable[[int], None] | None = None) -> int:
        """``HSET`` the rows into their partitions: DuckDB encodes, each node gets its own pipeline."""
        import redis as redis_lib

        canonical = canonical_rows(rows, self.table)
        try:
            if self.table.window is not None:  # a windowed view: each entity's events, appended
                for n, args in event_groups(canonical, self.table, self.store.chunk_rows):
                    self.append(list(zip(args[::2], args[1::2], strict=True)), f"writing '{self.table.view}'")
                    self.store.ks.renew(self.lease)
                    if progress is not None:
                        progress(n)
            else:
                _bulk_hset(self, canonical, progress)
        except (redis_lib.RedisError, NodeFailed) as exc:
            raise self._error(exc) from exc
        return canonical.num_rows

    def _error(self, exc: Exception) -> OnlineStoreError:
        node = getattr(exc, "node", None)
        if node is None:
            return self.store.write_error(self.table.view, exc)
        return OnlineStoreError(
            f"online store {self.store.url}: node {node} failed while materializing '{self.table.view}' ({exc}); "
            "readers still see the previous version; check the node (with replicas the cluster fails over "
            "by itself), then run again"
        )

    def _base(self, p: int) -> str:
        b = self.table.base_version
        return "" if b is None else self.parts.data(p, b)

    def append(self, pairs: list[tuple[str, list[Any]]], what: str) -> None:
        """Append stored rows (encoded key, rows texts) to their entities in this version."""
        by_part: dict[int, list[Any]] = {}
        for field, text in pairs:
            by_part.setdefault(self.parts.of(field), []).extend((field, text))
        calls: list[Call] = []
        for p, args in by_part.items():
            slot = self.store.calls.slot(self.parts.live(p))
            for i in range(0, len(args), 2000):
                calls.append(
                    (
                        slot,
                        APPEND_PART,
                        (self.parts.data(p, self.table.version),),
                        (self._base(p), *args[i : i + 2000]),
                    )
                )
        if calls:
            self.store.calls.run(calls, what)

    def write_pushed(self, rows: pa.Table) -> int:
        import redis as redis_lib

        table = self.table
        pairs = push_rows_of(rows, table)
        if not pairs:
            return 0
        args, _, _ = encode_push([(encode_key(k, table.key_types), row) for k, row in pairs], table)
        try:
            self.append(
                list(zip(args[::2], args[1::2], strict=True)), f"writing pushed rows of '{table.view}'"
            )
            self.store.ks.renew(self.lease)
        except redis_lib.RedisError as exc:
            raise self._error(exc) from exc
        return len(pairs)

    def _everywhere(self, source: str, args: Callable[[int], tuple[Any, ...]], what: str) -> list[Any]:
        parts = self.parts
        return self.store.calls.run(
            [
                (self.store.calls.slot(parts.live(p)), source, (parts.live(p),), args(p))
                for p in range(parts.n)
            ],
            what,
        )

    def switch(self) -> OnlineTable:
        """Count, store the metadata, replay the journal, make the pointer live in every partition,
        flip the view's pointer (checking the lock and that the replay is complete), then make it the
        only live pointer and free the older versions."""
        import redis as redis_lib

        if not self.owner:
            raise OnlineStoreError("only the run that began a version switches readers to it")
        store, ks, view, parts = self.store, self.store.ks, self.table.view, self.parts
        version, layered_on = self.table.version, self.table.base_version
        try:
            counts = store.calls.run(
                [(store.calls.slot(parts.live(p)), COUNT_PART,
                  (parts.data(p, version), parts.data(p, version if layered_on is None else layered_on)), ())
                 for p in range(parts.n)],
                f"counting '{view}'",
            )  # fmt: skip
            written = self.table.with_version(version, sum(int(c) for c in counts), base_version=layered_on)
            meta = json.loads(written.to_json())
            meta["partitions"] = parts.n
            store.client.set(ks.key(view, f"meta:{version}"), json.dumps(meta, sort_keys=True))
            pointer = str(version) if layered_on is None else f"{version}:{layered_on}"
            trim = covered_entries(ks, view, written, self.covered, self.since_us)
            self._everywhere(SET_LIVE, lambda p: ("add", pointer), f"switching '{view}'")
            replayed = 0
            for _ in range(100):
                upto = int(store.client.get(ks.key(view, "pseq")) or 0)
                self._replay(written, replayed, upto, set(trim))
                replayed = upto
                keys = (
                    ks.key(view, "lock"),
                    ks.key(view, "current"),
                    ks.key(view, "journal"),
                    ks.key(view, "pseq"),
                )
                args = (self.lease.token, pointer, str(replayed), ks.key(view, "j:"), written.layout, *trim)
                flipped = int(ks.script(_FLIP, keys, args))
                if flipped != 2:
                    break
            if flipped == 0:
                ks.renew(self.lease)  # raises: the lock is gone
            elif flipped != 1:
                raise OnlineStoreError(
                    f"online store {store.url}: pushes to '{view}' kept coming during the switch; retry"
                )
        except BaseException as exc:
            self.abort()
            if isinstance(exc, redis_lib.RedisError):
                raise self._error(exc) from exc
            raise
        self.done = True
        store.remember(written)
        try:
            self._everywhere(SET_LIVE, lambda p: ("only", pointer), f"switching '{view}'")
        except (OnlineStoreError, redis_lib.RedisError):
            pass  # switched: readers of an older pointer see it go when the next run frees it
        store.cleanup(view, keep={version, layered_on})
        return written

    def _replay(self, written: OnlineTable, after: int, upto: int, trim: set[str]) -> None:
        """Append the journaled pushes (after, upto] this run does not cover into the new version."""
        if upto <= after:
            return
        ks = self.store.ks
        view = written.view
        events_after = written.events_after_us
        for raw in ks.client.zrangebyscore(ks.key(view, "journal"), after + 1, upto):
            seq, _, high, layout = raw.decode().split(":", 3)
            if seq in trim or layout != written.layout:
                continue
            if events_after is not None and int(high) <= events_after:
                continue  # a windowed view's events in no window of a read at or after the end
            items = ks.client.lrange(ks.key(view, f"j:{seq}"), 0, -1)
            self.append(list(zip(items[::2], items[1::2], strict=True)), f"replaying pushes into '{view}'")

    def abort(self) -> None:
        if self.owner and not self.done:
            self.done = True
            _drop(self.store, self.table.view, f"{self.table.version}:{self.parts.n}")


def _drop(store: RedisClusterStore, view: str, member: str) -> None:
    """Free version "N:parts" of ``view`` in every partition (best effort: it stays listed otherwise)."""
    import redis as redis_lib

    number, _, count = member.partition(":")
    parts = Partitions(store.prefix, view, int(count or 1))
    try:
        store.calls.run(
            [(store.calls.slot(parts.live(p)), DROP_PART, (parts.live(p), parts.pushes(p)), (number, parts.data(p, number)))
             for p in range(parts.n)],
            f"freeing version {number} of '{view}'",
        )  # fmt: skip
        store.client.unlink(store.ks.key(view, f"meta:{number}"))
        store.client.srem(store.ks.key(view, "versions"), member)
    except (OnlineStoreError, redis_lib.RedisError):
        pass  # listed in P:versions: the next run frees it


def drop_versions(store: RedisClusterStore, view: str, keep: set[int | None]) -> None:
    """Free every version of ``view`` but ``keep``."""
    import redis as redis_lib

    try:
        members = [m.decode() for m in store.client.smembers(store.ks.key(view, "versions"))]
    except redis_lib.RedisError:
        return
    for member in members:
        if int(member.split(":", 1)[0]) not in keep:
            _drop(store, view, member)


def _bulk_hset(writer: RedisClusterWriter, rows: pa.Table, progress: Callable[[int], None] | None) -> None:
    """Pipelined ``HSET``s of pre-encoded groups, each to the node serving its partition; each node
    has up to ``_IN_FLIGHT`` commands pending, so all nodes store while DuckDB encodes."""
    import redis as redis_lib

    if rows.num_rows == 0:
        return
    store, parts, version = writer.store, writer.parts, writer.table.version
    heads = {p: parts.data(p, version).encode() for p in range(parts.n)}
    conns: dict[str, tuple[Any, Any, list[int]]] = {}  # node → (pool, connection, pending counts)
    renewed = time.monotonic()

    def settle(name: str, keep: int) -> None:
        _, conn, pending = conns[name]
        while len(pending) > keep:
            try:
                conn.read_response()
            except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                raise NodeFailed(name, exc) from exc
            n = pending.pop(0)
            if progress is not None:
                progress(n)

    try:
        for p, n, body in packed_groups(
            rows, writer.table, store.chunk_rows, lambda k: partitions_of(k, parts.n)
        ):
            node = store.calls.node(store.calls.slot(parts.live(p)))
            try:
                if node.name not in conns:
                    pool = node.redis_connection.connection_pool  # type: ignore[union-attr]
                    conns[node.name] = (pool, pool.get_connection(), [])
                _, conn, pending = conns[node.name]
                conn.send_packed_command([hset_header(heads[p], n), body], check_health=False)
            except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                raise NodeFailed(node.name, exc) from exc
            pending.append(n)
            settle(node.name, _IN_FLIGHT)
            if time.monotonic() - renewed > _RENEW_EVERY:
                store.ks.renew(writer.lease)
                renewed = time.monotonic()
        for name in conns:
            settle(name, 0)
    except BaseException:
        for _, conn, _ in conns.values():
            conn.disconnect()
        raise
    finally:
        for pool, conn, _ in conns.values():
            pool.release(conn)
