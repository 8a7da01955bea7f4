"""Redis Cluster online store: each version of a view split into partitions spread over the nodes.

``redis+cluster://host:port[,host:port…][?prefix=jf:&partitions=N]`` (the hosts are startup
nodes; redis-py's ``RedisCluster`` finds the rest). With ``P = <prefix>{<view>}`` the view's
pointer slot holds what the single-node store keeps there (``redis.py``): ``P:current`` ("N" or
"N:B"), ``P:meta:<N>`` (with the version's partition count), the lock, the version counter, the
push counter and journal. The version's entities live in partitions (``redis_partitions.py``),
each in a hash slot of its own, so a view spreads over every node.

**The switch.** ``P:current`` is the single source of truth. A reader takes the pointer once
(cached for at most ``POINTER_TTL`` seconds) and sends it with every partition read; a partition
answers only while the pointer is in its ``live`` set, so a batch never mixes versions: on a
mismatch the reader takes the pointer again and reads the whole batch again. A run writes its
partitions, replays the push journal into them, adds its pointer to every partition's ``live``
set, flips ``P:current`` in one script that checks the lock and that no push was journaled
since the replay, then makes its pointer the only live one in every partition and unlinks the
old versions' hashes (the grace an older version gets is the time this takes; a reader still
on it retries). A run that fails or is killed never flips: the previous version stays served,
and the next run frees what it wrote (every version is listed in ``P:versions`` as "N:parts").

**Pushes** (``redis_cluster_push.py``) are journaled first (one script on the pointer slot: the
commit point) and then applied to their partitions; a push over several partitions is staged
as pending in each, then made visible partition by partition, and a batch read that sees it
visible in one partition and pending in another reads again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import OnlineStoreError
from .layout import Lease, OnlineTable, PushReceipt, Snapshot, WriterHandle, encode_key, redact
from .redis import Keyspace, RedisStore
from .redis_bulk import scan_pages
from .redis_nodes import Call, ClusterCalls
from .redis_partitions import PUSHES_PART, READ_PART, SNAP_PART, UNPEND_PART, Partitions, default_partitions
from .rows import dumps, loads
from .scan import ScanPages, packed_rows

if TYPE_CHECKING:
    import pyarrow as pa

    from .redis_cluster_writer import RedisClusterWriter

__all__ = ["RedisClusterStore", "Route"]

POINTER_TTL = 1.0  # seconds a reader trusts its cached pointer before reading it again
_MAX_FIELDS = 5000  # fields per partition read (Lua's unpack() limit is ~8000 values)
_RETRIES = 20  # batch reads taken again after a mismatch or a push seen half-visible


@dataclass(frozen=True)
class Route:
    """What a reader needs to read a view: the pointer it read, the version and its partitions."""

    pointer: str
    table: OnlineTable
    parts: Partitions
    at: float  # time.monotonic() when the pointer was read
    cache: dict[int, tuple[int, tuple[str, str, str], str]] = field(default_factory=dict, compare=False)

    def data_prefix(self, p: int) -> str:
        return f"{self.parts.tag(p)}:v"

    def keys(self, p: int, slot_of: Any) -> tuple[int, tuple[str, str, str], str]:
        """(slot, (live, pend, pushes) keys, data prefix) of partition ``p``, built once per route."""
        found = self.cache.get(p)
        if found is None:
            parts = self.parts
            found = (
                slot_of(parts.live(p)),
                (parts.live(p), parts.pend(p), parts.pushes(p)),
                self.data_prefix(p),
            )
            self.cache[p] = found
        return found


def _parse(url: str) -> tuple[list[tuple[str, int]], dict[str, Any], dict[str, str]]:
    """Startup nodes, connection options and query options of a ``redis+cluster://`` URL."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise OnlineStoreError(
                f"online store URL {redact(url)!r}: '{item}' is not host:port; use "
                "redis+cluster://host:port[,host:port...]"
            )
        nodes.append((host.strip("[]"), int(port)))
    options: dict[str, Any] = {}
    if auth:
        user, _, password = auth.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    return nodes, options, dict(parse_qsl(parts.query))


class RedisClusterStore(RedisStore):
    """Online store over a Redis Cluster (see the module's docstring)."""

    events_channel = None  # type: ignore[assignment]  # replicas follow by polling the pointer slot (pub/sub is per node)

    def __init__(self, url: str) -> None:
        from redis.cluster import ClusterNode, RedisCluster

        self.url = redact(url)
        self.connect_url = url
        nodes, options, query = _parse(url)
        self.prefix = query.pop("prefix", "jf:")
        try:
            self.partitions = int(query.pop("partitions")) if "partitions" in query else None
            if "chunk_rows" in query:
                self.chunk_rows = max(1, int(query.pop("chunk_rows")))
        except ValueError as exc:
            raise OnlineStoreError(
                f"online store URL {self.url!r}: {exc}; partitions= takes a number"
            ) from exc
        if self.partitions is not None and not 1 <= self.partitions <= 16384:
            raise OnlineStoreError(f"online store URL {self.url!r}: partitions= must be 1 to 16384")
        if query:
            raise OnlineStoreError(
                f"online store URL {self.url!r}: unknown option {', '.join(query)}; "
                "redis+cluster:// takes prefix=, partitions= and chunk_rows="
            )
        try:
            client: Any = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in nodes], socket_connect_timeout=2,
                socket_timeout=10, cluster_error_retry_attempts=3, **options,
            )  # fmt: skip
        except Exception as exc:
            raise OnlineStoreError(
                f"online store {self.url}: no startup node of the cluster answers ({exc}); check the "
                "host:port list and that the nodes run with cluster-enabled yes"
            ) from exc
        self.client = client
        self.ks = Keyspace(client, self.prefix, self.url)
        self.calls = ClusterCalls(client, self.url, self.ks.failed)
        self._tables: dict[str, OnlineTable] = {}
        self._plans: dict[Any, Any] = {}
        self._evaluators: dict[Any, Any] = {}
        self._identity: str | None = None
        self._routes: dict[str, Route] = {}
        self._counts: dict[tuple[str, int], int] = {}  # (view, version) → partitions

    def __repr__(self) -> str:
        return f"RedisClusterStore({self.url!r})"

    # -- metadata and routes -------------------------------------------------------------
    def _meta(self, view: str, version: int) -> OnlineTable:
        raw = self._meta_text(view, version)
        table = OnlineTable.from_json(raw)
        self._counts[(view, version)] = int(json.loads(raw).get("partitions") or 1)
        self._tables[view] = table
        return table

    def primaries(self) -> int:
        return max(1, len(self.calls.client.get_primaries()))

    def route(self, view: str, *, fresh: bool = False) -> Route:
        """The pointer of ``view`` and what it names; cached for ``POINTER_TTL`` unless ``fresh``."""
        import redis as redis_lib

        found = self._routes.get(view)
        now = time.monotonic()
        if found is not None and not fresh and now - found.at < POINTER_TTL:
            return found
        try:
            raw = self.client.get(self.ks.key(view, "current"))
        except redis_lib.RedisError as exc:
            raise self.ks.failed(f"reading the current version of '{view}'", exc) from exc
        if raw is None:
            self._routes.pop(view, None)
            raise self._missing(view)
        pointer = raw.decode()
        if found is not None and found.pointer == pointer:
            route = Route(pointer, found.table, found.parts, now, found.cache)
        else:
            table = self._meta(view, int(pointer.split(":", 1)[0]))
            route = Route(
                pointer, table, Partitions(self.prefix, view, self._counts[(view, table.version)]), now
            )
        self._routes[view] = route
        return route

    def remember(self, table: OnlineTable) -> None:
        super().remember(table)
        self._routes.pop(table.view, None)

    # -- reads ---------------------------------------------------------------------------
    def read(
        self,
        view: str,
        features: Sequence[str] | None,
        entity_rows: Sequence[Mapping[str, Any]],
        at: int | None = None,
    ) -> tuple[OnlineTable, list[list[Any]]]:
        at_us = time.time_ns() // 1000 if at is None else at
        if type(features) is list:
            features = tuple(features)
        route = self.route(view)
        if not entity_rows:
            return route.table, [[] for _ in route.table.feature_index(features)]
        for attempt in range(_RETRIES):
            table = route.table
            try:
                keys = [encode_key(k, table.key_types) for k in table.keys_of(entity_rows)]
            except (ValueError, TypeError):  # a key that cannot be of the key's type matches nothing
                keys = [self._safe_key(k, table) for k in table.keys_of(entity_rows)]
            raws = self._fetch(route, keys, attempt)
            if raws is not None:
                return table, self.columns(view, features, table, raws, at_us)
            route = self.route(view, fresh=True)
        raise OnlineStoreError(f"online store {self.url}: '{view}' kept switching during a read; retry")

    def _fetch(self, route: Route, keys: list[str], attempt: int) -> list[Any] | None:
        """Each key's stored rows read at ``route.pointer`` (None: the pointer moved, read again),
        one pipelined round trip per node touched."""
        parts = route.parts
        groups: dict[int, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(parts.of(k), []).append(i)
        calls: list[Call] = []
        spans: list[tuple[int, list[int]]] = []
        for p, positions in groups.items():
            slot, names, prefix = route.keys(p, self.calls.slot)
            for s in range(0, len(positions), _MAX_FIELDS):
                chunk = positions[s : s + _MAX_FIELDS]
                calls.append((slot, READ_PART, names, (route.pointer, prefix, *(keys[i] for i in chunk))))
                spans.append((p, chunk))
        replies = self.calls.run(calls, f"reading '{parts.view}'")
        raws: list[Any] = [None] * len(keys)
        pending: dict[int, set[int]] = {}
        pushes: dict[int, Any] = {}
        for (p, chunk), reply in zip(spans, replies, strict=True):
            if not reply:
                return None  # this partition no longer serves the pointer: a switch
            pushes[p], pend, *values = reply.split(b"\x1e")
            if pend:
                pending[p] = {int(s) for s in pend.split(b",")}
            for i, value in zip(chunk, values, strict=True):
                raws[i] = value or None
        if pending and not self._settle(route, keys, groups, raws, pending, attempt):
            return None
        if len(groups) > 1 and any(c != b"0" for c in pushes.values()):
            # The version has pushes: were all partitions read while no push was half applied?
            # A push visible in one partition was staged everywhere first, so a partition read
            # before that staging sees its counter move by now.
            version = route.pointer.split(":", 1)[0]
            again = self.calls.run(
                [
                    (route.keys(p, self.calls.slot)[0], PUSHES_PART, (parts.pushes(p),), (version,))
                    for p in groups
                ],
                f"reading '{parts.view}'",
            )
            if any(now != pushes[p] for p, now in zip(groups, again, strict=True)):
                return None
        return raws

    def _settle(
        self,
        route: Route,
        keys: list[str],
        groups: dict[int, list[int]],
        raws: list[Any],
        pending: dict[int, set[int]],
        attempt: int,
    ) -> bool:
        """Drop rows of pushes still pending in their partition; False when a push is visible in
        one partition of the batch and pending in another (read again)."""
        width = len(route.table.row_columns)
        staged = set().union(*pending.values())
        seen: set[int] = set()
        for p, positions in groups.items():
            hidden = pending.get(p, set())
            for i in positions:
                if raws[i] is None:
                    continue
                rows = loads(b"[" + raws[i] + b"]")
                tags = {r[width] for r in rows if len(r) > width}
                if not tags & (hidden | staged):
                    continue
                seen |= (tags & staged) - hidden
                if tags & hidden:
                    kept = [r for r in rows if len(r) <= width or r[width] not in hidden]
                    raws[i] = dumps(kept)[1:-1] if kept else None
        if not seen:
            return True
        if attempt >= _RETRIES // 2:
            self._roll_forward(route, seen)
        else:
            time.sleep(0.001 * (attempt + 1))
        return False

    def _roll_forward(self, route: Route, seqs: set[int]) -> None:
        """Make journaled pushes visible in every partition (their pusher stopped half way)."""
        journal = self.ks.key(route.parts.view, "journal")
        done = [s for s in seqs if self.client.zrangebyscore(journal, s, s)]
        if done:
            parts = route.parts
            self.calls.run(
                [
                    (self.calls.slot(parts.pend(p)), UNPEND_PART, (parts.pend(p),), done)
                    for p in range(parts.n)
                ],
                f"showing push {done} of '{parts.view}'",
            )

    def scan(self, view: str, *, count: int = 2_000) -> tuple[OnlineTable, pa.RecordBatchReader]:
        """Every row readers are served now (see ``RedisStore.scan``), every partition paged in turn."""
        import pyarrow as pa
        import redis as redis_lib

        for _ in range(3):
            route = self.route(view, fresh=True)
            _, _, base = route.pointer.partition(":")
            top, below = ScanPages([], []), ScanPages([], []) if base else None
            try:
                for p in range(route.parts.n):
                    got = scan_pages(self.ks.script, route.parts.data(p, route.table.version), count)
                    top.split.extend(got.split)
                    top.json.extend(got.json)
                    if below is not None:
                        got = scan_pages(self.ks.script, route.parts.data(p, base), count)
                        below.split.extend(got.split)
                        below.json.extend(got.json)
            except redis_lib.RedisError as exc:
                raise self.ks.failed(f"scanning '{view}'", exc) from exc
            if self.route(view, fresh=True).pointer == route.pointer:  # not switched meanwhile
                rows = packed_rows(top, below, route.table)
                return route.table, pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches())
        raise OnlineStoreError(
            f"online store {self.url}: '{view}' switched versions during each of 3 scans; retry"
        )

    def snapshot(self, view: str) -> Snapshot:
        """The rows a run wrote into the version served now (pushed rows left out: they are all in the
        journal, which ``pushes_since(view, table, 0)`` gives), read partition by partition."""
        for _ in range(5):
            route = self.route(view, fresh=True)
            parts, width = route.parts, len(route.table.row_columns)
            replies = self.calls.run(
                [(self.calls.slot(parts.live(p)), SNAP_PART, (parts.live(p), parts.pend(p)),
                  (route.pointer, route.data_prefix(p))) for p in range(parts.n)],
                f"reading '{view}'",
            )  # fmt: skip
            if not all(replies):
                continue
            rows: dict[str, list[Any]] = {}
            for _, top, below in replies:
                for flat in (top, below):
                    for key, value in zip(flat[::2], flat[1::2], strict=True):
                        name = key.decode()
                        if name not in rows:
                            rows[name] = [r for r in loads(b"[" + value + b"]") if len(r) <= width]
            return Snapshot(route.table, {k: v for k, v in rows.items() if v}, 0)
        raise OnlineStoreError(f"online store {self.url}: '{view}' kept switching while copying it; retry")

    # -- materialization -----------------------------------------------------------------
    def begin(
        self,
        table: OnlineTable,
        *,
        lease: Lease,
        base: OnlineTable | None = None,
        covered: Collection[int] = (),
        rows: int | None = None,
    ) -> RedisClusterWriter:
        """A new version of ``table.view`` in partitions readers do not see until ``switch()`` (an
        incremental run layers its changes on the last full version, partition by partition)."""
        from .redis_cluster_writer import begin_version

        return begin_version(self, table, lease=lease, base=base, covered=covered, rows=rows)

    def resume(self, handle: WriterHandle) -> RedisClusterWriter:
        from .redis_cluster_writer import RedisClusterWriter

        super().resume(handle)  # checks that the run's lock is there
        n = self._counts.get((handle.table.view, handle.table.version)) or int(
            handle.target.rsplit("/", 1)[1]
        )
        return RedisClusterWriter(self, handle.table, handle.lease, handle.target, owner=False, partitions=n)

    def partition_count(self, rows: int | None) -> int:
        return self.partitions or default_partitions(rows, self.primaries())

    def cleanup(self, view: str, keep: set[int | None]) -> None:
        from .redis_cluster_writer import drop_versions

        drop_versions(self, view, keep)

    # -- pushes ----------------------------------------------------------------------------
    def push(self, view: str, rows: pa.Table, *, definition: str | None = None) -> PushReceipt:
        from .redis_cluster_push import push_rows

        return push_rows(self, view, rows, definition)
