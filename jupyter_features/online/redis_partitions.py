"""How a version of a view is split over a Redis Cluster: partitions by entity key, their keys and
the Lua that runs inside one partition.

An entity's partition is ``CRC16(encoded key) mod N`` (CRC-16/XMODEM, the checksum Redis Cluster
uses for slots: ``binascii.crc_hqx`` for one key, a vectorized table lookup for a batch). With
``T = <prefix>{<view>:p<k>~<salt>}`` partition k of every version lives in one hash slot of its
own, the salt chosen so that the n partitions' slots are evenly spaced (``spread_tag``):

- ``T:v<N>``: hash of version N's entities in the partition (the single-node layout: field =
  encoded key, value = the entity's rows as JSON arrays joined by ',').
- ``T:live``: the pointers (``N`` or ``N:B``) readers may read here. A read names the pointer
  it took from the view's pointer key and is refused (a mismatch) when this set lacks it, so a
  batch over many partitions never mixes versions.
- ``T:pend``: push sequence numbers whose rows are staged here but not visible yet (a push over
  several partitions stages everywhere, then makes its rows visible partition by partition;
  readers of a batch that sees a push visible in one partition and pending in another retry).
- ``T:pushes``: hash of version number → how many pushes were applied here. A batch read over
  several partitions of a version that has pushes reads these counters once more after its
  reads: a push can only have become visible in one partition read while another partition read
  went before the push was staged there if that partition's counter moved in between.
"""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from .redis_bulk import LAYERED_FN
from .redis_push import APPEND_FN

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = [
    "Partitions",
    "spread_tag",
    "partition_of",
    "partitions_of",
    "default_partitions",
    "READ_PART",
    "APPLY_PART",
    "UNPEND_PART",
    "PUSHES_PART",
    "SET_LIVE",
    "DROP_PART",
    "COUNT_PART",
    "SNAP_PART",
    "APPEND_PART",
]

ROWS_PER_PARTITION = 50_000
PARTITIONS_PER_PRIMARY = 4
MAX_PARTITIONS = 1024


def partition_of(key: str | bytes, n: int) -> int:
    """The partition of one encoded entity key (text, or its UTF-8 bytes) among ``n``."""
    return binascii.crc_hqx(key if type(key) is bytes else key.encode(), 0) % n  # type: ignore[union-attr]


def _crc_table() -> np.ndarray:
    import numpy as np

    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table[i] = crc & 0xFFFF
    return table


_TABLE: list[np.ndarray] = []


def partitions_of(keys: pa.Array, n: int) -> np.ndarray:
    """``partition_of`` of every encoded key of a string array, vectorized over byte positions."""
    import numpy as np
    import pyarrow as pa

    if not _TABLE:
        _TABLE.append(_crc_table())
    table = _TABLE[0]
    keys = keys.cast(pa.large_string())
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int64)[keys.offset : keys.offset + len(keys) + 1]
    data = np.frombuffer(keys.buffers()[2], dtype=np.uint8) if keys.buffers()[2] else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    crc = np.zeros(len(keys), dtype=np.uint32)
    for j in range(int(lengths.max()) if len(lengths) else 0):
        rows = np.flatnonzero(lengths > j)
        byte = data[starts[rows] + j].astype(np.uint32)
        c = crc[rows]
        crc[rows] = ((c << 8) & 0xFFFF) ^ table[((c >> 8) ^ byte) & 0xFF]
    return (crc % n).astype(np.int64)


def default_partitions(rows: int | None, primaries: int) -> int:
    """About one partition per 50k entities, at least four per primary, a multiple of the primaries
    (each gets as many), at most 1,024."""
    primaries = max(1, primaries)
    wanted = max(primaries * PARTITIONS_PER_PRIMARY, math.ceil((rows or 0) / ROWS_PER_PARTITION))
    wanted = math.ceil(wanted / primaries) * primaries
    return min(MAX_PARTITIONS, wanted)


SLOTS = 16384


@lru_cache(maxsize=65536)
def spread_tag(view: str, n: int, k: int) -> str:
    """The hash tag of partition ``k`` of ``n`` of ``view``: ``<view>:p<k>~<salt>``, the first salt
    whose slot falls in the middle half of the k-th n-th of the slot space (the whole of it past
    128 partitions, where a partition on either side of a node's boundary matters little and the
    search would take longer). Clusters give each primary an even share of the slots, so the
    partitions spread evenly over the primaries (the slots of n random names would leave one node
    with half as much again as the mean)."""
    width = SLOTS / n
    margin = width / 4 if n <= 128 else 0
    low = int(k * width + margin)
    high = max(int(k * width + width - margin), low + 1)
    salt = 0
    while not low <= binascii.crc_hqx(f"{view}:p{k}~{salt}".encode(), 0) % SLOTS < high:
        salt += 1
    return f"{view}:p{k}~{salt}"


@dataclass(frozen=True)
class Partitions:
    """The keys of a view's partitions (``n`` of them) under ``prefix``."""

    prefix: str
    view: str
    n: int

    def tag(self, p: int) -> str:
        return f"{self.prefix}{{{spread_tag(self.view, self.n, p)}}}"

    def data(self, p: int, version: int | str) -> str:
        return f"{self.tag(p)}:v{version}"

    def live(self, p: int) -> str:
        return f"{self.tag(p)}:live"

    def pend(self, p: int) -> str:
        return f"{self.tag(p)}:pend"

    def pushes(self, p: int) -> str:
        return f"{self.tag(p)}:pushes"

    def of(self, key: str | bytes) -> int:
        return partition_of(key, self.n)


_POINTER = "local v, b = string.match(ARGV[1], '^(%d+):?(%d*)$')\n"

#: KEYS: live, pend, pushes. ARGV: pointer, data prefix (T:v), fields... → false when the pointer
#: is not live here, else one string (one bulk reply is far cheaper to parse than nested arrays):
#: pushes applied to the version, the pending push seqs joined by ',', then each field's value
#: ('' when absent), all joined by the record separator (stored JSON never holds that byte raw).
READ_PART = (
    LAYERED_FN
    + """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return false end
"""
    + _POINTER
    + """
local vals = layered(ARGV[2] .. v, b ~= '' and (ARGV[2] .. b) or '', {unpack(ARGV, 3)})
local out = {redis.call('HGET', KEYS[3], v) or '0', table.concat(redis.call('SMEMBERS', KEYS[2]), ',')}
for i = 1, #vals do out[i + 2] = vals[i] or '' end
return table.concat(out, '\\30')
"""
)

#: KEYS: live, pend, pushes. ARGV: pointer, data prefix, push seq, staged ('1': pending until
#: UNPEND_PART), field, rows, ... → 0 when the pointer is not live here (the switch replayed the push).
APPLY_PART = (
    APPEND_FN
    + """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
"""
    + _POINTER
    + """
if ARGV[4] == '1' then redis.call('SADD', KEYS[2], ARGV[3]) end
redis.call('HINCRBY', KEYS[3], v, 1)
append(ARGV[2] .. v, b ~= '' and (ARGV[2] .. b) or '', ARGV, 5)
return 1
"""
)

#: KEYS: pushes. ARGV: version → pushes applied to it here.
PUSHES_PART = """
return redis.call('HGET', KEYS[1], ARGV[1]) or '0'
"""

#: KEYS: pend. ARGV: push seqs made visible here.
UNPEND_PART = """
redis.call('SREM', KEYS[1], unpack(ARGV))
return 1
"""

#: Rows appended to a version being written. KEYS: its hash. ARGV: base hash or '', field, rows...
APPEND_PART = (
    APPEND_FN
    + """
append(KEYS[1], ARGV[1], ARGV, 2)
return 1
"""
)

#: KEYS: live. ARGV: 'add' or 'only', pointer, hashes to unlink... — 'add' makes the pointer
#: readable here too (before the switch); 'only' makes it the one readable (after).
SET_LIVE = """
if ARGV[1] == 'only' then redis.call('DEL', KEYS[1]) end
redis.call('SADD', KEYS[1], ARGV[2])
for i = 3, #ARGV do redis.call('UNLINK', ARGV[i]) end
return 1
"""

#: KEYS: live, pushes. ARGV: version number, its hash: the version is no longer readable here, and
#: freed.
DROP_PART = """
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if string.match(m, '^(%d+)') == ARGV[1] then redis.call('SREM', KEYS[1], m) end
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('UNLINK', ARGV[2])
return 1
"""

#: KEYS: the version's hash, its base's (or the same key). Entities served: its own plus the
#: base's that it does not replace.
COUNT_PART = """
local n = redis.call('HLEN', KEYS[1])
if KEYS[2] == KEYS[1] then return n end
for _, k in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('HEXISTS', KEYS[1], k) == 0 then n = n + 1 end
end
return n
"""

#: KEYS: live, pend. ARGV: pointer, data prefix → false when not live, else {pending seqs, the
#: version's field/values, its base's}.
SNAP_PART = (
    """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return false end
"""
    + _POINTER
    + """
local top = redis.call('HGETALL', ARGV[2] .. v)
local below = {}
if b ~= '' then below = redis.call('HGETALL', ARGV[2] .. b) end
return {redis.call('SMEMBERS', KEYS[2]), top, below}
"""
)
