"""The registry's SQL tables and the migrations that build them, in order.

``schema_version`` holds one row: the number of migrations applied. Opening a store
applies the missing ones in one transaction, so a newer jupyter-features upgrades an
older database; an older one refuses a database newer than it understands.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    select,
)

from jupyter_features.errors import RegistryError

__all__ = [
    "metadata", "views", "versions", "usage", "activity", "changes", "schema_version", "MIGRATIONS", "migrate",
]  # fmt: skip

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

#: One row per view: its latest version and the text/facets search reads.
views = Table(
    "views",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("latest_version", Integer, nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("search_text", Text, nullable=False),  # lower-cased words: name, docs, owner, tags, features
    Column("facets", Text, nullable=False),  # '|e:user_id|t:float64|g:fraud|o:risk-team|'
)

#: Every version of every view; (name, version) is unique, so no number is ever given twice.
versions = Table(
    "view_versions",
    metadata,
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    PrimaryKeyConstraint("name", "version", name="pk_view_versions"),
)

#: Which models use which features (a search facet and part of lineage).
usage = Table(
    "usage",
    metadata,
    Column("model", String(256), nullable=False),
    Column("view", String(128), nullable=False),
    Column("feature", String(256), nullable=False),
    Column("version", Integer, nullable=True),
    Column("recorded_at", String(40), nullable=False),
    PrimaryKeyConstraint("model", "view", "feature", name="pk_usage"),
)

#: The audit log: exports, materializations — who, when, from where.
activity = Table(
    "activity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("detail", Text, nullable=False),
)

#: One row: a counter that every write to views, versions or usage increments in its own
#: transaction, so a reader that sees the same number sees the same data (a server keys
#: its cached answers by it).
changes = Table("registry_changes", metadata, Column("counter", BigInteger, nullable=False))

_usage_by_view = Index("ix_usage_view", usage.c.view)
_activity_by_kind = Index("ix_activity_kind", activity.c.kind, activity.c.id)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[views, versions])


def _v2(conn: Connection) -> None:
    metadata.create_all(conn, tables=[usage, activity])


def _v3(conn: Connection) -> None:
    _usage_by_view.create(conn, checkfirst=True)
    _activity_by_kind.create(conn, checkfirst=True)


def _v4(conn: Connection) -> None:
    metadata.create_all(conn, tables=[changes])
    conn.execute(changes.insert().values(counter=0))


#: Migration n+1 is MIGRATIONS[n]; append, never edit or reorder.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4]


def migrate(conn: Connection, *, upto: int | None = None) -> int:
    """Apply missing migrations inside the caller's transaction; returns the schema version."""
    target = len(MIGRATIONS) if upto is None else upto
    metadata.create_all(conn, tables=[schema_version])
    current = conn.execute(select(schema_version.c.version)).scalar()
    if current is None:
        conn.execute(schema_version.insert().values(version=0))
        current = 0
    if current > len(MIGRATIONS):
        raise RegistryError(
            f"the registry database is at schema version {current}, newer than this "
            f"jupyter-features understands ({len(MIGRATIONS)}); upgrade jupyter-features"
        )
    for number in range(current, target):
        MIGRATIONS[number](conn)
    if target > current:
        conn.execute(schema_version.update().values(version=target))
    return max(current, target)
