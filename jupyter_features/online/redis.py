"""Redis online store: one hash per view version, a pointer key readers follow.

Keys, with ``P = <prefix>{<view>}`` (the braces keep a view's keys in one cluster slot):

- ``P:v<N>``: hash of version N; field = encoded entity key, value = a JSON array
  ``[event time µs, feature 1, feature 2, ...]``, typed as JSON types are.
- ``P:meta:<N>``: JSON metadata of version N (features, types, TTL, end, rows).
- ``P:current``: the version readers use. One Lua script reads it and ``HMGET``s the
  version's hash in the same call, so a read never mixes versions and costs one round trip.
- ``P:lock``: the running materialization (``SET NX PX``, renewed as it writes).
- ``P:next`` / ``P:versions``: version counter and every version that may hold keys.

A run writes ``P:v<N>`` completely, then switches ``P:current`` in one script that first
checks it still holds the lock; old versions are then ``UNLINK``ed (freed in the
background). A run that dies leaves an unreferenced hash that the next run removes.
An incremental run writes only changes: its hash holds the new rows (over a copy of the
served version's changes, if that was incremental too) and the pointer ``N:B`` tells
readers to look up what it lacks in the last full version B, inside the same script.
The next full run starts over with one complete hash.
One hash per version (rather than one key per entity) makes the switch and the cleanup
O(1) commands and lets a batch read be a single ``HMGET``; see benchmarks/online.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import MaterializationBusyError, NotMaterializedError, OnlineStoreError
from ..times import micros_to_datetime
from .canonical import canonical_rows
from .layout import Lease, OnlineTable, PushReceipt, Snapshot, WriterHandle, encode_key, redact
from .redis_bulk import LAYERED_FN, event_groups, hset_header, packed_groups, scan_pages
from .redis_push import (
    APPEND,
    PUSH,
    SWITCH,
    covered_entries,
    encode_push,
    encode_push_columns,
    journal_since,
    packed_script,
    read_snapshot,
)
from .rows import best_row, loads, push_columns_of, push_rows_of
from .scan import packed_rows
from .window_values import WindowEvaluator

if TYPE_CHECKING:
    import pyarrow as pa
    import redis as redis_lib

__all__ = ["RedisStore"]

LEASE_MS = 120_000
_RENEW_EVERY = 5.0  # seconds between lease renewals while writing
_IN_FLIGHT = 8  # HSET commands sent ahead of their replies
_MAX_ARGS = 5000  # Lua's unpack() limit is ~8000 values

# The pointer is "N", or "N:B" for an incremental version N kept as changes over version B:
# what N's hash lacks is read from B's, in the same script.
_READ = (
    LAYERED_FN
    + """
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
local v, b = string.match(cur, '^(%d+):?(%d*)$')
return {cur, layered(ARGV[1] .. v, b ~= '' and (ARGV[1] .. b) or '', {unpack(ARGV, 2)})}
"""
)
# Entities in an incremental version: its own plus its base's that it does not replace.
_COUNT_LAYERED = """
local n = redis.call('HLEN', KEYS[2])
for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('HEXISTS', KEYS[2], k) == 0 then n = n + 1 end
end
return n
"""
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_TAKE_STALE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _pointer_version(raw: Any) -> int:
    """The version a pointer value ("N" or "N:B") names."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return int(text.split(":", 1)[0])


def _decode_ts(value: Any) -> Any:
    return None if value is None else micros_to_datetime(value)


class Keyspace:
    """A Redis client, a key prefix and what every user of a store's keys needs: the names of
    a view's keys (``<prefix>{view}:<suffix>``), cached Lua scripts and clear errors."""

    def __init__(self, client: redis_lib.Redis, prefix: str, url: str) -> None:
        self.client = client
        self.prefix = prefix
        self.url = url  # redacted
        self.shas: dict[str, str] = {}

    def key(self, view: str, suffix: str) -> str:
        return f"{self.prefix}{{{view}}}:{suffix}"

    def failed(self, what: str, exc: Exception) -> OnlineStoreError:
        import redis as redis_lib

        if isinstance(exc, (redis_lib.ConnectionError, redis_lib.TimeoutError)):
            return OnlineStoreError(f"online store {self.url}: Redis is unreachable while {what} ({exc})")
        text = str(exc)
        if text.startswith("WRONGTYPE"):
            return OnlineStoreError(
                f"online store {self.url}: while {what}, a key holds a different type than expected ({text}); "
                f"keys under '{self.prefix}' belong to jupyter-features: remove the foreign key or use "
                "another ?prefix="
            )
        return OnlineStoreError(f"online store {self.url}: Redis refused {what}: {text}")

    def script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        import redis as redis_lib

        sha = self.shas.get(source)
        if sha is None:
            sha = self.shas[source] = self.client.script_load(source)
        try:
            return self.client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        except redis_lib.exceptions.NoScriptError:
            self.shas[source] = self.client.script_load(source)
            return self.client.execute_command("EVALSHA", self.shas[source], len(keys), *keys, *args)

    def renew(self, lease: Lease) -> None:
        """Extend ``lease``; the run has lost its lock if it is not there."""
        if not self.script(_RENEW, (self.key(lease.view, "lock"),), (lease.token, LEASE_MS)):
            raise lease.lost(self.url)


class RedisStore:
    """Online store in Redis (``redis://host:port/db``; ``?prefix=jf:`` namespaces the keys)."""

    chunk_rows = 2_000  # entities per HSET command when writing

    def __init__(self, url: str) -> None:
        import redis as redis_lib

        self.url = redact(url)  # what messages and results show: no password
        self.connect_url = url  # with the password: for opening another connection (e.g. in a worker)
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.prefix = query.pop("prefix", "jf:")
        if "chunk_rows" in query:
            self.chunk_rows = max(1, int(query.pop("chunk_rows")))
        clean = urlunsplit(parts._replace(query=urlencode(query)))
        try:
            self.client: redis_lib.Redis = redis_lib.Redis.from_url(
                clean, socket_connect_timeout=5, socket_timeout=10
            )
        except ValueError as exc:
            raise OnlineStoreError(f"online store URL {url!r} is not a Redis URL: {exc}") from exc
        self.ks = Keyspace(self.client, self.prefix, self.url)
        self._tables: dict[str, OnlineTable] = {}
        self._plans: dict[Any, tuple[OnlineTable, list[int], list[Any], bool]] = {}
        self._evaluators: dict[Any, tuple[OnlineTable, WindowEvaluator]] = {}
        self._identity: str | None = None

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    def close(self) -> None:
        self.client.close()

    # -- metadata ----------------------------------------------------------------------
    def _meta(self, view: str, version: int) -> OnlineTable:
        table = OnlineTable.from_json(self._meta_text(view, version))
        self._tables[view] = table
        return table

    def _meta_text(self, view: str, version: int) -> bytes:
        """The stored metadata of a version of ``view``, as written (JSON)."""
        import redis as redis_lib

        try:
            raw = self.client.get(self.ks.key(view, f"meta:{version}"))
        except redis_lib.RedisError as exc:
            raise self.ks.failed(f"reading the metadata of '{view}'", exc) from exc
        if raw is None:
            raise OnlineStoreError(
                f"online store {self.url}: version {version} of '{view}' has no metadata; materialize it again"
            )
        return raw  # type: ignore[no-any-return]

    def current(self, view: str) -> OnlineTable | None:
        import redis as redis_lib

        try:
            raw = self.client.get(self.ks.key(view, "current"))
        except redis_lib.RedisError as exc:
            raise self.ks.failed(f"reading the current version of '{view}'", exc) from exc
        if raw is None:
            self._tables.pop(view, None)
            return None
        return self._meta(view, _pointer_version(raw))

    def views(self) -> dict[str, OnlineTable]:
        """Every view this store serves (under its prefix), with the version readers see now."""
        import redis as redis_lib

        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "{*}:current"
        start = len(self.prefix) + 1
        try:
            names = sorted(
                key.decode()[start : -len("}:current")]
                for key in self.client.scan_iter(match=pattern, count=1000)
            )
        except redis_lib.RedisError as exc:
            raise OnlineStoreError(
                f"online store {self.url}: Redis is unreachable while listing the views ({exc})"
            ) from exc
        out = {}
        for view in names:
            table = self.current(view)
            if table is not None:
                out[view] = table
        return out

    # -- reads (the hot path) ------------------------------------------------------------
    def read(
        self,
        view: str,
        features: Sequence[str] | None,
        entity_rows: Sequence[Mapping[str, Any]],
        at: int | None = None,
    ) -> tuple[OnlineTable, list[list[Any]]]:
        import redis as redis_lib

        at_us = time.time_ns() // 1000 if at is None else at
        if type(features) is list:
            features = tuple(features)
        table = self._tables.get(view)
        if table is None:
            table = self.current(view)
            if table is None:
                raise self._missing(view)
        if not entity_rows:
            return table, [[] for _ in table.feature_index(features)]
        try:
            keys = [encode_key(k, table.key_types) for k in table.keys_of(entity_rows)]
        except (ValueError, TypeError):  # a key that cannot be of the key's type matches nothing
            keys = [self._safe_key(k, table) for k in table.keys_of(entity_rows)]
        raws: list[Any] = []
        version = b""
        try:
            for i in range(0, max(len(keys), 1), _MAX_ARGS):
                reply = self.ks.script(
                    _READ, (self.ks.key(view, "current"),), (self.ks.key(view, "v"), *keys[i : i + _MAX_ARGS])
                )
                if reply is None:
                    raise self._missing(view)
                if version and reply[0] != version:  # switched between two slices: read again
                    return self.read(view, features, entity_rows, at_us)
                version = reply[0]
                raws += reply[1]
        except redis_lib.RedisError as exc:
            raise self.ks.failed(f"reading '{view}'", exc) from exc
        number = _pointer_version(version)
        if number != table.version:
            old = table
            table = self._meta(view, number)
            if table.entity != old.entity or table.key_types != old.key_types:
                return self.read(view, features, entity_rows, at_us)
        return table, self.columns(view, features, table, raws, at_us)

    def columns(
        self, view: str, features: Sequence[str] | None, table: OnlineTable, raws: Sequence[Any], at_us: int
    ) -> list[list[Any]]:
        """The requested features' values of each entity's stored rows (``raws``: the stored text,
        None when absent) as of ``at_us``, one list per feature."""
        if table.window is not None:  # a windowed view: evaluated over the entity's events at T
            return self._window_values(table, features, raws, at_us)
        plan = self._plans.get((view, features))
        if plan is None or plan[0] is not table:
            first = 1 + table.created  # a stored row: event time, [created,] features
            idx = [i + first for i in table.feature_index(features)]
            decoders = [_decode_ts if table.features[i - first].type == "timestamp" else None for i in idx]
            plan = (table, idx, decoders, all(d is None for d in decoders))
            self._plans[(view, features)] = plan
        _, idx, decoders, plain = plan
        ttl, width = table.ttl_us, len(table.row_columns)
        rows: list[list[Any] | None] = []
        for raw in raws:
            if raw is None:
                rows.append(None)
                continue
            best = best_row(loads(b"[" + raw + b"]"), at_us, ttl, width)
            rows.append(None if best is None else [best[i] for i in idx])
        columns = [[None if r is None else r[j] for r in rows] for j in range(len(idx))]
        if not plain:
            for j, d in enumerate(decoders):
                if d is not None:
                    columns[j] = [d(v) for v in columns[j]]
        return columns

    def _window_values(
        self, table: OnlineTable, features: Sequence[str] | None, raws: Sequence[Any], at_us: int
    ) -> list[list[Any]]:
        assert table.window is not None
        found = self._evaluators.get((table.view, features))
        if found is None or found[0] is not table:
            found = (table, WindowEvaluator(table.window, table.features, table.feature_index(features)))
            self._evaluators[(table.view, features)] = found
        evaluator = found[1]
        if len(raws) == 1:
            raw = raws[0]
            values = evaluator.empty() if raw is None else evaluator.values(loads(b"[" + raw + b"]"), at_us)
            return [[v] for v in values]
        empty = evaluator.empty()
        rows = [empty if raw is None else evaluator.values(loads(b"[" + raw + b"]"), at_us) for raw in raws]
        return [list(c) for c in zip(*rows, strict=True)]

    def scan(self, view: str, *, count: int = 2_000) -> tuple[OnlineTable, pa.RecordBatchReader]:
        """Every row readers are served now, in the canonical form (see ``scan.py``): ``HSCAN`` of
        the version's hash (and of its base's, for an incremental version), past-TTL rows left out
        as reads do. A switch during the scan starts it over. Each script call pages ``count``
        fields (a few milliseconds of Redis's time, so other clients wait no longer than that)."""
        import pyarrow as pa
        import redis as redis_lib

        for _ in range(3):
            try:
                pointer = self.client.get(self.ks.key(view, "current"))
                if pointer is None:
                    raise self._missing(view)
                number, _, base = (
                    pointer.decode() if isinstance(pointer, bytes) else str(pointer)
                ).partition(":")
                table = self._meta(view, int(number))
                top = scan_pages(self.ks.script, self.ks.key(view, f"v{number}"), count)
                below = scan_pages(self.ks.script, self.ks.key(view, f"v{base}"), count) if base else None
                if self.client.get(self.ks.key(view, "current")) == pointer:  # not switched meanwhile
                    rows = packed_rows(top, below, table)
                    return table, pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches())
            except redis_lib.RedisError as exc:
                raise self.ks.failed(f"scanning '{view}'", exc) from exc
        raise OnlineStoreError(
            f"online store {self.url}: '{view}' switched versions during each of 3 scans; retry"
        )

    def _safe_key(self, key: tuple[Any, ...], table: OnlineTable) -> str:
        try:
            return encode_key(key, table.key_types)
        except (ValueError, TypeError):
            return "\x00unmatchable"

    def _missing(self, view: str) -> OnlineStoreError:
        return NotMaterializedError(
            f"feature view '{view}' is not materialized in {self.url}; "
            f"run ws.materialize(['{view}']) or `jupyter-features materialize {view}`"
        )

    # -- materialization -----------------------------------------------------------------
    @contextmanager
    def lock(self, view: str) -> Iterator[Lease]:
        import redis as redis_lib

        lease = Lease(view)
        key = self.ks.key(view, "lock")
        holder: Any = None
        try:
            acquired = bool(self.client.set(key, lease.token, nx=True, px=LEASE_MS))
            if not acquired:
                holder = self.client.get(key)
                if holder is None:  # released in between
                    acquired = bool(self.client.set(key, lease.token, nx=True, px=LEASE_MS))
                elif Lease.stale(holder.decode()):  # its process died on this host
                    acquired = bool(self.ks.script(_TAKE_STALE, (key,), (holder, lease.token, LEASE_MS)))
        except redis_lib.RedisError as exc:
            raise self.ks.failed(f"locking '{view}'", exc) from exc
        if not acquired:
            host, pid, _ = (holder.decode() if holder else "?|?|?").split("|", 2)
            raise MaterializationBusyError(
                f"feature view '{view}' is already being materialized to {self.url} "
                f"(process {pid} on {host}); wait for that run to finish, then retry"
            )
        lease.hold()
        try:
            yield lease
        finally:
            lease.drop()
            try:
                self.ks.script(_RELEASE, (key,), (lease.token,))
            except redis_lib.RedisError:
                pass  # the lease expires by itself

    def begin(
        self,
        table: OnlineTable,
        *,
        lease: Lease,
        base: OnlineTable | None = None,
        covered: Collection[int] = (),
        rows: int | None = None,
    ) -> RedisWriter:
        """Start writing a new version of ``table.view`` into a hash readers do not see until
        ``switch()``; for an incremental run (``base`` is the served version) only changes are
        written, layered on the last full version. ``covered``: the push-journal entries the
        run's offline read holds (the switch replays the others)."""
        import redis as redis_lib

        view = table.view
        client = self.client
        ks = self.ks
        owned = 0
        try:
            current = self.current(view)
            version = int(client.incr(ks.key(view, "next")))
            if current is not None and version <= current.version:
                version = current.version + 1
                client.set(ks.key(view, "next"), version)
            target = ks.key(view, f"v{version}")
            kind = client.type(target)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind != "none":
                raise OnlineStoreError(
                    f"online store {self.url}: key '{target}' already exists as a {kind}; it is in the "
                    f"keyspace of feature view '{view}': remove it or use another ?prefix="
                )
            client.sadd(ks.key(view, "versions"), version)
            owned = version
            layered_on = None
            if base is not None and current is not None and current.version == base.version:
                # Incremental: the new rows over the served version's own changes, layered on its
                # base, so that only changes are copied (COPY would block Redis for the whole hash).
                layered_on = current.base_version or current.version
                if current.base_version is not None:
                    client.copy(ks.key(view, f"v{current.version}"), target)
            ks.renew(lease)
        except BaseException as exc:
            if owned:
                _unlink_version(ks, view, owned)
            if isinstance(exc, redis_lib.RedisError):
                raise self.write_error(view, exc) from exc
            raise
        writer = RedisWriter(
            self, table.with_version(version, 0, base_version=layered_on), lease, target, owner=True
        )
        writer.covered = frozenset(covered)
        writer.since_us = base.end_us if layered_on is not None and base is not None else None
        return writer

    def resume(self, handle: WriterHandle) -> RedisWriter:
        """A writer of more rows into the version ``handle`` names, in another process — which
        must reach the run's own server: it finds the run's lock there before writing anything."""
        import socket

        import redis as redis_lib

        view = handle.table.view
        try:
            held = self.ks.script(_RENEW, (self.ks.key(view, "lock"),), (handle.lease.token, LEASE_MS))
        except redis_lib.RedisError as exc:
            raise self.write_error(view, exc) from exc
        if not held:
            raise OnlineStoreError(
                f"online store {self.url}: {socket.gethostname()} finds no lock of the run writing '{view}' "
                "there: either its lease expired and another run took over, or this process reaches another "
                "Redis server than the run does (127.0.0.1, localhost or a Unix socket is each machine's own); "
                "give the online store an address every Spark executor reaches. Nothing was written here"
            )
        return RedisWriter(self, handle.table, handle.lease, handle.target, owner=False)

    def write_error(self, view: str, exc: Exception) -> OnlineStoreError:
        return OnlineStoreError(
            f"{self.ks.failed(f'materializing {view!r}', exc)}; readers still see the previous version"
        )

    def cleanup(self, view: str, keep: set[int | None]) -> None:
        """Free every version of ``view`` but ``keep`` (unlinked: freed in the background)."""
        import redis as redis_lib

        key = self.ks.key(view, "versions")
        try:
            for raw in self.client.smembers(key):
                v = int(raw)
                if v not in keep:
                    _unlink_version(self.ks, view, v)
        except redis_lib.RedisError:
            pass  # the next run tries again

    # -- pushes ----------------------------------------------------------------------------
    def identity(self) -> str:
        """This store's identity (kept under the prefix), which push logs record."""
        if self._identity is not None:
            return self._identity
        import uuid

        import redis as redis_lib

        key = f"{self.prefix}identity"
        try:
            self.client.set(key, uuid.uuid4().hex[:16], nx=True)
            raw = self.client.get(key)
        except redis_lib.RedisError as exc:
            raise self.ks.failed("reading the store's identity", exc) from exc
        self._identity = raw.decode() if isinstance(raw, bytes) else str(raw)
        return self._identity

    def push(self, view: str, rows: pa.Table, *, definition: str | None = None) -> PushReceipt:
        """Append ``rows`` (keys, event time, [created,] features, as a view computes them) to
        the entities of the version readers see now, and journal them, in one script call:
        the next read sees all of them or none."""
        import redis as redis_lib

        ks = self.ks
        table = self._tables.get(view) or self.current(view)
        if table is None:
            raise self._missing(view)
        keys = (ks.key(view, "current"), ks.key(view, "pseq"), ks.key(view, "journal"))
        for _ in range(50):
            table.check_definition(definition, self.url)
            push = push_columns_of(rows, table)
            if not len(push):
                return PushReceipt(view, table.version, None, 0)
            args, low, high = encode_push_columns(push, table)
            pointer = (
                str(table.version) if table.base_version is None else f"{table.version}:{table.base_version}"
            )
            try:
                ok, value = packed_script(
                    ks, PUSH, keys,
                    (pointer, ks.key(view, "v"), ks.key(view, "j:"), f":{low}:{high}:{table.layout}",
                     ks.key(view, "events"), *args),
                )  # fmt: skip
            except redis_lib.RedisError as exc:
                raise ks.failed(f"pushing to '{view}' (nothing was written)", exc) from exc
            if ok:
                return PushReceipt(view, table.version, int(value), len(push))
            if not value:
                raise self._missing(view)
            table = self._meta(view, _pointer_version(value))  # switched: encode for the new version
        raise OnlineStoreError(f"online store {self.url}: '{view}' kept switching during a push; retry")

    def push_state(self, view: str) -> tuple[int, int] | None:
        """(version served, last push sequence number) for ``view``, or None if it is not served."""
        import redis as redis_lib

        try:
            pointer, seq = self.client.mget(self.ks.key(view, "current"), self.ks.key(view, "pseq"))
        except redis_lib.RedisError as exc:
            raise self.ks.failed(f"reading the state of '{view}'", exc) from exc
        if pointer is None:
            return None
        return _pointer_version(pointer), int(seq or 0)

    def snapshot(self, view: str) -> Snapshot:
        """Every row of the version served now and the last push in it, copied at one instant."""
        import redis as redis_lib

        try:
            found = read_snapshot(self.ks, view)
            if found is None:
                raise self._missing(view)
            pointer, seq, rows = found
            return Snapshot(self._meta(view, _pointer_version(pointer)), rows, seq)
        except redis_lib.RedisError as exc:
            raise self.ks.failed(f"reading '{view}'", exc) from exc

    def pushes_since(self, view: str, table: OnlineTable, seq: int) -> list[tuple[int, dict[str, list[Any]]]]:
        """The pushes of ``view`` journaled after ``seq`` (in ``table``'s layout), rows by encoded key."""
        import redis as redis_lib

        try:
            return journal_since(self.ks, view, table, seq)
        except redis_lib.RedisError as exc:
            raise self.ks.failed(f"reading the pushes of '{view}'", exc) from exc

    def events_channel(self, view: str) -> str:
        """The channel on which pushes and switches of ``view`` are published."""
        return self.ks.key(view, "events")

    def remember(self, table: OnlineTable) -> None:
        """Cache ``table`` as the version of its view that readers see now."""
        self._tables[table.view] = table


class RedisWriter:
    """One version of a view being written into a Redis store (see ``OnlineStore.begin``)."""

    def __init__(
        self, store: RedisStore, table: OnlineTable, lease: Lease, target: str, *, owner: bool
    ) -> None:
        self.store = store
        self.table = table
        self.lease = lease
        self.target = target
        self.owner = owner  # began the version here: may switch or abort it
        self.done = False
        self.covered: frozenset[int] = frozenset()  # push-journal entries the run's rows hold
        self.since_us: int | None = None  # an incremental run's watermark

    def write_batch(self, rows: pa.Table, progress: Callable[[int], None] | None = None) -> int:
        """``HSET`` ``rows`` (keys, event time, features as an engine computed them) into the
        version's hash, pipelined, renewing the lease as it goes."""
        import redis as redis_lib

        canonical = canonical_rows(rows, self.table)
        if self.table.window is not None:  # an entity's events: appended to its field
            return self._append_events(canonical, progress)
        try:
            _bulk_hset(self.store, self.target, canonical, self.table, self.lease, progress)
        except redis_lib.RedisError as exc:
            raise self.store.write_error(self.table.view, exc) from exc
        return canonical.num_rows

    def _append_events(self, canonical: pa.Table, progress: Callable[[int], None] | None) -> int:
        """A windowed view's events: each entity's rows in time order, as one text per entity
        built by DuckDB, appended to the entity's field (a batch may split an entity's events)."""
        import redis as redis_lib

        ks = self.store.ks
        try:
            for n, args in event_groups(canonical, self.table, self.store.chunk_rows):
                ks.script(APPEND, (self.target,), ("", *args))
                ks.renew(self.lease)
                if progress is not None:
                    progress(n)
        except redis_lib.RedisError as exc:
            raise self.store.write_error(self.table.view, exc) from exc
        return canonical.num_rows

    def write_pushed(self, rows: pa.Table) -> int:
        """Append ``rows`` to their entities' fields of the version (see ``VersionWriter``)."""
        import redis as redis_lib

        table, ks = self.table, self.store.ks
        pairs = push_rows_of(rows, table)
        if not pairs:
            return 0
        args, _, _ = encode_push([(encode_key(k, table.key_types), row) for k, row in pairs], table)
        base = "" if table.base_version is None else ks.key(table.view, f"v{table.base_version}")
        try:
            for i in range(0, len(args), 2 * 1000):
                ks.script(APPEND, (self.target,), (base, *args[i : i + 2000]))
            ks.renew(self.lease)
        except redis_lib.RedisError as exc:
            raise self.store.write_error(table.view, exc) from exc
        return len(pairs)

    def renew(self) -> None:
        import redis as redis_lib

        try:
            self.store.ks.renew(self.lease)
        except redis_lib.RedisError as exc:
            raise self.store.write_error(self.table.view, exc) from exc

    def handle(self, *, other_host: bool = False) -> WriterHandle | None:
        """For writing from other processes (they connect to the same Redis)."""
        return WriterHandle(
            url=self.store.connect_url, table=self.table, lease=self.lease, target=self.target
        )

    def switch(self) -> OnlineTable:
        """Count the version's entities, store its metadata and switch the pointer, in a script
        that first checks the run still holds the lock; then free the older versions."""
        import redis as redis_lib

        if not self.owner:
            raise OnlineStoreError("only the run that began a version switches readers to it")
        store, ks, view = self.store, self.store.ks, self.table.view
        version, layered_on = self.table.version, self.table.base_version
        try:
            if layered_on is None:
                count = int(store.client.hlen(self.target))
            else:
                count = int(ks.script(_COUNT_LAYERED, (self.target, ks.key(view, f"v{layered_on}")), ()))
            written = self.table.with_version(version, count, base_version=layered_on)
            store.client.set(ks.key(view, f"meta:{version}"), written.to_json())
            pointer = str(version) if layered_on is None else f"{version}:{layered_on}"
            trim = covered_entries(ks, view, written, self.covered, self.since_us)
            keys = (ks.key(view, "lock"), ks.key(view, "current"), ks.key(view, "journal"))
            args = (
                self.lease.token, pointer, ks.key(view, "v"), ks.key(view, "j:"), version,
                "" if layered_on is None else layered_on, written.layout, ks.key(view, "events"),
                "" if written.events_after_us is None else written.events_after_us, *trim,
            )  # fmt: skip
            if not ks.script(SWITCH, keys, args):
                ks.renew(self.lease)  # raises: the lock is gone
        except BaseException as exc:
            self.abort()
            if isinstance(exc, redis_lib.RedisError):
                raise store.write_error(view, exc) from exc
            raise
        self.done = True
        store.cleanup(view, keep={version, layered_on})
        store.remember(written)
        return written

    def abort(self) -> None:
        """Remove the half-written version; readers keep the previous one."""
        if self.owner and not self.done:
            self.done = True
            _unlink_version(self.store.ks, self.table.view, self.table.version)

    def close(self) -> None:
        """Stop writing from this process (a resumed writer, whose store it closes too); the
        version stays for the run that began it."""
        if not self.owner:
            self.store.close()


def _unlink_version(ks: Keyspace, view: str, version: int) -> None:
    import redis as redis_lib

    try:
        ks.client.unlink(ks.key(view, f"v{version}"), ks.key(view, f"meta:{version}"))
        ks.client.srem(ks.key(view, "versions"), version)
    except redis_lib.RedisError:
        pass  # listed in P:versions; the next run removes it


def _bulk_hset(
    store: RedisStore,
    target: str,
    rows: pa.Table,
    table: OnlineTable,
    lease: Lease,
    progress: Callable[[int], None] | None,
) -> None:
    """Pipeline pre-encoded ``HSET target k v k v ...`` commands, built by DuckDB in bulk.

    Commands go out without waiting for their replies (at most ``_IN_FLIGHT`` pending),
    so Redis stores one group while DuckDB encodes the next.
    """
    if rows.num_rows == 0:
        return
    head = target.encode()
    pool = store.client.connection_pool
    conn = pool.get_connection()
    pending: list[int] = []
    renewed = time.monotonic()

    def settle(keep: int) -> None:
        while len(pending) > keep:
            conn.read_response()
            n = pending.pop(0)
            if progress is not None:
                progress(n)

    try:
        for _, n, body in packed_groups(rows, table, store.chunk_rows):
            command = hset_header(head, n)
            conn.send_packed_command([command, body], check_health=False)
            pending.append(n)
            settle(_IN_FLIGHT)
            if time.monotonic() - renewed > _RENEW_EVERY:
                store.ks.renew(lease)
                renewed = time.monotonic()
        settle(0)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
