"""Pushes into a Redis Cluster store, atomic for readers across partitions.

1. **Commit**: one script on the view's pointer slot checks the pointer, takes the push's
   sequence number ``s`` and journals the rows, each tagged with ``s`` as its last value (reads
   ignore values past the row's columns). A switch replays every journaled push it does not
   cover before it flips (and refuses to flip while pushes are journaled after its replay), so
   from here the push is in every version readers will be switched to.
2. **Apply**: the tagged rows are appended to their entities in their partitions, one script per
   partition, in one round trip per node. A push into one partition is visible at once (one
   script). A push into several is *staged*: ``s`` joins each partition's ``pend`` set, whose
   rows readers skip; once every partition holds its rows, ``s`` leaves the ``pend`` sets. A batch
   read that sees ``s`` visible in one partition and pending in another reads again; a pusher
   that stopped half way is finished by readers (``s`` is journaled, so it is shown everywhere).

A partition that no longer serves the pointer is skipped: the switch that moved it replayed the
push. Replicas copy the rows a run wrote and take every pushed row from the journal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import OnlineStoreError
from .layout import PushReceipt, encode_key
from .redis_nodes import Call
from .redis_partitions import APPLY_PART, UNPEND_PART
from .redis_push import row_texts
from .rows import push_rows_of

if TYPE_CHECKING:
    import pyarrow as pa

    from .redis_cluster import RedisClusterStore

__all__ = ["push_rows", "COMMIT"]

#: KEYS: current, pseq, journal. ARGV: pointer, journal prefix, ':min:max:layout', then field and
#: rows (each row's JSON array without its closing bracket, joined by the record separator) pairs
#: → {1, seq} or {0, the pointer now}.
COMMIT = r"""
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then return {0, cur or ''} end
local seq = redis.call('INCR', KEYS[2])
local tag = ',' .. seq .. ']'
local items = {}
for i = 4, #ARGV, 2 do
  items[#items + 1] = ARGV[i]
  items[#items + 1] = (string.gsub(ARGV[i + 1], '\30', tag .. ',')) .. tag
end
local j = ARGV[2] .. seq
for i = 1, #items, 1000 do redis.call('RPUSH', j, unpack(items, i, math.min(i + 999, #items))) end
redis.call('ZADD', KEYS[3], seq, seq .. ARGV[3])
return {1, seq}
"""


def _untagged(texts: list[bytes]) -> bytes:
    return b"\x1e".join(t[:-1] for t in texts)


def _tagged(texts: list[bytes], seq: int) -> bytes:
    tag = b",%d]" % seq
    return b",".join(t[:-1] + tag for t in texts)


def push_rows(store: RedisClusterStore, view: str, rows: pa.Table, definition: str | None) -> PushReceipt:
    """Journal ``rows`` and append them to their entities in the version served now (see above)."""
    import redis as redis_lib

    ks = store.ks
    route = store.route(view, fresh=True)
    keys = (ks.key(view, "current"), ks.key(view, "pseq"), ks.key(view, "journal"))
    for _ in range(50):
        table = route.table
        table.check_definition(definition, store.url)
        pairs = push_rows_of(rows, table)
        if not pairs:
            return PushReceipt(view, table.version, None, 0)
        texts = row_texts([row for _, row in pairs], table)
        by_field: dict[str, list[bytes]] = {}
        for (key, _), text in zip(pairs, texts, strict=True):
            by_field.setdefault(encode_key(key, table.key_types), []).append(text)
        times = [row[0] for _, row in pairs]
        args: list[Any] = [route.pointer, ks.key(view, "j:"), f":{min(times)}:{max(times)}:{table.layout}"]
        for field, found in by_field.items():
            args += [field, _untagged(found)]
        try:
            ok, value = ks.script(COMMIT, keys, args)
        except redis_lib.RedisError as exc:
            raise ks.failed(f"pushing to '{view}' (nothing was written)", exc) from exc
        if ok:
            seq = int(value)
            _apply(store, route, {f: _tagged(t, seq) for f, t in by_field.items()}, seq)
            return PushReceipt(view, table.version, seq, len(pairs))
        if not value:
            raise store._missing(view)  # noqa: SLF001 - the store's own error
        route = store.route(view, fresh=True)  # switched: encode for the new version
    raise OnlineStoreError(f"online store {store.url}: '{view}' kept switching during a push; retry")


def _apply(store: RedisClusterStore, route: Any, rows: dict[str, bytes], seq: int) -> None:
    parts = route.parts
    by_part: dict[int, list[Any]] = {}
    for field, text in rows.items():
        by_part.setdefault(parts.of(field), []).extend((field, text))
    staged = "1" if len(by_part) > 1 else "0"
    calls: list[Call] = [
        (store.calls.slot(parts.live(p)), APPLY_PART, (parts.live(p), parts.pend(p), parts.pushes(p)),
         (route.pointer, route.data_prefix(p), seq, staged, *args))
        for p, args in by_part.items()
    ]  # fmt: skip
    what = f"applying push {seq} to '{parts.view}' (it is journaled: the next run serves it)"
    store.calls.run(calls, what)
    if staged == "1":
        store.calls.run(
            [(store.calls.slot(parts.pend(p)), UNPEND_PART, (parts.pend(p),), (seq,)) for p in by_part], what
        )
