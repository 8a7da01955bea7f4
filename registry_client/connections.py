"""SQLAlchemy engines for the two SQL stores: a SQLite file and PostgreSQL (psycopg 3).

SQLite: WAL, a 30 s busy timeout, and write transactions opened with BEGIN IMMEDIATE
(through the ``registry_write`` execution option), so writers queue instead of failing
half way. PostgreSQL: ``?schema=NAME`` keeps every table in that schema (created if
missing); ``?options=-csearch_path=NAME`` is passed through to the server as usual.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection

from jupyter_features.errors import ConfigError
from jupyter_features.sqlite_files import use_wal

__all__ = ["make_engine", "write_options", "redact"]

#: Execution option that marks a connection's transactions as writes.
WRITE = "registry_write"


def write_options() -> dict[str, Any]:
    return {WRITE: True}


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def make_engine(url: str) -> tuple[Engine, str]:
    """An engine for ``url`` and its dialect name ('sqlite' or 'postgresql')."""
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("sqlite"):
        return _sqlite(url), "sqlite"
    if scheme.split("+")[0] in ("postgresql", "postgres"):
        return _postgresql(url), "postgresql"
    raise ConfigError(f"registry URL {redact(url)!r}: expected sqlite:///path.db or postgresql://...")


def _sqlite(url: str) -> Engine:
    path = url.split("://", 1)[1]
    if not path.startswith("/") or path in ("/", "/:memory:"):
        raise ConfigError(
            f"registry URL {url!r}: give the SQLite database a file path, e.g. "
            "sqlite:///.jupyter_features/registry.db (three slashes, then the path)"
        )
    file = Path(path[1:].split("?", 1)[0]).expanduser()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"registry URL {url!r}: cannot create folder {file.parent}: {exc}") from exc
    engine = create_engine(
        f"sqlite:///{file}",
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=8,
        max_overflow=32,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions begin in _begin below
        use_wal(dbapi_conn)
        cursor = dbapi_conn.cursor()
        for pragma in ("busy_timeout=30000", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgresql(url: str) -> Engine:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    query = [(k, v) for k, v in query if k != "schema"]
    scheme = "postgresql+psycopg"
    driver_url = urlunsplit(parts._replace(scheme=scheme, query=urlencode(query)))
    engine = create_engine(driver_url, pool_size=8, max_overflow=32, pool_pre_ping=True)
    if schema:
        if not schema.replace("_", "").isalnum() or len(schema) > 63:
            raise ConfigError(f"registry URL: schema {schema!r} must be letters, digits and _")
        with engine.begin() as conn:
            lock = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:4], "big")
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine
