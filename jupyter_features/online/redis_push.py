"""Pushed rows in the Redis online store: appended to the entity's field, journaled, replayed.

With ``P = <prefix>{<view>}`` (see ``redis.py``):

- A field of ``P:v<N>`` holds the entity's rows as JSON arrays joined by ',' (readers parse
  ``'[' + value + ']'``): the materialized row, then each pushed row with its push's
  sequence number and its position in the push appended. A push concatenates strings in
  Lua (never decoding JSON there: cjson loses int64 precision), copying the base version's
  value first when the pointer is layered (``N:B``) and N lacks the field.
- ``P:pseq``: the push sequence counter (never reset). ``P:j:<seq>``: the push's rows per
  field; ``P:journal``: sorted set of ``seq:min_ts:max_ts:layout``, scored by seq.
- ``P:events``: channel on which pushes (``push:<seq>``) and switches (``switch:<pointer>``)
  are published, for replicas.

A push is one script call (atomic). A run's switch is one script too: it checks the lock,
replays every journal entry the run's offline read did not cover into the new version,
trims the covered ones and flips the pointer, so no push is lost across the switch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from .layout import OnlineTable, is_covered

if TYPE_CHECKING:
    from .redis import Keyspace

__all__ = [
    "APPEND", "PUSH", "SWITCH", "SEQ_MARK", "encode_push", "covered_entries", "read_snapshot", "journal_since",
]  # fmt: skip

#: Stands for the push's sequence number in rows sent to the push script (never in JSON text).
SEQ_MARK = "\x01"

PUSH = """
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then return {0, cur or ''} end
local v, b = string.match(cur, '^(%d+):?(%d*)$')
local seq = redis.call('INCR', KEYS[2])
local h = ARGV[2] .. v
local j = ARGV[3] .. seq
for i = 6, #ARGV, 2 do
  local f = ARGV[i]
  local rows = string.gsub(ARGV[i + 1], '\\1', seq)
  local old = redis.call('HGET', h, f)
  if not old and b ~= '' then old = redis.call('HGET', ARGV[2] .. b, f) end
  if old then redis.call('HSET', h, f, old .. ',' .. rows) else redis.call('HSET', h, f, rows) end
  redis.call('HSET', j, f, rows)
end
redis.call('ZADD', KEYS[3], seq, seq .. ARGV[4])
redis.call('PUBLISH', ARGV[5], 'push:' .. seq)
return {1, seq}
"""

#: Rows appended to a version being written (KEYS[1]; ARGV[1]: the base hash of a layered one).
APPEND = """
for i = 2, #ARGV, 2 do
  local f = ARGV[i]
  local rows = string.gsub(ARGV[i + 1], '\1', '0')
  local old = redis.call('HGET', KEYS[1], f)
  if not old and ARGV[1] ~= '' then old = redis.call('HGET', ARGV[1], f) end
  if old then redis.call('HSET', KEYS[1], f, old .. ',' .. rows) else redis.call('HSET', KEYS[1], f, rows) end
end
return 1
"""

SWITCH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local covered = {}
for i = 9, #ARGV do covered[ARGV[i]] = true end
local h = ARGV[3] .. ARGV[5]
for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local seq, layout = string.match(m, '^(%d+):%-?%d+:%-?%d+:(.*)$')
  if covered[seq] or layout ~= ARGV[7] then
    redis.call('DEL', ARGV[4] .. seq)
    redis.call('ZREM', KEYS[3], m)
  else
    local kv = redis.call('HGETALL', ARGV[4] .. seq)
    for i = 1, #kv, 2 do
      local old = redis.call('HGET', h, kv[i])
      if not old and ARGV[6] ~= '' then old = redis.call('HGET', ARGV[3] .. ARGV[6], kv[i]) end
      if old then redis.call('HSET', h, kv[i], old .. ',' .. kv[i + 1]) else redis.call('HSET', h, kv[i], kv[i + 1]) end
    end
  end
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[8], 'switch:' .. ARGV[2])
return 1
"""


def encode_push(pairs: Sequence[tuple[str, Sequence[Any]]], table: OnlineTable) -> tuple[list[str], int, int]:
    """(field, rows text) arguments of the push script for (encoded key, stored row) pairs, each
    row followed by the push's sequence number (``SEQ_MARK``) and its position; the time range."""
    import json

    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    by_field: dict[str, list[str]] = {}
    low = high = pairs[0][1][0]
    for i, (field, row) in enumerate(pairs):
        ts = row[0]
        low, high = min(low, ts), max(high, ts)
        text = dumps(list(row))
        by_field.setdefault(field, []).append(f"{text[:-1]},{SEQ_MARK},{i}]")
    args: list[str] = []
    for field, rows in by_field.items():
        args += [field, ",".join(rows)]
    return args, low, high


def covered_entries(
    ks: Keyspace, view: str, table: OnlineTable, covered: Collection[int], since_us: int | None
) -> list[str]:
    """The journal entries (as sequence numbers' text) a run's switch may trim: in ``covered`` and
    with every row in the run's range."""
    out: list[str] = []
    if not covered:
        return out
    for raw in ks.client.zrange(ks.key(view, "journal"), 0, -1):
        seq, low, high, _ = (raw.decode() if isinstance(raw, bytes) else raw).split(":", 3)
        if is_covered(int(seq), int(low), int(high), covered, since_us, table.end_us):
            out.append(seq)
    return out


def _rows_of(raw: bytes) -> list[Any]:
    import json

    return list(json.loads(b"[" + raw + b"]"))


def read_snapshot(ks: Keyspace, view: str, table: OnlineTable) -> dict[str, list[Any]]:
    """Every field of the version ``table`` (and of its base, for a layered one) as rows."""
    raw: dict[bytes, bytes] = {}
    for field, value in ks.client.hscan_iter(ks.key(view, f"v{table.version}"), count=2000):
        raw[field] = value
    if table.base_version is not None:
        for field, value in ks.client.hscan_iter(ks.key(view, f"v{table.base_version}"), count=2000):
            raw.setdefault(field, value)
    return {field.decode(): _rows_of(value) for field, value in raw.items()}


def journal_since(
    ks: Keyspace, view: str, table: OnlineTable, seq: int
) -> list[tuple[int, dict[str, list[Any]]]]:
    """Journal entries of ``view`` after ``seq`` in ``table``'s layout: (seq, rows by field)."""
    out = []
    for member in ks.client.zrangebyscore(ks.key(view, "journal"), seq + 1, "+inf"):
        entry, _, _, layout = member.decode().split(":", 3)
        if layout != table.layout:
            continue
        fields = ks.client.hgetall(ks.key(view, f"j:{entry}"))
        out.append((int(entry), {f.decode(): _rows_of(v) for f, v in fields.items()}))
    return out
