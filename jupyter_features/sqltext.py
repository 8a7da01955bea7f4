"""SQL text helpers and the reserved ``__jf_*`` column and table names, in one place.

Every module that writes SQL quotes identifiers and literals with these, and every
internal column the engines and stores add is named here, so one name means one thing.
"""

from __future__ import annotations

__all__ = [
    "RESERVED_PREFIX",
    "LABELS",
    "LABEL_STREAM",
    "RESULT",
    "WINDOWED",
    "ROW",
    "LABEL_TS",
    "EVENT_TS",
    "CREATED_TS",
    "PUSH_SEQ",
    "PUSH_ORD",
    "PUSH_STORE",
    "quote",
    "string_literal",
    "timestamp_literal",
]

#: Column and table names starting with this belong to jupyter-features; user columns may not.
RESERVED_PREFIX = "__jf_"
#: The label frame of a point-in-time join, as registered on an engine.
LABELS = "__jf_labels"
#: A label frame arriving as a stream of Arrow batches, before it is a table (LABELS).
LABEL_STREAM = "__jf_label_stream"
#: A point-in-time join's intermediate result table.
RESULT = "__jf_result"
#: A windowed view's features for a label frame (ROW, features...), joined into RESULT by ROW.
WINDOWED = "__jf_windowed"
#: A label row's position in the label frame.
ROW = "__jf_row"
#: A label row's time, naive UTC.
LABEL_TS = "__jf_t"
#: A feature row's event time: naive UTC in engines, microseconds since the epoch in online stores.
EVENT_TS = "__jf_ts"
#: A feature row's created timestamp (the tie-break), where a view has one: as ``EVENT_TS``.
CREATED_TS = "__jf_created"
#: A pushed row's journal sequence number in an online store, and its position in its push.
PUSH_SEQ = "__jf_seq"
PUSH_ORD = "__jf_ord"
#: The online store a pushed row of the workspace's push log went to (its identity), if any.
PUSH_STORE = "__jf_store"


def quote(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def string_literal(text: str) -> str:
    """``text`` as a single-quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def timestamp_literal(text: str) -> str:
    """A ``TIMESTAMP '...'`` literal of an ISO time text."""
    return "TIMESTAMP " + string_literal(text)
