"""Laws of the worker's batches, without a broker: redelivery never applies twice.

Kafka delivers at least once: after a restart or a rebalance a partition may
be fetched again from an older offset. Whatever is redelivered, and wherever
the worker restarts, each message is applied (or dead-lettered) exactly once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, open_store
from engine.kafka.worker import Worker, tracking_name
from engine.store import EventStore
from tests.kafka import tally

TP = TopicPartition("orders", 0)


@dataclass
class _Record:
    """What the worker reads of an aiokafka ConsumerRecord."""

    offset: int
    value: bytes
    key: bytes = b"t"
    topic: str = "orders"
    partition: int = 0
    timestamp: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class _Consumer:
    """Stands in for the consumer during assignment: it only records seeks."""

    def __init__(self) -> None:
        self.position: int | None = None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position = offset

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.position = 0

    async def commit(self, offsets: object) -> None:
        return None


async def _worker(store: EventStore) -> tuple[Worker, _Consumer]:
    engine = Engine(store, tally.registry())
    worker = Worker(
        engine,
        bootstrap="unused:9092",
        topics=["orders"],
        group="g",
        mapping=tally.mapping,
    )
    consumer = _Consumer()
    await worker._assigned(consumer, [TP])  # type: ignore[arg-type]
    return worker, consumer


@settings(max_examples=40, deadline=None)
@given(
    adds=st.lists(st.integers(-3, 20), min_size=1, max_size=40),
    rounds=st.lists(
        st.tuples(st.integers(0, 40), st.integers(1, 15), st.booleans()),
        min_size=1,
        max_size=8,
    ),
)
def test_redelivery_and_restarts_apply_each_message_once(adds, rounds):
    messages = [json.dumps({"open": True}).encode()]
    messages += [json.dumps({"add": n}).encode() for n in adds]

    async def main() -> None:
        store = open_store("memory://")
        worker, consumer = await _worker(store)
        for back, size, restart in rounds:
            if restart:  # a new process: cold cache, offsets from the store only
                worker, consumer = await _worker(store)
            # Kafka resumes where the consumer was told to seek, or earlier.
            assert consumer.position is not None
            start = max(0, consumer.position - back)
            recs = [_Record(o, messages[o]) for o in range(start, len(messages))][:size]
            if recs:
                await worker._process(consumer, {TP: recs})  # type: ignore[arg-type]
                consumer.position = recs[-1].offset + 1
        # Finally everything is delivered again from the start.
        worker, consumer = await _worker(store)
        recs = [_Record(o, m) for o, m in enumerate(messages)]
        await worker._process(consumer, {TP: recs})  # type: ignore[arg-type]
        info = await worker.engine.get("t")
        good = [n for n in adds if n >= 0]
        assert (info.state.total, info.state.count) == (sum(good), len(good))
        letters = store.dead_letters()
        assert sorted(x.letter.offset for x in letters) == [
            i + 1 for i, n in enumerate(adds) if n < 0
        ]
        assert store.tracking_position(tracking_name("g", "orders", 0)) == len(messages)

    asyncio.run(main())
