"""Commands to a Redis Cluster grouped by node: one pipelined round trip per node, all nodes at once.

A batch of script calls, each bound to a hash slot, is split by the primary that serves the slot
(redis-py's slot map); every node's commands go out in one write before any reply is read, so
the nodes work in parallel and a batch costs about one round trip whatever its size. A moved
slot, a failover or a script the node lacks refreshes the map (or loads the script) and runs the
calls it refused again (only those: an append that ran is not repeated); a node that stays unreachable is an ``OnlineStoreError`` that names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import OnlineStoreError

if TYPE_CHECKING:
    from redis.cluster import ClusterNode, RedisCluster

__all__ = ["ClusterCalls", "Call", "NodeFailed"]

#: (slot, Lua source, keys, arguments) of one script call
Call = tuple[int, str, Sequence[str], Sequence[Any]]

ATTEMPTS = 12  # a failover takes the cluster about node-timeout x 2 (a few seconds) to settle
_BACKOFF = 0.05  # seconds, doubled per attempt up to 1 s


def packed(call: Call, sha: str) -> bytes:
    """``EVALSHA`` of ``call`` in RESP, built at once (redis-py's packer encodes argument by argument)."""
    _, _, keys, args = call
    parts = [b"EVALSHA", sha.encode(), b"%d" % len(keys)]
    parts += [k.encode() for k in keys]
    parts += [a if type(a) is bytes else str(a).encode() for a in args]
    return b"".join([b"*%d\r\n" % len(parts), *(b"$%d\r\n%s\r\n" % (len(x), x) for x in parts)])


class NodeFailed(Exception):
    """The connection to one node failed (``node``: its host:port; ``cause``: redis-py's error)."""

    def __init__(self, node: str, cause: Exception) -> None:
        super().__init__(f"{node}: {cause}")
        self.node = node
        self.cause = cause


class ClusterCalls:
    """Script calls over a ``RedisCluster``'s nodes (see the module's docstring)."""

    def __init__(
        self, client: RedisCluster, url: str, failed: Callable[[str, Exception], OnlineStoreError]
    ) -> None:
        self.client = client
        self.url = url
        self.failed = failed  # the store's error for a refused command
        self.shas: dict[str, str] = {}
        self.slots: dict[str, int] = {}

    def slot(self, key: str) -> int:
        found = self.slots.get(key)
        if found is None:
            found = self.slots[key] = int(self.client.keyslot(key))
        return found

    @property
    def slots_cache(self) -> dict[int, list[ClusterNode]]:
        """redis-py's map of hash slot → nodes serving it (the primary first)."""
        return self.client.nodes_manager.slots_cache  # type: ignore[return-value]

    def node(self, slot: int) -> ClusterNode:
        nodes = self.slots_cache.get(slot)
        if not nodes:
            self.refresh()
            nodes = self.slots_cache.get(slot)
            if not nodes:
                raise OnlineStoreError(
                    f"online store {self.url}: no node serves hash slot {slot} (is the cluster down? "
                    "`redis-cli --cluster check` one of its nodes)"
                )
        return nodes[0]

    def refresh(self) -> None:
        import redis as redis_lib

        try:
            self.client.nodes_manager.initialize()
        except redis_lib.RedisError:
            pass  # the next attempt tells

    def sha(self, source: str) -> str:
        found = self.shas.get(source)
        if found is None:
            from hashlib import sha1

            found = self.shas[source] = sha1(source.encode()).hexdigest()
        return found

    def run(self, calls: Sequence[Call], what: str) -> list[Any]:
        """The reply of each call, in order; error replies other than routing ones are raised."""
        import redis as redis_lib
        from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, TryAgainError

        delay = _BACKOFF
        failing: tuple[str, Exception] | None = None
        out: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))  # the calls not run yet: a retry never repeats one that ran
        for attempt in range(ATTEMPTS):
            try:
                replies = self._once([calls[i] for i in pending])
            except NodeFailed as exc:
                failing = (exc.node, exc.cause)
            else:
                again = []
                for i, reply in zip(pending, replies, strict=True):
                    if isinstance(reply, NoScriptError):
                        self._load(calls[i][0], calls[i][1])
                        again.append(i)
                    elif isinstance(reply, (MovedError, AskError, TryAgainError, ClusterDownError)):
                        failing = (self.node(calls[i][0]).name, reply)
                        again.append(i)
                    elif isinstance(reply, redis_lib.ResponseError):
                        raise self.failed(what, reply)
                    else:
                        out[i] = reply
                if not again:
                    return out
                pending = again
                if failing is None:
                    continue  # only scripts loaded: at once
            if attempt + 1 < ATTEMPTS:
                time.sleep(delay)
                delay = min(1.0, delay * 2)
                self.refresh()
        name, cause = failing or ("?", Exception("no reply"))
        raise OnlineStoreError(
            f"online store {self.url}: node {name} is unreachable or not serving its slots while {what} "
            f"({type(cause).__name__}: {cause}); check it with `redis-cli -h {name.split(':')[0]} -p "
            f"{name.rsplit(':', 1)[-1]} cluster info` — with replicas the cluster fails over by itself, "
            "then retry"
        )

    def _one(self, call: Call) -> Any:
        import redis as redis_lib

        slot, source = call[0], call[1]
        node = self.node(slot)
        if node.redis_connection is None:
            self.client.nodes_manager.create_redis_connections([node])
        pool = node.redis_connection.connection_pool  # type: ignore[union-attr]
        try:
            conn = pool.get_connection()
        except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
            raise NodeFailed(node.name, exc) from exc
        try:
            conn.send_packed_command([packed(call, self.sha(source))], check_health=False)
            reply = conn.read_response()
        except redis_lib.ResponseError as exc:
            reply = exc
        except BaseException as exc:
            conn.disconnect()
            pool.release(conn)
            if isinstance(exc, (redis_lib.ConnectionError, redis_lib.TimeoutError)):
                raise NodeFailed(node.name, exc) from exc
            raise
        pool.release(conn)
        return reply

    def _load(self, slot: int, source: str) -> None:
        node = self.node(slot)
        assert node.redis_connection is not None
        self.shas[source] = node.redis_connection.script_load(source)

    def _once(self, calls: Sequence[Call]) -> list[Any]:
        """Send every node its calls in one write, then read every reply."""
        import redis as redis_lib

        if len(calls) == 1:  # the single read: no grouping
            return [self._one(calls[0])]

        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, (slot, _, _, _) in enumerate(calls):
            node = self.node(slot)
            entry = by_node.get(node.name)
            if entry is None:
                by_node[node.name] = (node, [i])
            else:
                entry[1].append(i)
        out: list[Any] = [None] * len(calls)
        opened: list[tuple[Any, Any, str]] = []
        try:
            for name, (node, indexes) in by_node.items():
                if node.redis_connection is None:
                    self.client.nodes_manager.create_redis_connections([node])
                pool = node.redis_connection.connection_pool  # type: ignore[union-attr]
                try:
                    conn = pool.get_connection()
                except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                    raise NodeFailed(name, exc) from exc
                opened.append((pool, conn, name))
                payload = b"".join(packed(calls[i], self.sha(calls[i][1])) for i in indexes)
                try:
                    conn.send_packed_command([payload], check_health=False)
                except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                    raise NodeFailed(name, exc) from exc
            for (_, indexes), (_, conn, name) in zip(by_node.values(), opened, strict=True):
                for i in indexes:
                    try:
                        out[i] = conn.read_response()
                    except redis_lib.ResponseError as exc:
                        out[i] = exc
                    except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                        raise NodeFailed(name, exc) from exc
        except BaseException:
            for pool, conn, _ in opened:
                conn.disconnect()
                pool.release(conn)
            raise
        for pool, conn, _ in opened:
            pool.release(conn)
        return out
