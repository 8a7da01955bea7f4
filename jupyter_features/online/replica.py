"""An in-process, RAM-backed replica of the versions an online store serves.

The replica loads each view's served version into a dict (encoded entity key → the
entity's rows, values decoded once), then follows the store: a thread polls the store's
pointer and push counter every ``poll`` seconds (and, on Redis, wakes on the ``events``
channel's messages), reloading a view when its version switches and applying pushes as
they are journaled. Every change builds a new state and swaps one reference, so a read
never sees a mix of two versions, nor half a push.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import FeatureReferenceError, OnlineStoreError
from ..refs import group_refs
from .layout import OnlineTable, encode_key
from .result import OnlineResult
from .rows import JSON_DECODERS, best_row
from .window_values import WindowEvaluator

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["OnlineReplica"]


@dataclass(frozen=True)
class _State:
    """One view as the replica serves it: the version, its rows, the last push applied."""

    table: OnlineTable
    base: dict[str, tuple[Any, ...]]  # as loaded
    overlay: dict[str, tuple[Any, ...]]  # entities changed by earlier pushes, with all their rows
    seq: int
    loaded_at: float  # time.monotonic() when this state was built
    #: entities changed by the latest pushes (all their rows): a small dict copied per push, so
    #: a push does not copy ``overlay``; folded into it when it grows past _RECENT entities
    recent: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: requested features → (their positions in a row, their names, output columns, tie-break width)
    positions: dict[Any, tuple[list[int], list[str], list[str], int]] = field(default_factory=dict)
    evaluators: dict[Any, WindowEvaluator] = field(default_factory=dict)  # windowed: per requested features

    def positions_of(self, names: tuple[str, ...] | None) -> tuple[list[int], list[str], list[str], int]:
        found = self.positions.get(names)
        if found is None:
            table = self.table
            first = 1 + table.created
            idx = table.feature_index(names)
            feature_names = [table.features[i].name for i in idx]
            outputs = [f"{table.view}__{n}" for n in feature_names]
            found = [first + i for i in idx], feature_names, outputs, len(table.row_columns)
            self.positions[names] = found
        return found

    def evaluator_of(self, names: tuple[str, ...] | None) -> WindowEvaluator:
        """A windowed version's evaluator of the requested features."""
        found = self.evaluators.get(names)
        if found is None:
            assert self.table.window is not None
            found = WindowEvaluator(self.table.window, self.table.features, self.table.feature_index(names))
            self.evaluators[names] = found
        return found


#: entities the latest pushes may change before they are folded into the overlay
_RECENT = 4096
#: entities the overlay holds (at least; or a quarter of the base) before it is folded into the base
_FOLD_MIN = 1024


def _frozen(rows: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    """An entity's rows as a tuple of tuples: immutable, and — holding numbers, text and
    datetimes only — left alone by the garbage collector, whose full passes would otherwise
    walk every row of the replica (and hold the GIL meanwhile) as pushes allocate."""
    return tuple(map(tuple, rows))  # a row that is a tuple already is not copied


class OnlineReplica:
    """A RAM copy of ``views`` from the online store at ``url``, kept up to date by a thread.

    ``get(refs, entity_rows, at=None)`` answers like ``ws.online_features`` (an OnlineResult);
    ``close()`` stops following (also as a context manager).
    """

    def __init__(self, url: str, views: Sequence[str], *, poll: float = 0.002) -> None:
        from .stores import open_store

        if not views:
            raise FeatureReferenceError("online_replica: name at least one feature view, e.g. ['user_spend']")
        self.url = url
        self.poll = poll
        self.views = list(dict.fromkeys(views))
        self._store = open_store(url)
        self._states: dict[str, _State] = {}
        self._plans: dict[Any, Any] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.error: Exception | None = None  # the last error of the following thread
        #: (view, version or push seq, seconds from noticing to serving) of recent changes
        self.applied: list[tuple[str, str, int, float]] = []
        for view in self.views:
            self._load(view)
        self._pubsub: Any = None
        self._listener: Any = None
        channel = getattr(self._store, "events_channel", None)
        if channel is not None:
            self._subscribe([channel(v) for v in self.views])
            if self._pubsub is not None:  # woken by messages: polling is only the fallback
                self.poll = max(poll, 0.05)
        self._thread = threading.Thread(target=self._follow, name="jf-online-replica", daemon=True)
        self._thread.start()

    # -- reads -------------------------------------------------------------------------
    def get(
        self,
        refs: Sequence[str] | str,
        entity_rows: Sequence[Mapping[str, Any]],
        at: Any = None,
    ) -> OnlineResult:
        """Feature values of ``entity_rows`` as of ``at`` (default now), from memory."""
        refs_key = refs if isinstance(refs, str) else tuple(refs)
        plan = self._plans.get(refs_key)
        if plan is None:
            plan = self._plan(refs_key)
        if at is None:
            at_us = time.time_ns() // 1000
        else:
            from .reads import at_micros

            at_us = at_micros(at)
        states = self._states
        columns: dict[str, list[Any]] = {}
        parts = []
        for view, pinned, names in plan:
            state = states[view]
            table = state.table
            if pinned is not None and table.view_version != pinned:
                raise OnlineStoreError(
                    f"feature view '{view}' version {pinned} is not what the replica of {self.url} serves "
                    f"(it serves version {table.view_version}); materialize '{view}@{pinned}' or drop the pin"
                )
            feats, feature_names, outputs, width = state.positions_of(names)
            base, overlay, recent, ttl = state.base, state.overlay, state.recent, table.ttl_us
            if table.window is not None:  # evaluated over the entity's events at T
                evaluator = state.evaluator_of(names)
                found = []
                for k in self._keys(table, entity_rows):
                    rows = recent.get(k) if recent else None
                    if rows is None:
                        rows = overlay.get(k) if overlay else None
                        if rows is None:
                            rows = base.get(k)
                    found.append(evaluator.values(rows, at_us) if rows else evaluator.empty())
                for j, out_name in enumerate(outputs):
                    columns[out_name] = [values[j] for values in found]
                parts.append((table, feature_names))
                continue
            key: str | None = None
            if len(entity_rows) == 1 and len(table.entity) == 1:  # the common case, inline
                value = entity_rows[0].get(table.entity[0]) if type(entity_rows[0]) is dict else None
                kind = table.key_types[0]
                if type(value) is str and kind == "string":
                    key = value
                elif type(value) is int and kind == "int64":
                    key = str(value)
            if key is not None:
                rows = recent.get(key) if recent else None
                if rows is None:
                    rows = overlay.get(key) if overlay else None
                    if rows is None:
                        rows = base.get(key)
                best = best_row(rows, at_us, ttl, width) if rows else None
                if best is None:
                    for out_name in outputs:
                        columns[out_name] = [None]
                else:
                    for out_name, p in zip(outputs, feats, strict=True):
                        columns[out_name] = [best[p]]
            else:
                keys = self._keys(table, entity_rows)
                out: list[list[Any]] = [[] for _ in feats]
                for k in keys:
                    rows = recent.get(k) if recent else None
                    if rows is None:
                        rows = overlay.get(k) if overlay else None
                        if rows is None:
                            rows = base.get(k)
                    best = best_row(rows, at_us, ttl, width) if rows else None
                    for column, p in zip(out, feats, strict=True):
                        column.append(None if best is None else best[p])
                for out_name, column in zip(outputs, out, strict=True):
                    columns[out_name] = column
            parts.append((table, feature_names))
        return OnlineResult(columns, entity_rows, parts)

    @staticmethod
    def _keys(table: OnlineTable, entity_rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """The encoded key of each entity row (one that cannot be of the key's type matches nothing)."""
        entity, types = table.entity, table.key_types
        out = []
        for row in entity_rows:
            try:
                if len(entity) == 1:
                    value = row[entity[0]]
                    out.append(value if type(value) is str else encode_key((value,), types))
                else:
                    out.append(encode_key([row[e] for e in entity], types))
            except (KeyError, TypeError):
                table.keys_of([row])  # raises the clear error
                raise
            except ValueError:
                out.append("\x00unmatchable")
        return out

    def _plan(self, refs: tuple[str, ...] | str) -> list[tuple[str, int | None, tuple[str, ...] | None]]:
        groups = group_refs([refs] if isinstance(refs, str) else list(refs))
        plan = []
        for (view, version), wanted in groups.items():
            if view not in self._states:
                raise FeatureReferenceError(
                    f"feature view '{view}' is not in this replica (it holds {', '.join(self.views)}); "
                    f"open one with ws.online_replica([..., '{view}'])"
                )
            names = None if "*" in wanted else tuple(wanted)
            self._states[view].positions_of(names)  # unknown features fail here
            plan.append((view, version, names))
        if len(self._plans) > 1024:
            self._plans.clear()
        self._plans[refs] = plan
        return plan

    # -- following the store -------------------------------------------------------------
    @staticmethod
    def _decoders(table: OnlineTable) -> list[tuple[int, Callable[[Any], Any]]]:
        first = 1 + table.created
        out: list[tuple[int, Callable[[Any], Any]]] = []
        for i, f in enumerate(table.features if table.window is None else ()):
            decode = JSON_DECODERS.get(f.type)
            if decode is not None:
                out.append((first + i, decode))
        return out

    def _decode(self, table: OnlineTable, rows: list[Any], decoders: list[Any] | None = None) -> list[Any]:
        """Rows with their values as reads return them (timestamps as datetimes)."""
        decoders = self._decoders(table) if decoders is None else decoders
        if not decoders:
            return rows
        out = []
        for r in rows:
            r = list(r)
            for p, d in decoders:
                if r[p] is not None:
                    r[p] = d(r[p])
            out.append(r)
        return out

    def _load(self, view: str) -> None:
        started = time.monotonic()
        snap = self._store.snapshot(view)
        table = snap.table
        decoders = self._decoders(table)
        if decoders:
            base = {k: _frozen(self._decode(table, rows, decoders)) for k, rows in snap.rows.items()}
        else:
            base = {k: _frozen(rows) for k, rows in snap.rows.items()}
        state = _State(table, base, {}, snap.seq, started)
        state = self._with_pushes(state, self._store.pushes_since(view, table, snap.seq))
        self._states = {**self._states, view: state}
        self.applied.append((view, "version", table.version, time.monotonic() - started))
        del self.applied[:-100]

    def _with_pushes(self, state: _State, entries: list[tuple[int, dict[str, list[Any]]]]) -> _State:
        if not entries:
            return state
        table = state.table
        decoders = self._decoders(table)
        base, overlay = state.base, state.overlay
        recent = dict(state.recent)
        seq = state.seq
        for entry, by_key in entries:
            for k, rows in by_key.items():
                if decoders:
                    rows = self._decode(table, rows, decoders)
                current = recent.get(k)
                if current is None:
                    current = overlay.get(k)
                    if current is None:
                        current = base.get(k)
                recent[k] = (*current, *_frozen(rows)) if current else _frozen(rows)
            seq = max(seq, entry)
        if len(recent) > _RECENT:
            overlay, recent = {**overlay, **recent}, {}
        return _State(table, base, overlay, seq, state.loaded_at, recent)

    def _refresh(self, view: str) -> None:
        state = self._states[view]
        current = self._store.push_state(view)
        if current is None:
            return  # no longer served here: keep serving what was loaded
        version, seq = current
        if version != state.table.version:
            self._load(view)
        elif seq > state.seq:
            started = time.monotonic()
            entries = self._store.pushes_since(view, state.table, state.seq)
            new = self._with_pushes(state, entries)
            if len(new.overlay) > max(_FOLD_MIN, len(new.base) // 4):  # fold into the base now and then
                merged = {**new.base, **new.overlay, **new.recent}
                new = _State(new.table, merged, {}, new.seq, new.loaded_at)
            self._states = {**self._states, view: new}
            self.applied.append((view, "push", new.seq, time.monotonic() - started))
            del self.applied[:-100]

    def _follow(self) -> None:
        # a store that can tell cheaply whether anything was committed (SQLite's data_version)
        # is asked that first: most polls then end after one pragma, and hold the GIL ~µs
        token_of: Callable[[], Any] | None = getattr(self._store, "change_token", None)
        seen: Any = None
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                token = token_of() if token_of is not None else None
                if token is not None and token == seen:
                    continue  # nothing committed since the last refresh read the store
                for view in self.views:
                    self._refresh(view)
                seen = token  # read before the refresh: a later commit moves it again
                self.error = None
            except Exception as exc:  # noqa: BLE001 - keep serving what is loaded; retry next poll
                seen = None
                self.error = exc
                time.sleep(min(1.0, self.poll * 50))

    def _subscribe(self, channels: list[str]) -> None:
        import redis as redis_lib

        try:
            client = self._store.client  # type: ignore[attr-defined]
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(**{c: lambda _message: self._wake.set() for c in channels})
            self._listener = pubsub.run_in_thread(sleep_time=0.05, daemon=True)
            self._pubsub = pubsub
        except redis_lib.RedisError:
            self._pubsub = None  # polling alone follows the store

    def close(self) -> None:
        """Stop following the store and free the copy."""
        self._stop.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.stop()
            self._listener.join(timeout=5)
            self._listener = None
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001 - closing a connection that may be gone
                pass
            self._pubsub = None
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._store.close()
        self._states = {}

    def __enter__(self) -> OnlineReplica:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        versions = ", ".join(f"{v}@v{s.table.version}" for v, s in self._states.items())
        return f"OnlineReplica({self.url!r}, {versions})"
