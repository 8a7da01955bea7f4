"""Bulk transfers with Redis, shared by the single-node and the cluster stores: ``HSET`` commands
pre-encoded by DuckDB, a windowed view's events grouped by entity, ``HSCAN`` pages decoded by
DuckDB, and the layered read in Lua."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..sqltext import quote
from .layout import KEY_SEP, OnlineTable
from .scan import ScanPages

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = ["LAYERED_FN", "SCAN_PAGE", "key_sql", "packed_groups", "event_groups", "scan_pages", "hset_header"]

SLICE_ROWS = 100_000  # rows DuckDB encodes at a time

#: Lua: the values of ``fields`` in version hash ``h``, what it lacks looked up in ``base`` (a hash
#: name, or '' when the version is complete): an incremental version is kept as changes over a
#: full one and read through it in the same call.
LAYERED_FN = """
local function layered(h, base, fields)
  local vals = redis.call('HMGET', h, unpack(fields))
  if base ~= '' then
    local gaps, keys = {}, {}
    for i = 1, #vals do
      if not vals[i] then gaps[#gaps + 1] = i; keys[#keys + 1] = fields[i] end
    end
    if #keys > 0 then
      local more = redis.call('HMGET', base, unpack(keys))
      for j = 1, #gaps do vals[gaps[j]] = more[j] end
    end
  end
  return vals
end
"""

#: One HSCAN page as one string: fields and values joined by the record separator (packed values
#: are JSON, which never holds that byte raw), or, when a field holds it, a JSON array of strings.
SCAN_PAGE = """
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local flat = page[2]
if #flat == 0 then return {page[1], '', ''} end
for i = 1, #flat do
  if string.find(flat[i], '\\30', 1, true) then return {page[1], 'json', cjson.encode(flat)} end
end
return {page[1], 'split', table.concat(flat, '\\30')}
"""


def scan_pages(
    script: Callable[[str, tuple[str, ...], tuple[Any, ...]], Any], key: str, count: int
) -> ScanPages:
    """Every (field, value) of the hash ``key``, one ``HSCAN`` page per ``script`` call, each page one
    string (``SCAN_PAGE``) that DuckDB, not Python, takes apart. A field may repeat across pages
    (HSCAN's guarantee)."""
    pages = ScanPages([], [])
    cursor: Any = 0
    while True:
        cursor, kind, page = script(SCAN_PAGE, (key,), (cursor, count))
        if page:
            (pages.split if kind in (b"split", "split") else pages.json).append(page)
        if cursor in (b"0", "0", 0):
            return pages


def hset_header(key: bytes, fields: int) -> bytes:
    """The RESP head of ``HSET key`` followed by ``fields`` field/value pairs."""
    return b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n" % (2 + 2 * fields, len(key), key)


def key_sql(table: OnlineTable) -> str:
    """The SQL twin of ``layout.encode_key`` over canonical key columns."""
    keys = [quote(k) for k in table.entity]
    if len(keys) == 1:
        return f"CAST({keys[0]} AS VARCHAR)"
    parts = []
    for k, t in zip(keys, table.key_types, strict=True):
        if t == "int64":
            parts.append(f"CAST({k} AS VARCHAR)")
        else:
            parts.append(rf"replace(replace({k}, '\', '\\'), chr(31), '\u001f')")
    return f" || chr({ord(KEY_SEP)}) || ".join(parts)


def packed_groups(
    rows: pa.Table,
    table: OnlineTable,
    group: int,
    split: Callable[[pa.Array], np.ndarray] | None = None,
) -> Iterator[tuple[int, int, memoryview]]:
    """(partition, entity count, RESP-encoded field/value pairs) for groups of at most ``group`` rows.

    DuckDB encodes one fragment per row; a group is a zero-copy slice of the Arrow string buffer
    holding consecutive fragments. ``split`` gives each encoded key's partition (rows are then
    grouped by it); without it every row is in partition 0.
    """
    import duckdb
    import numpy as np
    import pyarrow as pa

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        values = ", ".join(quote(c) for c in table.row_columns)
        crlf = "\r\n"
        frag = f"'$' || strlen(k) || '{crlf}' || k || '{crlf}$' || strlen(v) || '{crlf}' || v || '{crlf}'"
        query = (
            f"SELECT {frag} AS f{', k' if split else ''} FROM (SELECT {key_sql(table)} AS k, "
            f"CAST(json_array({values}) AS VARCHAR) AS v FROM __jf_rows)"
        )
        step = max(group, (SLICE_ROWS // group) * group)
        for start in range(0, rows.num_rows, step):
            con.register("__jf_rows", rows.slice(start, step))
            encoded = con.sql(query).to_arrow_table()
            con.unregister("__jf_rows")
            fragments = encoded.column(0)
            runs: list[tuple[int, int, int]] = []  # (partition, first row, end row) of the slice
            if split is None:
                runs.append((0, 0, len(fragments)))
            else:
                parts = split(encoded.column(1).combine_chunks())
                order = np.argsort(parts, kind="stable")
                fragments = fragments.take(pa.array(order))
                parts = parts[order]
                cuts = [0, *(np.flatnonzero(np.diff(parts)) + 1).tolist(), len(parts)]
                runs += [(int(parts[a]), a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
            chunk = fragments.combine_chunks()
            if pa.types.is_string(chunk.type):
                chunk = chunk.cast(pa.large_string())  # one offset width to read
            offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[
                chunk.offset : chunk.offset + len(chunk) + 1
            ]
            data = memoryview(chunk.buffers()[2])  # type: ignore[arg-type]
            for part, first, end in runs:
                for i in range(first, end, group):
                    j = min(i + group, end)
                    yield part, j - i, data[int(offsets[i]) : int(offsets[j])]
    finally:
        con.close()


def event_groups(rows: pa.Table, table: OnlineTable, group: int) -> Iterator[tuple[int, list[Any]]]:
    """(events, [field, rows text, field, rows text, ...]) for groups of about ``group`` entities:
    each entity's events as JSON arrays joined by ',', in time order."""
    import duckdb

    if rows.num_rows == 0:
        return
    con = duckdb.connect()
    try:
        con.register("__jf_rows", rows)
        values = ", ".join(quote(c) for c in table.row_columns)
        found = con.sql(
            f"SELECT {key_sql(table)} AS k, string_agg(CAST(json_array({values}) AS VARCHAR), ',' "
            f"ORDER BY {quote(table.row_columns[0])}) AS v, count(*) AS n FROM __jf_rows GROUP BY k"
        ).fetchall()
    finally:
        con.close()
    for i in range(0, len(found), group):
        part = found[i : i + group]
        yield sum(n for _, _, n in part), [x for k, v, _ in part for x in (k, v)]
