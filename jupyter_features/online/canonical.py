"""The canonical form of materialized rows, which every online store writes.

An engine hands a store the latest row per entity as it computed it (entity keys, the
event time as a timestamp in ``EVENT_TS``, the created timestamp in ``CREATED_TS`` when the
view has one, the features); the store's writer turns it
into these canonical columns first: keys as BIGINT or VARCHAR, the event time as
microseconds since the epoch, each feature cast to its type's stored form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sqltext import CREATED_TS, EVENT_TS, quote

if TYPE_CHECKING:
    import pyarrow as pa

    from .layout import OnlineTable

__all__ = ["canonical_rows"]

_CASTS = {
    "int64": "CAST({c} AS BIGINT)",
    "float64": "CASE WHEN isnan(CAST({c} AS DOUBLE)) THEN NULL ELSE CAST({c} AS DOUBLE) END",
    "string": "CAST({c} AS VARCHAR)",
    "categorical": "CAST({c} AS VARCHAR)",
    "bool": "CAST({c} AS BOOLEAN)",
    "timestamp": "epoch_us(CAST({c} AS TIMESTAMP))",
    "list<float>": "CAST({c} AS DOUBLE[])",
}


def canonical_rows(latest: pa.Table, table: OnlineTable) -> pa.Table:
    """Keys, event time (µs), [created time (µs),] and features cast to the types stores write; null keys dropped;
    sorted by key (B-tree stores insert fastest in key order)."""
    import duckdb
    import pyarrow as pa

    if isinstance(latest, pa.RecordBatch):
        latest = pa.Table.from_batches([latest])
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__jf_latest", latest)
        keys = [quote(k) for k in table.entity]
        cols = [
            f"CAST({k} AS {'BIGINT' if t == 'int64' else 'VARCHAR'}) AS {k}"
            for k, t in zip(keys, table.key_types, strict=True)
        ]
        cols.append(f"epoch_us(CAST({quote(EVENT_TS)} AS TIMESTAMP)) AS {EVENT_TS}")
        if table.created:
            cols.append(f"epoch_us(CAST({quote(CREATED_TS)} AS TIMESTAMP)) AS {CREATED_TS}")
        cols += [_CASTS[f.type].format(c=quote(f.name)) + f" AS {quote(f.name)}" for f in table.stored]
        where = " AND ".join(f"{k} IS NOT NULL" for k in keys)
        order = ", ".join([*keys, *([EVENT_TS] if table.window is not None else [])])
        query = f"SELECT {', '.join(cols)} FROM __jf_latest WHERE {where} ORDER BY {order}"
        return con.sql(query).fetch_arrow_table()
    finally:
        con.close()
