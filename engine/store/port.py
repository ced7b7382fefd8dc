"""The event store port: the ``EventStore`` ABC and its record types.

It imports no adapter and no driver; adapters live in their own modules and
:func:`engine.store.open_store` picks one by URL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import NamedTuple

import msgspec

from engine.core.effects import OutboxOp
from engine.store.deadletters import DeadLetter, StoredDeadLetter
from engine.store.outbox import Outbox

__all__ = [
    "DeadLetter",
    "EventStore",
    "NewRecord",
    "Record",
    "RecordRow",
    "Snapshot",
    "StoredDeadLetter",
    "Tracking",
    "group_rows",
    "outbox_ops",
]


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
    outbox: tuple[OutboxOp, ...] = ()
    """Effect requests and timers written to the outbox in the same transaction
    (see :mod:`engine.core.effects`); a decision puts them on its last record."""


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


class EventStore(ABC):
    """The port every adapter implements (memory, SQLite, PostgreSQL).

    Methods are synchronous and thread-safe; the async runtime calls them from
    worker threads. Every method raises only errors of :mod:`engine.core.errors`:
    :class:`~engine.core.errors.StoreUnavailable` when the database cannot be
    reached (never a driver's exception), and :meth:`append` also
    :class:`~engine.core.errors.ConcurrencyConflict` and
    :class:`~engine.core.errors.CommitInDoubt`. Reads are retried within a bounded
    time (see :mod:`engine.store.retry`); an append is never re-run blindly.
    """

    url: str
    """Where the store lives, password redacted."""
    writers: int = 1
    """The most appends an engine keeps in flight on this store at once."""

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
            CommitInDoubt: the connection failed after the append was sent:
                it may or may not have been committed (read the streams back).
            StoreUnavailable: the database cannot be reached; nothing was
                written.
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
            group_rows(out, rows)
        return out

    def iter_streams(
        self, stream_ids: Sequence[str], *, upto: int | None = None
    ) -> Iterator[Sequence[RecordRow]]:
        """Every record of many streams, in chunks of whole streams.

        What :meth:`read_streams` reads, without grouping it or building
        records: each chunk holds the rows (:data:`RecordRow`) of a few streams,
        each stream's rows together and in position order, and a stream never
        spans two chunks. Streams with no events are left out; a repeated id is
        read once.

        Args:
            stream_ids: The streams.
            upto: Only the positions up to this one of each stream (their
                heads: a long stream is then read on by :meth:`iter_stream`).
        """
        for sid in dict.fromkeys(stream_ids):
            rows = self.read_stream(sid, limit=upto)
            if rows:
                yield rows

    @abstractmethod
    def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Sequence[str] = ()
    ) -> list[Record]:
        """Records in global order with global position > ``after``.

        Only what no append can still write below: every record at or below
        the last one returned has committed (or never will), so a reader that
        goes on from there never skips a record that commits later.
        """

    @abstractmethod
    def last_global_position(self) -> int:
        """The highest global position a reader may pass (see :meth:`read_all`).

        0 for an empty store. Appends still in flight may hold lower positions
        in a store that runs several at once: this is then the highest
        position below all of them, not the highest position taken.
        """

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

    def outbox(self) -> Outbox:
        """The effect requests and timers written with the events.

        Raises:
            NotImplementedError: this adapter stores no outbox.
        """
        raise NotImplementedError(f"{type(self).__name__} stores no outbox")

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def outbox_ops(records: Sequence[NewRecord]) -> list[OutboxOp]:
    """The outbox operations the records carry, in order."""
    return [op for r in records if r.outbox for op in r.outbox]


def group_rows(out: dict[str, list[Record]], rows: Sequence[RecordRow]) -> None:
    """Append rows, each stream's together, to their streams' lists as records."""
    make = Record._make
    for sid, records in groupby(rows, _stream_id):
        out[sid].extend(map(make, records))


_stream_id = itemgetter(0)
