"""A Tansu broker for the whole Kafka test session, and helpers to feed it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.kafka.broker import TansuBroker
from engine.kafka.worker import tracking_name
from engine.store import EventStore

FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 400}
"""Consumer options: the group notices joins and departures within seconds."""


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """``HOST:PORT`` of a Tansu broker started for this test session."""
    with TansuBroker() as broker:
        yield broker.bootstrap


async def create_topic(bootstrap: str, partitions: int = 3) -> str:
    """A new topic with a unique name."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


class Produced:
    """The next offset of each partition after what a test produced.

    The producer's acknowledgements give the offsets: Tansu's ListOffsets
    (latest) answers the base offset of the last record batch plus one, not the
    high watermark, so ``end_offsets`` cannot be used.
    """

    def __init__(self, partitions: int = 3) -> None:
        self.ends = dict.fromkeys(range(partitions), 0)

    @property
    def total(self) -> int:
        return sum(self.ends.values())


async def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes | None]],
    produced: Produced | None = None,
    *,
    partition: int | None = None,
) -> None:
    """Produce ``(key, value)`` pairs and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, partition=partition)
            for key, value in messages
        ]
        for md in await asyncio.gather(*futures):
            if produced is not None:
                ends = produced.ends
                ends[md.partition] = max(ends[md.partition], md.offset + 1)
    finally:
        await producer.stop()


def tracked(
    store: EventStore, group: str, topic: str, partitions: int
) -> dict[int, int]:
    """The offsets stored for each partition (0 when none)."""
    return {
        p: store.tracking_position(tracking_name(group, topic, p)) or 0
        for p in range(partitions)
    }


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str
) -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
