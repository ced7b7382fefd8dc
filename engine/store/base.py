"""The event store port and the adapter base built on ``eventsourcing`` recorders."""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

import msgspec
from eventsourcing.persistence import (
    AggregateRecorder,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProcessRecorder,
    StoredEvent,
)
from eventsourcing.persistence import Tracking as _ESTracking

from engine.core.errors import ConcurrencyConflict, StoreUnavailable
from engine.store.deadletters import DeadLetter, StoredDeadLetter

__all__ = [
    "EventStore",
    "NewRecord",
    "Record",
    "RecordRow",
    "RecorderStore",
    "Snapshot",
    "Tracking",
    "redact",
]

log = logging.getLogger("nonstop.store")


class NewRecord(msgspec.Struct, frozen=True):
    """An event to append: it must land exactly at ``position`` of its stream.

    A msgspec struct: a batch makes one per event, and a frozen dataclass costs
    ten times as much to construct.
    """

    stream_id: str
    """Instance id."""
    position: int
    """Expected position (the stream's current length + 1, +2, ...)."""
    type: str
    """Stable type name."""
    data: bytes
    """Envelope bytes."""


class Record(NamedTuple):
    """A stored event."""

    stream_id: str
    """Instance id."""
    position: int
    """Position in the stream, from 1."""
    global_position: int
    """Position in the global order (0 where an adapter's stream read omits it)."""
    type: str
    """Stable type name."""
    data: bytes
    """Envelope bytes."""


RecordRow = tuple[str, int, int, str, bytes]
"""A :class:`Record`'s fields as a plain tuple, in the same order: what a batch
read yields, so that no object is built per row beyond the driver's own."""


@dataclass(frozen=True, slots=True)
class Tracking:
    """How far a named consumer got; stored atomically with the events it caused."""

    name: str
    """Consumer name (a projection, a Kafka group and partition...)."""
    position: int
    """The last position processed; must increase."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A saved state of one instance."""

    stream_id: str
    """Instance id."""
    position: int
    """Stream position the state includes."""
    key: str
    """Workflow version and state schema fingerprint; must match to be used."""
    data: bytes
    """The encoded state."""


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class EventStore(ABC):
    """The port every adapter implements (memory, SQLite, PostgreSQL).

    Methods are synchronous and thread-safe; the async runtime calls them from
    worker threads.
    """

    url: str
    """Where the store lives, password redacted."""

    @abstractmethod
    def append(
        self,
        records: Sequence[NewRecord],
        *,
        tracking: Tracking | None = None,
        dead_letters: Sequence[DeadLetter] = (),
    ) -> list[int]:
        """Append records of one or more streams in one transaction.

        ``dead_letters`` are stored in the same transaction (see
        :mod:`engine.store.deadletters`).

        Returns:
            The global position of each record, in order.

        Raises:
            ConcurrencyConflict: a record's position is already taken (another
                writer got there first), ``tracking`` does not advance, or a
                dead letter's message already has one; nothing was written.
            StoreUnavailable: the database cannot be reached.
        """

    @abstractmethod
    def dead_letters(
        self, *, consumer: str | None = None, include_replayed: bool = False
    ) -> list[StoredDeadLetter]:
        """Stored dead letters, oldest first; those not replayed yet by default."""

    @abstractmethod
    def mark_dead_letter_replayed(self, letter_id: int, topic: str) -> bool:
        """Record that a dead letter was replayed to ``topic``.

        Returns:
            False when no dead letter ``letter_id`` is pending (unknown, or
            replayed already).
        """

    @abstractmethod
    def read_stream(
        self, stream_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        """Records of one stream with position > ``after``, in order."""

    def iter_stream(
        self, stream_id: str, *, after: int = 0, page: int = 10_000
    ) -> Iterator[Record]:
        """Stream a long stream in pages, so memory stays flat."""
        while True:
            rows = self.read_stream(stream_id, after=after, limit=page)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1].position

    def iter_all(
        self, *, after: int = 0, types: Sequence[str] = (), page: int = 1000
    ) -> Iterator[Record]:
        """The global order from ``after`` in pages, so memory stays flat."""
        while True:
            rows = self.read_all(after=after, limit=page, types=types)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1].global_position

    def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[Record]]:
        """Every record of each of many streams, in one round trip where possible.

        Meant for loading many short streams at once (a cold cache, a listing):
        each stream is read whole.

        Returns:
            The records of each stream in position order, keyed by stream id;
            a stream with no events maps to an empty list.
        """
        out: dict[str, list[Record]] = {sid: [] for sid in stream_ids}
        for rows in self.iter_streams(list(out)):
            _group(out, rows)
        return out

    def iter_streams(self, stream_ids: Sequence[str]) -> Iterator[Sequence[RecordRow]]:
        """Every record of many streams, in chunks of whole streams.

        What :meth:`read_streams` reads, without grouping it or building
        records: each chunk holds the rows (:data:`RecordRow`) of a few streams,
        each stream's rows together and in position order, and a stream never
        spans two chunks. Streams with no events are left out; a repeated id is
        read once.
        """
        for sid in dict.fromkeys(stream_ids):
            rows = self.read_stream(sid)
            if rows:
                yield rows

    @abstractmethod
    def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Sequence[str] = ()
    ) -> list[Record]:
        """Records in global order with global position > ``after``."""

    @abstractmethod
    def last_global_position(self) -> int:
        """The highest global position, 0 for an empty store."""

    @abstractmethod
    def stream_position(self, stream_id: str) -> int:
        """The last position of a stream, 0 when it has no events."""

    @abstractmethod
    def tracking_position(self, name: str) -> int | None:
        """The last position recorded for consumer ``name``, if any."""

    @abstractmethod
    def save_snapshot(self, snapshot: Snapshot, *, replace: bool = False) -> None:
        """Store a snapshot.

        Args:
            snapshot: what to store.
            replace: overwrite a snapshot already stored at the same position
                (used to migrate snapshots to a new state schema); without it,
                an existing snapshot at that position is kept.
        """

    @abstractmethod
    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """The newest snapshot of a stream, if any."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        if tracking is not None:
            kwargs["tracking"] = _ESTracking(tracking.name, tracking.position)
        if dead_letters:
            kwargs["dead_letters"] = list(dead_letters)
        try:
            ids = self._insert(records, kwargs)
        except IntegrityError:
            raise self._conflict(records, tracking, dead_letters) from None
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None
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

    def _conflict(
        self,
        records: Sequence[NewRecord],
        tracking: Tracking | None,
        dead_letters: Sequence[DeadLetter] = (),
    ) -> ConcurrencyConflict:
        firsts: dict[str, int] = {}
        for r in records:
            firsts.setdefault(r.stream_id, r.position)
        taken = [
            (sid, pos)
            for sid, pos in firsts.items()
            if self.stream_position(sid) >= pos
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

    def read_stream(
        self, stream_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        """See :meth:`EventStore.read_stream`."""
        try:
            rows = self._events.select_events(stream_id, gt=after or None, limit=limit)
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None
        return [
            Record(str(s.originator_id), s.originator_version, 0, s.topic, s.state)
            for s in rows
        ]

    def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Sequence[str] = ()
    ) -> list[Record]:
        """See :meth:`EventStore.read_all`."""
        try:
            rows = self._events.select_notifications(
                after, limit, topics=types, inclusive_of_start=False
            )
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None
        return [
            Record(str(n.originator_id), n.originator_version, n.id, n.topic, n.state)
            for n in rows
        ]

    def dead_letters(
        self, *, consumer: str | None = None, include_replayed: bool = False
    ) -> list[StoredDeadLetter]:
        """See :meth:`EventStore.dead_letters`."""
        try:
            found: list[StoredDeadLetter] = self._events.select_dead_letters(
                consumer, include_replayed
            )
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None
        return found

    def mark_dead_letter_replayed(self, letter_id: int, topic: str) -> bool:
        """See :meth:`EventStore.mark_dead_letter_replayed`."""
        try:
            return bool(self._events.mark_dead_letter_replayed(letter_id, topic))
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None

    def last_global_position(self) -> int:
        """See :meth:`EventStore.last_global_position`."""
        return self._events.max_notification_id() or 0

    def stream_position(self, stream_id: str) -> int:
        """See :meth:`EventStore.stream_position`."""
        rows = self._events.select_events(stream_id, desc=True, limit=1)
        return rows[0].originator_version if rows else 0

    def tracking_position(self, name: str) -> int | None:
        """See :meth:`EventStore.tracking_position`."""
        found = self._events.max_tracking_id(name)
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
            if replace:
                self._replace_snapshot(stored)
            else:
                self._snapshots.insert_events([stored])
        except IntegrityError:
            log.debug("snapshot %s@%s exists", snapshot.stream_id, snapshot.position)
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None

    def _replace_snapshot(self, stored: StoredEvent) -> None:
        """Overwrite the snapshot at ``stored``'s position, in one transaction."""
        raise NotImplementedError

    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """See :meth:`EventStore.load_snapshot`."""
        rows = self._snapshots.select_events(stream_id, desc=True, limit=1)
        if not rows:
            return None
        s = rows[0]
        return Snapshot(stream_id, s.originator_version, s.topic, s.state)

    def close(self) -> None:
        """See :meth:`EventStore.close`."""


def _group(out: dict[str, list[Record]], rows: Sequence[RecordRow]) -> None:
    """Append rows, each stream's together, to their streams' lists as records."""
    make = Record._make
    for sid, records in groupby(rows, _stream_id):
        out[sid].extend(map(make, records))


_stream_id = itemgetter(0)
