"""Online store URLs for tests: a SQLite file per test, or Redis db 2 under a unique key prefix."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: Redis database the online-store tests use (other suites use other numbers).
REDIS_DB = 2


def redis_store_url(base: str, prefix: str) -> str:
    """``base`` (redis://host:port/N) moved to db 2, with the keys under ``prefix:``."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{REDIS_DB}", query=f"prefix={prefix}:"))


def drop_redis_prefix(url: str) -> None:
    import redis

    parts = urlsplit(url)
    prefix = parts.query.split("prefix=", 1)[1]
    client = redis.Redis.from_url(urlunsplit(parts._replace(query="")))
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()
