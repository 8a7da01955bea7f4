"""What every online store agrees on: a version's metadata, entity-key encoding, time."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from ..errors import MaterializationError
from ..schema import Feature
from ..times import micros_to_datetime
from .window_values import WindowSpec

__all__ = [
    "OnlineTable",
    "Lease",
    "WriterHandle",
    "PushReceipt",
    "Snapshot",
    "KEY_SEP",
    "encode_key",
    "key_type_of",
    "pid_alive",
    "redact",
    "is_covered",
]

#: Separator of composite entity keys in their text encoding ("\\" and the separator are escaped).
KEY_SEP = "\x1f"


def key_type_of(feature_type: str) -> str:
    """Entity keys are stored as integers when they are integers, else as text."""
    return "int64" if feature_type == "int64" else "string"


def _key_part(value: Any, key_type: str) -> str:
    if key_type == "int64":
        return str(value if type(value) is int else int(value))
    text = value if type(value) is str else str(value)
    if "\\" in text or KEY_SEP in text:
        text = text.replace("\\", "\\\\").replace(KEY_SEP, "\\u001f")
    return text


def encode_key(values: Sequence[Any], key_types: Sequence[str]) -> str:
    """The deterministic text form of an entity key (materialization builds the same in SQL)."""
    if len(values) == 1:
        value = values[0]
        if key_types[0] == "int64":
            return str(value if type(value) is int else int(value))
        return value if type(value) is str else _key_part(value, "string")
    return KEY_SEP.join(_key_part(v, t) for v, t in zip(values, key_types, strict=True))


def is_covered(
    seq: int,
    min_ts: int,
    max_ts: int,
    covered: Collection[int],
    since_us: int | None,
    end_us: int,
    windowed: bool = False,
) -> bool:
    """Whether a run's offline read holds every row of journal entry ``seq``: the run saw its
    push-log file, and its rows' event times are all in the run's range (since, end]. A
    windowed view's run (always full) holds every row of a file it saw: those up to ``end`` as
    events, those after as pushed events (a replay would count them twice)."""
    if windowed:
        return seq in covered
    return seq in covered and max_ts <= end_us and (since_us is None or min_ts > since_us)


def redact(url: str) -> str:
    """``url`` without the password of its user part (redis://user:***@host)."""
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in auth:
        return url
    return f"{scheme}://{auth.split(':', 1)[0]}:***@{host}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


#: Tokens of the leases this process holds now: any other lease of this process is left over.
_HELD: set[str] = set()


@dataclass(frozen=True)
class Lease:
    """Proof of holding a view's materialization lock; stores refresh it as they write."""

    view: str
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)

    @property
    def token(self) -> str:
        return f"{self.host}|{self.pid}|{self.owner}"

    def hold(self) -> None:
        _HELD.add(self.token)

    def drop(self) -> None:
        _HELD.discard(self.token)

    def lost(self, store_url: str) -> MaterializationError:
        """The error of a run that finds this lease taken over by another run."""
        return MaterializationError(
            f"feature view '{self.view}': this run lost its lock on {store_url} (its lease expired and "
            "another run took over); the other run's result stands"
        )

    @staticmethod
    def stale(token: str) -> bool:
        """True when ``token`` belongs to a dead process on this host, or is one this process
        left behind (a run that failed while the store was unreachable)."""
        host, _, rest = token.partition("|")
        pid_text = rest.partition("|")[0]
        if host != socket.gethostname() or not pid_text.isdigit():
            return False
        if int(pid_text) == os.getpid():
            return token not in _HELD
        return not pid_alive(int(pid_text))


@dataclass(frozen=True)
class OnlineTable:
    """One materialized version of a feature view in an online store."""

    view: str
    entity: tuple[str, ...]
    key_types: tuple[str, ...]
    features: tuple[Feature, ...]
    end_us: int  # materialized as of this time; the next incremental run's watermark
    ttl_us: int | None = None
    definition_hash: str = ""
    view_version: int | None = None
    version: int = 0  # the store's version number, assigned when written
    rows: int = 0
    written_at: str = ""
    base_version: int | None = None  # a store may keep an incremental version as changes over this one
    created: bool = False  # rows carry the view's created timestamp (the tie-break), after the event time
    timestamp: str = ""  # the view's event-time column (what pushed rows name it)
    created_timestamp: str | None = None  # the view's created-timestamp column, if any
    #: A windowed view: its stored rows are events (``stored``), its features evaluated at read time.
    window: WindowSpec | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def stored(self) -> tuple[Feature, ...]:
        """The typed columns of a stored row after the event time (and created): the features, or
        a windowed view's event columns (aggregate inputs and filter flags)."""
        return self.features if self.window is None else self.window.columns

    @property
    def row_columns(self) -> list[str]:
        """The canonical columns of a stored row after the keys: event time, created, stored columns."""
        from ..sqltext import CREATED_TS, EVENT_TS

        return [EVENT_TS, *([CREATED_TS] if self.created else []), *(f.name for f in self.stored)]

    @cached_property
    def layout(self) -> str:
        """What the stored form of a row depends on (keys, their types, columns, types): pushed rows
        journaled for one layout are replayed only into a version of the same layout."""
        import hashlib

        shape = [self.entity, self.key_types, self.row_columns, [f.type for f in self.stored]]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]

    @property
    def cutoff_us(self) -> int | None:
        """Rows with an event time before this are past their TTL as of ``end``."""
        return None if self.ttl_us is None else self.end_us - self.ttl_us

    @property
    def events_after_us(self) -> int | None:
        """A windowed view's events at or before this time are in no window of a read at or after
        ``end``: a run does not write them, a push or a replay drops them (None: not windowed)."""
        return None if self.window is None else self.end_us - self.window.longest_us

    @property
    def end(self) -> datetime:
        return micros_to_datetime(self.end_us)

    def with_version(self, version: int, rows: int, base_version: int | None = None) -> OnlineTable:
        return replace(
            self,
            version=version,
            rows=rows,
            base_version=base_version,
            written_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "view": self.view,
                "entity": list(self.entity),
                "key_types": list(self.key_types),
                "features": [f.to_dict() for f in self.features],
                "end_us": self.end_us,
                "ttl_us": self.ttl_us,
                "definition_hash": self.definition_hash,
                "view_version": self.view_version,
                "version": self.version,
                "rows": self.rows,
                "written_at": self.written_at,
                "base_version": self.base_version,
                "created": self.created,
                "timestamp": self.timestamp,
                "created_timestamp": self.created_timestamp,
                **({"window": self.window.to_dict()} if self.window is not None else {}),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> OnlineTable:
        d = json.loads(text)
        return cls(
            view=d["view"],
            entity=tuple(d["entity"]),
            key_types=tuple(d["key_types"]),
            features=tuple(Feature.from_dict(f) for f in d["features"]),
            end_us=int(d["end_us"]),
            ttl_us=d.get("ttl_us"),
            definition_hash=d.get("definition_hash", ""),
            view_version=d.get("view_version"),
            version=int(d.get("version", 0)),
            rows=int(d.get("rows", 0)),
            written_at=d.get("written_at", ""),
            base_version=d.get("base_version"),
            created=bool(d.get("created", False)),
            timestamp=str(d.get("timestamp") or ""),
            created_timestamp=d.get("created_timestamp"),
            window=WindowSpec.from_dict(d["window"], d["view"]) if d.get("window") is not None else None,
        )

    def check_definition(self, definition: str | None, url: str) -> None:
        """Refuse a push of rows of another definition of the view than the one served here."""
        if definition is not None and definition != self.definition_hash:
            from ..errors import PushError

            raise PushError(
                f"push to feature view '{self.view}': {url} serves another definition of it "
                f"(version {self.view_version}); materialize this definition first"
            )

    def feature_index(self, features: Sequence[str] | None) -> list[int]:
        """Positions of ``features`` among the table's features; raises for unknown names."""
        names = self.feature_names
        if features is None:
            return list(range(len(names)))
        out = []
        for f in features:
            try:
                out.append(names.index(f))
            except ValueError:
                from ..errors import UnknownFeatureError, did_you_mean

                raise UnknownFeatureError(
                    f"feature view '{self.view}' has no feature '{f}' in the online store "
                    f"(version {self.version}){did_you_mean(f, names)}; it has: {', '.join(names)} "
                    "(materialize the view again after changing it)"
                ) from None
        return out

    def keys_of(self, entity_rows: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The entity key of each row; a row missing a key column is a clear error."""
        entity = self.entity
        try:
            if len(entity) == 1:
                k = entity[0]
                return [(row[k],) for row in entity_rows]
            return [tuple(row[k] for k in entity) for row in entity_rows]
        except (KeyError, TypeError):
            from ..errors import UnknownColumnError

            for i, row in enumerate(entity_rows):
                if not hasattr(row, "keys"):
                    raise UnknownColumnError(
                        f"entity row {i} is a {type(row).__name__}, not a mapping; pass e.g. "
                        f"[{{'{entity[0]}': 42}}]"
                    ) from None
                missing = [k for k in entity if k not in row]
                if missing:
                    raise UnknownColumnError(
                        f"entity row {i} has no key {', '.join(repr(m) for m in missing)}; "
                        f"feature view '{self.view}' is keyed by {', '.join(entity)}"
                    ) from None
            raise


@dataclass(frozen=True)
class PushReceipt:
    """What one push did in a store: the version it went into and its journal sequence number."""

    view: str
    version: int
    seq: int | None  # None when there was nothing to push
    rows: int


@dataclass(frozen=True)
class Snapshot:
    """Every row of a served version by encoded entity key (stored JSON form: times in µs), and
    the last push journaled when it was read."""

    table: OnlineTable
    rows: dict[str, list[Any]]
    seq: int


@dataclass(frozen=True)
class WriterHandle:
    """What another process (a Spark executor) needs to write rows into a version being
    written: the store's URL, the version, the run's lease and the store's target for it."""

    url: str
    table: OnlineTable
    lease: Lease
    target: str
    upsert: bool = False

    def resume(self) -> Any:
        """The store's writer for this version, in this process (a ``VersionWriter``); close it
        when done — that also closes the store it opened."""
        from .stores import open_store

        return open_store(self.url).resume(self)
