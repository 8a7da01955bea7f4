"""Pushed rows in the Redis online store: appended to the entity's field, journaled, replayed.

With ``P = <prefix>{<view>}`` (see ``redis.py``):

- A field of ``P:v<N>`` holds the entity's rows as JSON arrays joined by ',' (readers parse
  ``'[' + value + ']'``): the materialized row, then each pushed row. A push concatenates
  strings in Lua (never decoding JSON there: cjson loses int64 precision), copying the base
  version's value first when the pointer is layered (``N:B``) and N lacks the field.
- ``P:pseq``: the push sequence counter (never reset). ``P:j:<seq>``: the push, a list of
  field, rows, field, rows...; ``P:journal``: sorted set of ``seq:min_ts:max_ts:layout``,
  scored by seq.
- ``P:events``: channel on which pushes (``push:<seq>``) and switches (``switch:<pointer>``)
  are published, for replicas.

A push is one script call (atomic). A run's switch is one script too: it checks the lock,
replays every journal entry the run's offline read did not cover into the new version,
trims the covered ones (and a windowed view's pushes too old for any window) and flips the
pointer, so no push is lost across the switch. A replica's snapshot copies the served hashes
in one script (``COPY``, atomic) and reads the copies, so it sees each push exactly once:
before the snapshot, or in the journal after.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import OnlineStoreError
from .layout import OnlineTable, encode_key, is_covered
from .rows import PushColumns, dumps, loads

if TYPE_CHECKING:
    from .redis import Keyspace

__all__ = [
    "APPEND", "APPEND_FN", "PUSH", "SWITCH", "SNAPSHOT", "encode_push", "encode_push_columns", "packed_script", "row_texts", "covered_entries", "read_snapshot", "journal_since",
]  # fmt: skip

#: Lua: append rows to fields of hash ``h`` from the flat list ``kv`` (field, rows, field, rows...,
#: from position ``from``; fields distinct): the old value and ',' first, or the base version's
#: value (``base``, a hash name or '') when ``h`` lacks the field. Batched: one HMGET and one
#: HSET per 1,000 fields.
APPEND_FN = """
local function append(h, base, kv, from)
  for s = from, #kv, 2000 do
    local e = math.min(s + 1999, #kv)
    local fields = {}
    for i = s, e, 2 do fields[#fields + 1] = kv[i] end
    local olds = redis.call('HMGET', h, unpack(fields))
    if base ~= '' then
      local gaps, missing = {}, {}
      for i = 1, #fields do
        if not olds[i] then gaps[#gaps + 1] = i; missing[#missing + 1] = fields[i] end
      end
      if #missing > 0 then
        local more = redis.call('HMGET', base, unpack(missing))
        for j = 1, #gaps do olds[gaps[j]] = more[j] end
      end
    end
    local out = {}
    for i = 1, #fields do
      local rows = kv[s + 2 * i - 1]
      out[#out + 1] = fields[i]
      if olds[i] then out[#out + 1] = olds[i] .. ',' .. rows else out[#out + 1] = rows end
    end
    redis.call('HSET', h, unpack(out))
  end
end
"""

PUSH = (
    APPEND_FN
    + """
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then return {0, cur or ''} end
local v, b = string.match(cur, '^(%d+):?(%d*)$')
local seq = redis.call('INCR', KEYS[2])
append(ARGV[2] .. v, b ~= '' and (ARGV[2] .. b) or '', ARGV, 6)
local j = ARGV[3] .. seq
for i = 6, #ARGV, 1000 do redis.call('RPUSH', j, unpack(ARGV, i, math.min(i + 999, #ARGV))) end
redis.call('ZADD', KEYS[3], seq, seq .. ARGV[4])
redis.call('PUBLISH', ARGV[5], 'push:' .. seq)
return {1, seq}
"""
)

#: Rows appended to a version being written (KEYS[1]; ARGV[1]: the base hash of a layered one).
APPEND = (
    APPEND_FN
    + """
append(KEYS[1], ARGV[1], ARGV, 2)
return 1
"""
)

SWITCH = (
    APPEND_FN
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local covered = {}
for i = 10, #ARGV do covered[ARGV[i]] = true end
local h = ARGV[3] .. ARGV[5]
local base = ARGV[6] ~= '' and (ARGV[3] .. ARGV[6]) or ''
local after = tonumber(ARGV[9])
for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local seq, high, layout = string.match(m, '^(%d+):%-?%d+:(%-?%d+):(.*)$')
  if covered[seq] or layout ~= ARGV[7] or (after and tonumber(high) <= after) then
    -- covered, of another layout, or a windowed view's push whose events are all in no window
    -- of a read at or after the end: trimmed
    redis.call('DEL', ARGV[4] .. seq)
    redis.call('ZREM', KEYS[3], m)
  else
    append(h, base, redis.call('LRANGE', ARGV[4] .. seq, 0, -1), 1)
  end
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[8], 'switch:' .. ARGV[2])
return 1
"""
)


def encode_push(pairs: Sequence[tuple[str, Sequence[Any]]], table: OnlineTable) -> tuple[list[Any], int, int]:
    """(field, rows text) arguments of the push script for (encoded key, stored row) pairs, and
    the rows' event-time range."""
    texts = row_texts([row for _, row in pairs], table)
    by_field: dict[str, list[bytes]] = {}
    for (field, _), text in zip(pairs, texts, strict=True):
        by_field.setdefault(field, []).append(text)
    args: list[Any] = []
    for field, rows in by_field.items():
        args += [field, b",".join(rows)]
    times = [row[0] for _, row in pairs]
    return args, min(times), max(times)


def encode_push_columns(push: PushColumns, table: OnlineTable) -> tuple[list[Any], int, int]:
    """``encode_push`` of a push's rows as columns: the same arguments, built with fewer
    Python objects (one JSON text for all rows, fields encoded a column at a time)."""
    nkeys = push.nkeys
    if nkeys == 1 and table.key_types[0] == "int64":
        fields: list[str] = list(map(str, push.columns[0]))
    elif nkeys == 1:
        fields = [v if type(v) is str else encode_key((v,), table.key_types) for v in push.columns[0]]
    else:
        fields = [encode_key(k, table.key_types) for k in push.keys()]
    texts = row_texts(list(zip(*push.columns[nkeys:], strict=True)), table)
    by_field: dict[str, bytes] = {}
    for field, text in zip(fields, texts, strict=True):
        found = by_field.get(field)
        by_field[field] = text if found is None else found + b"," + text
    args: list[Any] = []
    for item in by_field.items():
        args += item
    times = push.times
    return args, min(times), max(times)


def packed_script(ks: Keyspace, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """``ks.script`` for calls with many arguments: the command is encoded in one buffer and
    sent in one write (redis-py's packer sends thousands of small pieces)."""
    import redis as redis_lib

    sha = ks.shas.get(source)
    if sha is None:
        sha = ks.shas[source] = ks.client.script_load(source)
    parts = [b"EVALSHA", sha.encode() if isinstance(sha, str) else sha, str(len(keys)).encode()]
    parts += [k.encode() for k in keys]
    parts += [a if type(a) is bytes else (a if isinstance(a, str) else str(a)).encode() for a in args]
    head = b"*%d\r\n" % len(parts)
    payload = head + b"".join([b"$%d\r\n%s\r\n" % (len(p), p) for p in parts])
    pool = ks.client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([payload], check_health=False)
        reply = conn.read_response()
    except redis_lib.exceptions.NoScriptError:
        pool.release(conn)
        ks.shas.pop(source, None)
        return ks.script(source, keys, args)  # loads it again, the usual way
    except BaseException:
        conn.disconnect()
        pool.release(conn)
        raise
    pool.release(conn)
    return reply


def row_texts(rows: Sequence[Sequence[Any]], table: OnlineTable) -> list[bytes]:
    """Each stored row as a compact JSON array (orjson: exact int64, shortest float text)."""
    if not rows:
        return []
    flat = all(f.type in ("int64", "float64", "bool", "timestamp") for f in table.stored)
    if not flat:  # text or lists could hold "],[": one call per row
        return [dumps([r])[1:-1] for r in rows]
    inner = dumps(rows if type(rows) is list else list(rows))[2:-2].split(b"],[")
    return [b"[" + text + b"]" for text in inner]


def covered_entries(
    ks: Keyspace, view: str, table: OnlineTable, covered: Collection[int], since_us: int | None
) -> list[str]:
    """The journal entries (as sequence numbers' text) a run's switch may trim: in ``covered`` and
    with every row in the run's range, or (a windowed view) with every event in no window of a
    read at or after the run's end."""
    out: list[str] = []
    after = table.events_after_us
    if not covered and after is None:
        return out
    for raw in ks.client.zrange(ks.key(view, "journal"), 0, -1):
        seq, low, high, _ = (raw.decode() if isinstance(raw, bytes) else raw).split(":", 3)
        if (after is not None and int(high) <= after) or is_covered(
            int(seq), int(low), int(high), covered, since_us, table.end_us, table.window is not None
        ):
            out.append(seq)
    return out


#: Copies of the served hashes (KEYS[2], KEYS[3]: where), the pointer and the push counter, at once.
SNAPSHOT = """
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
local v, b = string.match(cur, '^(%d+):?(%d*)$')
redis.call('COPY', ARGV[1] .. v, KEYS[2], 'REPLACE')
if b ~= '' then redis.call('COPY', ARGV[1] .. b, KEYS[3], 'REPLACE') end
return {cur, redis.call('GET', KEYS[4]) or '0'}
"""


def read_snapshot(ks: Keyspace, view: str) -> tuple[bytes, int, dict[str, list[Any]]] | None:
    """(pointer, push counter, rows by field) of the version served now, read at one instant;
    None when ``view`` is not served."""
    import uuid

    tag = uuid.uuid4().hex[:12]
    copies = (ks.key(view, f"snap:{tag}"), ks.key(view, f"snap:{tag}:base"))
    try:
        reply = ks.script(
            SNAPSHOT, (ks.key(view, "current"), *copies, ks.key(view, "pseq")), (ks.key(view, "v"),)
        )
        if not reply:
            return None
        raw: dict[bytes, bytes] = {}
        for copy in copies:
            for field, value in ks.client.hscan_iter(copy, count=5000):
                raw.setdefault(field, value)
    finally:
        ks.client.unlink(*copies)
    return reply[0], int(reply[1]), {field.decode(): _rows_of(value) for field, value in raw.items()}


def _rows_of(raw: bytes) -> list[Any]:
    return list(loads(b"[" + raw + b"]"))


def journal_since(
    ks: Keyspace, view: str, table: OnlineTable, seq: int
) -> list[tuple[int, dict[str, list[Any]]]]:
    """Journal entries of ``view`` after ``seq`` in ``table``'s layout: (seq, rows by field)."""
    out = []
    for member in ks.client.zrangebyscore(ks.key(view, "journal"), seq + 1, "+inf"):
        entry, _, _, layout = member.decode().split(":", 3)
        if layout != table.layout:
            continue
        key = ks.key(view, f"j:{entry}")
        items = ks.client.lrange(key, 0, -1)
        fields, values = items[::2], items[1::2]
        try:
            parsed = loads(b"[[" + b"],[".join(values) + b"]]") if values else []  # one parse for all
        except ValueError:
            parsed = None
        if type(parsed) is not list or len(parsed) != len(fields):
            raise OnlineStoreError(
                f"online store {ks.url}: push journal entry {key} of '{view}' does not hold one row list "
                "per entity (damaged); delete it and push those rows again"
            )
        rows: dict[str, list[Any]] = {}
        for field, found in zip(fields, parsed, strict=True):
            rows.setdefault(field.decode(), []).extend(found)
        out.append((int(entry), rows))
    return out
