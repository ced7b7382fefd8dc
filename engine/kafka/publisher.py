"""The publisher: an outbox relay from the event store to a Kafka topic.

Committed events are read in global order, decoded through the engine's codec
(so older schemas arrive upcast to the current one), and produced to one topic
keyed by instance id: all events of an instance land on one partition, in
order. Once the broker has acknowledged a page, its last global position is
stored as the publisher's tracking record. Delivery is at-least-once: a crash
after the acknowledgement and before the tracking write publishes the page
again, with the same ``nonstop-event-id`` header (``<stream>:<position>``), by
which consumers deduplicate.
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

from engine.events import EventCodec, RecordedEvent
from engine.kafka.errors import BrokerUnavailable
from engine.kafka.worker import TRANSIENT
from engine.store import EventStore, Tracking
from engine.store.retry import Backoff, until_stopped

__all__ = ["EVENT_ID", "PublishedEvent", "Publisher", "event_id"]

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

    async def _page(self, producer: AIOKafkaProducer) -> int:
        """Produce one page; store the position once the broker has acked it.

        Returns:
            0 when there was nothing new, else a positive number.
        """
        after = await asyncio.to_thread(self.store.tracking_position, self.name)
        rows = await asyncio.to_thread(
            self.store.read_all, after=after or 0, limit=self.page
        )
        if not rows:
            return 0
        futures = []
        for rec in rows:
            decoded = self.codec.decode(
                rec.stream_id, rec.position, rec.global_position, rec.type, rec.data
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
                futures.append(
                    await producer.send(
                        self.topic, value, key=ev.stream_id.encode(), headers=headers
                    )
                )
        await asyncio.gather(*futures)  # every message acked before we move on
        last = rows[-1].global_position
        await asyncio.to_thread(
            self.store.append, [], tracking=Tracking(self.name, last)
        )
        self.published += len(futures)
        return max(len(futures), 1)
