"""The publisher: an outbox relay from the event store to a Kafka topic.

Committed events are read in global order, decoded through the engine's codec
(so older schemas arrive upcast to the current one), and produced to one topic
keyed by instance id: all events of an instance land on one partition, in
order. Once the broker has acknowledged a page, its last global position is
stored as the publisher's tracking record. Delivery is at-least-once: a crash
after the acknowledgement and before the tracking write publishes the page
again, with the same ``nonstop-event-id`` header (``<stream>:<position>``), by
which consumers deduplicate.

An event that cannot be read (a corrupt row, a type or schema this code does
not know) stops the publisher *at* it: the events before it are published and
tracked, and :class:`PublishBlocked` names its global position. An operator
either fixes the code or skips it (:meth:`Publisher.skip`, ``nonstop publish
skip``); a skip is a ``nonstop.PublishSkipped`` event with its reason in the
publisher's reserved stream, so the skips are listed and audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from engine.core.codec import EventCodec
from engine.core.errors import BrokerUnavailable, PublishBlocked, SkipRefused
from engine.core.events import Metadata, RecordedEvent, event, now_micros
from engine.kafka.worker import TRANSIENT
from engine.store import EventStore, NewRecord, Record, Tracking
from engine.store.retry import Backoff, until_stopped

__all__ = [
    "EVENT_ID",
    "PublishSkipped",
    "PublishedEvent",
    "Publisher",
    "event_id",
    "skip_stream",
]

log = logging.getLogger("nonstop.kafka")
EVENT_ID = "nonstop-event-id"
"""Header carrying the stable event id ``<stream>:<position>``."""
_json = msgspec.json.Encoder()


class PublishedEvent(msgspec.Struct, frozen=True):
    """The JSON value of a published message."""

    id: str
    """Stable event id, ``<stream>:<position>`` (``#n`` added for a split event)."""
    type: str
    """Event type name."""
    schema: int
    """Schema version of ``data`` (the current one)."""
    stream: str
    """Instance id."""
    position: int
    """Position in the stream."""
    global_position: int
    """Position in the global order."""
    recorded_at: int
    """Microseconds since the epoch."""
    workflow: str
    """``name@version`` that wrote it."""
    command_id: str | None
    """Command id."""
    correlation_id: str | None
    """Correlation id."""
    data: Any
    """The event, as JSON."""


@event("nonstop.PublishSkipped")
class PublishSkipped(msgspec.Struct, frozen=True):
    """An operator told ``publisher`` to pass over the event at a global position."""

    publisher: str
    """The publisher's tracking name (``publisher:<topic>``)."""
    global_position: int
    """The skipped event's global position."""
    stream_id: str
    """Its stream."""
    position: int
    """Its position in the stream."""
    type: str
    """Its stored type name."""
    reason: str
    """Why it was skipped."""
    by: str = ""
    """Who skipped it."""


_Message = tuple[str, bytes, list[tuple[str, bytes]]]
"""A message to produce: key (the stream id), JSON value, headers."""
_SKIPS_PREFIX = "nonstop.publisher:"
_skips_codec = EventCodec()  # the default types: whatever codec a publisher uses


def skip_stream(publisher: str) -> str:
    """The reserved stream holding the skips of ``publisher``."""
    return f"{_SKIPS_PREFIX}{publisher}"


def event_id(ev: RecordedEvent, index: int = 0) -> str:
    """The stable id of a decoded event (``index`` > 0 for a split's later parts)."""
    base = f"{ev.stream_id}:{ev.position}"
    return base if index == 0 else f"{base}#{index}"


@dataclass
class Publisher:
    """Relays committed events to ``topic``, tracking its position in the store.

    Args:
        store: The event store to read.
        codec: The codec (with upcasters) to decode with: ``engine.codec``.
        bootstrap: Kafka ``HOST:PORT``.
        topic: Topic to produce to.
        name: Tracking record name (``publisher:<topic>`` by default).
        page: Events read and acknowledged per tracking write.
        poll_interval: Seconds between reads when there was nothing new.
    """

    store: EventStore
    codec: EventCodec
    bootstrap: str
    topic: str
    name: str = ""
    page: int = 1_000
    poll_interval: float = 0.2
    published: int = 0
    """Messages produced so far."""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"publisher:{self.topic}"

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Publish until ``stop`` is set; returns how many messages were produced.

        Transient failures (the store or the broker unreachable) are retried
        with backoff.

        Raises:
            BrokerUnavailable: the broker cannot be reached at start.
        """
        stop = stop if stop is not None else asyncio.Event()
        producer = await self._producer()
        # Nothing is tracked for a failed page: it is sent again on retry.
        backoff = Backoff(first=self.poll_interval, longest=5.0)
        try:
            while not stop.is_set():
                n = await until_stopped(
                    functools.partial(self._page, producer),
                    transient=(*TRANSIENT, KafkaError),
                    what="publishing",
                    stop=stop,
                    backoff=backoff,
                )
                if not n:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.poll_interval)
        finally:
            await producer.stop()
        return self.published

    async def publish_pending(self) -> int:
        """Publish everything committed so far, then return how many were produced.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """
        producer = await self._producer()
        before = self.published
        try:
            while await self._page(producer):
                pass
        finally:
            await producer.stop()
        return self.published - before

    async def _producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=5, acks="all"
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise BrokerUnavailable(self.bootstrap, str(exc)) from None
        return producer

    def skip(self, global_position: int, reason: str, *, by: str = "") -> Record:
        """Record that the event at ``global_position`` is not to be published.

        Only a position the publisher has not passed yet can be skipped, once.

        Returns:
            The skipped event's record (as stored, not decoded).

        Raises:
            SkipRefused: no reason, no event there, already published or skipped.
            ConcurrencyConflict: another skip was recorded at the same moment.
        """
        if not reason.strip():
            raise SkipRefused(self.name, global_position, "give a --reason")
        done = self.store.tracking_position(self.name) or 0
        if global_position <= done:
            raise SkipRefused(
                self.name,
                global_position,
                f"the publisher is already past it (at {done})",
            )
        rows = self.store.read_all(after=global_position - 1, limit=1)
        if not rows or rows[0].global_position != global_position:
            raise SkipRefused(self.name, global_position, "no event is stored there")
        if global_position in self._skipped():
            raise SkipRefused(self.name, global_position, "it is already skipped")
        rec = rows[0]
        stream = skip_stream(self.name)
        e = PublishSkipped(
            self.name,
            global_position,
            rec.stream_id,
            rec.position,
            rec.type,
            reason,
            by,
        )
        name, data = _skips_codec.encode(e, Metadata(stream), recorded_at=now_micros())
        at = self.store.stream_position(stream) + 1
        self.store.append([NewRecord(stream, at, name, data)])
        return rec

    def skips(self) -> list[RecordedEvent]:
        """The skips recorded for this publisher, oldest first."""
        out: list[RecordedEvent] = []
        for rec in self.store.read_stream(skip_stream(self.name)):
            out.extend(
                _skips_codec.decode(
                    rec.stream_id, rec.position, rec.global_position, rec.type, rec.data
                )
            )
        return out

    def _skipped(self) -> set[int]:
        return {e.event.global_position for e in self.skips()}

    def _messages(
        self, rows: list[Record]
    ) -> tuple[list[_Message], int, PublishBlocked | None]:
        """The messages of ``rows`` up to the first unreadable event not skipped.

        Returns:
            The messages (key, value, headers), the global position they cover,
            and the :class:`PublishBlocked` error of the event that stopped them.
        """
        out: list[_Message] = []
        covered = rows[0].global_position - 1
        skipped: set[int] | None = None
        for rec in rows:
            if rec.stream_id.startswith(_SKIPS_PREFIX):  # operators' records
                covered = rec.global_position
                continue
            try:
                decoded = self.codec.decode(
                    rec.stream_id, rec.position, rec.global_position, rec.type, rec.data
                )
            except Exception as exc:  # a bad row, or an upcaster (user code)
                if skipped is None:
                    skipped = self._skipped()
                if rec.global_position in skipped:
                    covered = rec.global_position
                    continue
                where = f"stream {rec.stream_id!r} position {rec.position}, {rec.type}"
                return (
                    out,
                    covered,
                    PublishBlocked(self.name, rec.global_position, where, str(exc)),
                )
            for i, ev in enumerate(decoded):
                eid = event_id(ev, i)
                value = _json.encode(
                    PublishedEvent(
                        eid,
                        ev.type,
                        ev.schema,
                        ev.stream_id,
                        ev.position,
                        ev.global_position,
                        ev.recorded_at,
                        ev.workflow,
                        ev.command_id,
                        ev.correlation_id,
                        msgspec.to_builtins(ev.event),
                    )
                )
                headers = [
                    (EVENT_ID, eid.encode()),
                    ("nonstop-type", ev.type.encode()),
                    ("nonstop-schema", str(ev.schema).encode()),
                ]
                out.append((ev.stream_id, value, headers))
            covered = rec.global_position
        return out, covered, None

    async def _page(self, producer: AIOKafkaProducer) -> int:
        """Produce one page; store the position once the broker has acked it.

        Returns:
            0 when there was nothing new, else a positive number.

        Raises:
            PublishBlocked: an event cannot be read; what precedes it in the
                page is published and tracked first.
        """
        after = await asyncio.to_thread(self.store.tracking_position, self.name)
        rows = await asyncio.to_thread(
            self.store.read_all, after=after or 0, limit=self.page
        )
        if not rows:
            return 0
        messages, covered, blocked = self._messages(rows)
        futures = [
            await producer.send(self.topic, value, key=key.encode(), headers=headers)
            for key, value, headers in messages
        ]
        await asyncio.gather(*futures)  # every message acked before we move on
        if covered > (after or 0):
            await asyncio.to_thread(
                self.store.append, [], tracking=Tracking(self.name, covered)
            )
        self.published += len(futures)
        if blocked is not None:
            raise blocked
        return max(len(futures), 1)
