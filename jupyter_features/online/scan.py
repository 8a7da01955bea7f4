"""Every row a store serves, back in the canonical form (``canonical_rows``) as Arrow.

``OnlineStore.scan`` answers with these batches: entity keys (BIGINT or VARCHAR), the
event time in µs (``EVENT_TS``) and each feature as stored — int64, float64, string,
bool, timestamps in µs, lists of float64 — so they compare column for column with
``canonical_rows`` of an engine's latest rows. SQLite rows convert column by column;
Redis's packed JSON values are decoded by DuckDB in bulk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import OnlineStoreError
from ..sqltext import CREATED_TS, EVENT_TS, quote
from .layout import KEY_SEP, OnlineTable

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ScanPages", "canonical_schema", "sqlite_batches", "packed_rows"]

#: The DuckDB type of each feature type in the canonical form (what ``canonical_rows`` casts to).
_DUCKDB = {
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "categorical": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp": "BIGINT",
    "list<float>": "DOUBLE[]",
}


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "string": pa.string(),
        "categorical": pa.string(),
        "bool": pa.bool_(),
        "timestamp": pa.int64(),
        "list<float>": pa.list_(pa.float64()),
    }.get(kind, pa.string())


def canonical_schema(table: OnlineTable) -> pa.Schema:
    """Keys, ``EVENT_TS`` (µs) and the features of ``table``, typed as stores write them."""
    import pyarrow as pa

    fields = [
        pa.field(k, pa.int64() if t == "int64" else pa.string())
        for k, t in zip(table.entity, table.key_types, strict=True)
    ]
    fields.append(pa.field(EVENT_TS, pa.int64()))
    fields += [pa.field(f.name, _arrow_type(f.type)) for f in table.features]
    return pa.schema(fields)


def _floats(blobs: pa.Array) -> pa.Array:
    """SQLite's little-endian float64 BLOBs (a binary array) as one list array, without copying
    value by value: the BLOBs' bytes are the list's values, their offsets / 8 its offsets."""
    import numpy as np
    import pyarrow as pa

    blobs = blobs.cast(pa.large_binary())
    offsets = np.frombuffer(blobs.buffers()[1], dtype=np.int64)[blobs.offset : blobs.offset + len(blobs) + 1]
    if np.any(offsets % 8):
        raise ValueError("a list BLOB is not a whole number of float64 values")
    data = blobs.buffers()[2]
    raw = (
        np.frombuffer(data, dtype="<f8", count=int(offsets[-1]) // 8, offset=int(offsets[0]))
        if data
        else np.zeros(0)
    )
    return pa.ListArray.from_arrays(
        pa.array((offsets - offsets[0]) // 8, type=pa.int32()),
        pa.array(raw.astype(np.float64)),
        mask=blobs.is_null(),
    )


#: How a feature type comes out of SQLite's Python rows, before it takes its canonical Arrow type.
_RAW = {"bool": "int64", "list<float>": "binary"}


def sqlite_batches(rows: Any, table: OnlineTable, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of the canonical form from a SQLite cursor over ``keys, EVENT_TS, features``: each
    chunk of row tuples converts to Arrow in one call (a struct array), then booleans and lists
    take their canonical types."""
    import pyarrow as pa

    schema = canonical_schema(table)
    kinds = [*table.key_types, "int64", *(f.type for f in table.features)]
    raw = pa.struct(
        [
            pa.field(name, pa.binary() if _RAW.get(kind) == "binary" else _arrow_type(_RAW.get(kind, kind)))
            for name, kind in zip(schema.names, kinds, strict=True)
        ]
    )
    while chunk := rows.fetchmany(batch_rows):
        try:
            batch = pa.RecordBatch.from_struct_array(pa.array(chunk, type=raw))
            columns = [
                _floats(col) if kind == "list<float>" else col.cast(pa.bool_()) if kind == "bool" else col
                for col, kind in zip(batch.columns, kinds, strict=True)
            ]
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise OnlineStoreError(
                f"feature view '{table.view}' version {table.version}: a stored value is not of its column's "
                f"type ({exc}); the store was changed behind its back: materialize the view again"
            ) from None
        yield pa.RecordBatch.from_arrays(columns, schema=schema)


def _decode_key_sql(table: OnlineTable) -> list[str]:
    """SQL turning the encoded key ``k`` back into key columns (the inverse of ``encode_key``).

    One key is its text (cast for an integer). A composite key splits on the separator;
    within a part, splitting on an escaped backslash leaves ``\\u001f`` as the only escape.
    """
    names = table.entity
    if len(names) == 1:
        cast = "TRY_CAST(k AS BIGINT)" if table.key_types[0] == "int64" else "k"
        return [f"{cast} AS {quote(names[0])}"]
    part = r"array_to_string(list_transform(string_split(p, '\\'), lambda x: replace(x, '\u001f', chr(31))), '\')"
    parts = f"list_transform(string_split(k, chr({ord(KEY_SEP)})), lambda p: {part})"
    out = []
    for i, (name, kind) in enumerate(zip(names, table.key_types, strict=True), start=1):
        value = f"{parts}[{i}]"
        out.append(f"{'TRY_CAST(' + value + ' AS BIGINT)' if kind == 'int64' else value} AS {quote(name)}")
    return out


def _decode_value_sql(kind: str, i: int) -> str:
    """SQL reading value ``i`` of a packed value ``v``, whose values are already extracted as text
    into ``j`` (numbers in their shortest exact form, strings unescaped, null as NULL)."""
    if kind == "list<float>":
        return f"TRY_CAST(json_extract(v, '$[{i}]') AS DOUBLE[])"
    item = f"j[{i + 1}]"
    if kind in ("string", "categorical"):
        return item
    return f"TRY_CAST({item} AS {_DUCKDB.get(kind, 'VARCHAR')})"


class ScanPages(NamedTuple):
    """Pages of a Redis hash: fields and values alternating, joined by the record separator
    (``split``) or as a JSON array of strings (``json``, for pages where a field holds that byte)."""

    split: list[Any]
    json: list[Any]


#: SQL of the (field, value) pairs of ``{split}`` and ``{json}`` page tables.
_PAIRS = (
    "SELECT unnest(list_slice(l, 1, len(l), 2)) AS k, unnest(list_slice(l, 2, len(l), 2)) AS v FROM "
    "(SELECT string_split(page, chr(30)) AS l FROM {split} UNION ALL "
    "SELECT from_json(page, '[\"VARCHAR\"]') AS l FROM {json})"
)


def packed_rows(top: ScanPages, base: ScanPages | None, table: OnlineTable) -> pa.Table:
    """Redis's pages of a version — field and packed value alternating — plus its base's fields it
    does not replace, for an incremental version, decoded into the canonical form; past-TTL rows
    are left out as reads do."""
    import duckdb
    import pyarrow as pa

    def pages(found: list[Any]) -> pa.Table:
        return pa.table({"page": pa.array(found, type=pa.binary()).cast(pa.string())})

    # A field holds the entity's rows (the materialized one, then pushed ones) as JSON arrays
    # joined by ',': each is decoded, and the one a read at the version's end gives is kept.
    first = 1 + table.created
    paths = ", ".join(f"'$[{i}]'" for i in range(len(table.row_columns)))
    created = [f"TRY_CAST(j[2] AS BIGINT) AS {CREATED_TS}"] if table.created else []
    columns = [
        *_decode_key_sql(table),
        f"TRY_CAST(j[1] AS BIGINT) AS {EVENT_TS}",
        *created,
        *(f"{_decode_value_sql(f.type, first + i)} AS {quote(f.name)}" for i, f in enumerate(table.features)),
    ]
    served = "SELECT k, v FROM __jf_top"
    if base is not None:
        served += " UNION ALL SELECT k, v FROM __jf_base ANTI JOIN __jf_top USING (k)"
    rows = f"SELECT k, unnest(from_json('[' || v || ']', '[\"JSON\"]')) AS v FROM ({served})"
    keys = ", ".join(quote(k) for k in table.entity)
    order = ", ".join(
        [f"{EVENT_TS} DESC", *([f"{CREATED_TS} DESC NULLS LAST"] if table.created else []),
         *(f"{quote(f.name)} DESC NULLS LAST" for f in table.features)]
    )  # fmt: skip
    cutoff = f"WHERE {EVENT_TS} >= {int(table.cutoff_us)}" if table.cutoff_us is not None else ""
    query = (
        f"SELECT * {f'EXCLUDE ({CREATED_TS}) ' if table.created else ''}FROM (SELECT * FROM "
        f"(SELECT {', '.join(columns)} FROM (SELECT k, v, json_extract_string(v, [{paths}]) AS j FROM ({rows}))) "
        f"WHERE {EVENT_TS} <= {int(table.end_us)} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1) {cutoff}"
    )
    con = duckdb.connect()
    try:
        try:
            for name, found in (("top", top), ("base", base)):
                if found is not None:
                    con.register(f"__jf_{name}_split", pages(found.split))
                    con.register(f"__jf_{name}_json", pages(found.json))
                    con.execute(
                        f"CREATE TEMP TABLE __jf_{name} AS "
                        + _PAIRS.format(split=f"__jf_{name}_split", json=f"__jf_{name}_json")
                    )
                    rows, fields = con.sql(f"SELECT count(*), count(DISTINCT k) FROM __jf_{name}").fetchall()[
                        0
                    ]
                    if rows != fields:  # a field HSCAN returned twice: keep one
                        con.execute(
                            f"CREATE OR REPLACE TEMP TABLE __jf_{name} AS SELECT DISTINCT ON (k) k, v FROM __jf_{name}"
                        )
            found_rows = con.sql(query).to_arrow_table()
        except (duckdb.InvalidInputException, duckdb.ConversionException, pa.ArrowInvalid) as exc:
            raise OnlineStoreError(
                f"feature view '{table.view}' version {table.version}: a stored value is not the JSON "
                f"array the store writes ({str(exc).splitlines()[0]}); the store was changed behind its "
                "back: materialize the view again"
            ) from None
        return found_rows.cast(canonical_schema(table))
    finally:
        con.close()
