"""The adapter base over ``eventsourcing`` recorders (memory and SQLite).

Driver errors are translated here, at the adapter boundary, into the tree of
:mod:`engine.core.errors`; reads are retried through :mod:`engine.store.retry`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import (
    AggregateRecorder,
    IntegrityError,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
)
from eventsourcing.persistence import Tracking as _ESTracking

from engine.core.errors import ConcurrencyConflict, StoreUnavailable
from engine.store import retry
from engine.store.deadletters import DeadLetter, StoredDeadLetter
from engine.store.port import (
    EventStore,
    NewRecord,
    Record,
    Snapshot,
    Tracking,
    outbox_ops,
)
from engine.store.urls import redact

__all__ = ["RecorderStore", "conflict"]

log = logging.getLogger("nonstop.store")

_DRIVER_ERRORS = (PersistenceError, sqlite3.Error)
"""What the recorders raise when the database fails (IntegrityError aside)."""


class RecorderStore(EventStore):
    """An :class:`EventStore` over an ``eventsourcing`` process recorder.

    Adapters pass their recorders in and override the read paths where the
    generic recorder API is too slow.
    """

    def __init__(
        self, url: str, events: ProcessRecorder, snapshots: AggregateRecorder
    ) -> None:
        self.url = redact(url)
        self._events = events
        self._snapshots = snapshots

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Driver errors raised in the block become ``StoreUnavailable``."""
        try:
            yield
        except IntegrityError:
            raise
        except _DRIVER_ERRORS as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None

    def _read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` translated and retried (reads only)."""

        def attempt() -> Any:
            with self._translated():
                return fn(*args, **kwargs)

        return retry.call(attempt)

    def append(
        self,
        records: Sequence[NewRecord],
        *,
        tracking: Tracking | None = None,
        dead_letters: Sequence[DeadLetter] = (),
    ) -> list[int]:
        """See :meth:`EventStore.append`."""
        if not records and tracking is None and not dead_letters:
            return []
        kwargs: dict[str, Any] = {}
        ops = outbox_ops(records)
        if ops:
            kwargs["outbox"] = ops
        if tracking is not None:
            kwargs["tracking"] = _ESTracking(tracking.name, tracking.position)
        if dead_letters:
            kwargs["dead_letters"] = list(dead_letters)
        try:
            with self._translated():
                ids = self._insert(records, kwargs)
        except IntegrityError:
            raise conflict(self, records, tracking, dead_letters) from None
        return list(ids or [])

    def _insert(
        self, records: Sequence[NewRecord], kwargs: dict[str, Any]
    ) -> Sequence[int] | None:
        """One ``insert_events`` transaction; adapters may override it."""
        stored = [
            StoredEvent(
                originator_id=r.stream_id,
                originator_version=r.position,
                topic=r.type,
                state=r.data,
            )
            for r in records
        ]
        ids: Sequence[int] | None = self._events.insert_events(stored, **kwargs)
        return ids

    def read_stream(
        self, stream_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        """See :meth:`EventStore.read_stream`."""
        rows = self._read(
            self._events.select_events, stream_id, gt=after or None, limit=limit
        )
        return [
            Record(str(s.originator_id), s.originator_version, 0, s.topic, s.state)
            for s in rows
        ]

    def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Sequence[str] = ()
    ) -> list[Record]:
        """See :meth:`EventStore.read_all`."""
        rows = self._read(
            self._events.select_notifications,
            after,
            limit,
            topics=types,
            inclusive_of_start=False,
        )
        return [
            Record(str(n.originator_id), n.originator_version, n.id, n.topic, n.state)
            for n in rows
        ]

    def dead_letters(
        self, *, consumer: str | None = None, include_replayed: bool = False
    ) -> list[StoredDeadLetter]:
        """See :meth:`EventStore.dead_letters`."""
        found: list[StoredDeadLetter] = self._read(
            self._events.select_dead_letters, consumer, include_replayed
        )
        return found

    def mark_dead_letter_replayed(self, letter_id: int, topic: str) -> bool:
        """See :meth:`EventStore.mark_dead_letter_replayed`."""
        with self._translated():
            return bool(self._events.mark_dead_letter_replayed(letter_id, topic))

    def last_global_position(self) -> int:
        """See :meth:`EventStore.last_global_position`."""
        return int(self._read(self._events.max_notification_id) or 0)

    def stream_position(self, stream_id: str) -> int:
        """See :meth:`EventStore.stream_position`."""
        rows = self._read(self._events.select_events, stream_id, desc=True, limit=1)
        return int(rows[0].originator_version) if rows else 0

    def tracking_position(self, name: str) -> int | None:
        """See :meth:`EventStore.tracking_position`."""
        found = self._read(self._events.max_tracking_id, name)
        return None if found is None else int(found)

    def save_snapshot(self, snapshot: Snapshot, *, replace: bool = False) -> None:
        """See :meth:`EventStore.save_snapshot`."""
        stored = StoredEvent(
            originator_id=snapshot.stream_id,
            originator_version=snapshot.position,
            topic=snapshot.key,
            state=snapshot.data,
        )
        try:
            with self._translated():
                if replace:
                    self._replace_snapshot(stored)
                else:
                    self._snapshots.insert_events([stored])
        except IntegrityError:
            log.debug("snapshot %s@%s exists", snapshot.stream_id, snapshot.position)

    def _replace_snapshot(self, stored: StoredEvent) -> None:
        """Overwrite the snapshot at ``stored``'s position, in one transaction."""
        raise NotImplementedError

    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """See :meth:`EventStore.load_snapshot`."""
        rows = self._read(self._snapshots.select_events, stream_id, desc=True, limit=1)
        if not rows:
            return None
        s = rows[0]
        return Snapshot(stream_id, s.originator_version, s.topic, s.state)

    def close(self) -> None:
        """See :meth:`EventStore.close`."""


def conflict(
    store: EventStore,
    records: Sequence[NewRecord],
    tracking: Tracking | None,
    dead_letters: Sequence[DeadLetter] = (),
) -> ConcurrencyConflict:
    """The conflict an append that hit a unique key ran into, named precisely."""
    firsts: dict[str, int] = {}
    for r in records:
        firsts.setdefault(r.stream_id, r.position)
    taken = [
        (sid, pos) for sid, pos in firsts.items() if store.stream_position(sid) >= pos
    ]
    if not taken and tracking is not None:
        taken = [(f"tracking:{tracking.name}", tracking.position)]
    if not taken and dead_letters:
        taken = [
            (f"dead letter of {d.consumer}:{d.topic}:{d.partition}", d.offset)
            for d in dead_letters
        ]
    if not taken:
        # Duplicate positions inside the batch itself.
        taken = [(r.stream_id, r.position) for r in records]
    return ConcurrencyConflict(taken)
