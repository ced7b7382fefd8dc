"""Scenario "kafka": produce -> committed events in PostgreSQL, exactly-once effect.

A Tansu broker is started for the run. Each repetition makes a topic with 3
partitions and 300 counter instances, starts a ``Worker`` (one process, one
consumer in its group) and waits until it owns the three partitions. Then,
timed: one aiokafka producer sends the messages (each ``Increment`` of one
counter, keyed by instance id) while the worker applies them; the clock stops
when the offsets stored in PostgreSQL with the events reach the end of every
partition. Afterwards (untimed) the counters are checked to add up to the
number of messages: each applied exactly once.

The baseline is the same producer producing the same messages alone to a
fresh topic, timed until the broker has acknowledged the last one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.counter import Begin, Increment, registry
from bench.harness import BenchContext, Contender, Figure, Target, measure, store_url
from engine import Engine, Send
from engine.kafka.broker import TansuBroker
from engine.kafka.worker import Message, Worker, tracking_name

__all__ = ["DESCRIPTION", "mapping", "run"]

DESCRIPTION = """\
- **kafka** (`python -m bench --only kafka`): end to end, from one aiokafka
  producer to events committed in PostgreSQL by a `nonstop` Kafka worker with
  exactly-once effect (offsets stored with the events), 3 partitions, 300
  counter instances: at least 20,000 messages/s; beside the same producer
  producing alone to the same Tansu broker in the same run."""

PARTITIONS = 3
INSTANCES = 300
_ONE = Increment(1)
_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 400}


def mapping(msg: Message) -> Send:
    """One message: increment the counter named by its key."""
    assert msg.key is not None
    return Send(msg.key.decode(), _ONE)


async def _topic(bootstrap: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        await admin.close()
    return name


async def _produce(
    bootstrap: str, topic: str, keys: list[bytes], n: int
) -> dict[int, int]:
    """Send ``n`` messages round-robin over ``keys``; returns end offsets.

    Messages go in record batches (``create_batch``/``send_batch``), each key
    to the partition its crc32 picks: aiokafka's default murmur2 partitioner is
    pure Python and would cost more than everything else on this path.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    parts = [zlib.crc32(k) % PARTITIONS for k in keys]
    batches = {p: producer.create_batch() for p in range(PARTITIONS)}
    sent: list[tuple[asyncio.Future[Any], int]] = []

    async def flush(part: int) -> None:
        batch = batches[part]
        count = batch.record_count()
        sent.append((await producer.send_batch(batch, topic, partition=part), count))
        batches[part] = producer.create_batch()

    try:
        for i in range(n):
            j = i % len(keys)
            part = parts[j]
            if batches[part].append(key=keys[j], value=b"1", timestamp=None) is None:
                await flush(part)
                batches[part].append(key=keys[j], value=b"1", timestamp=None)
        for part in range(PARTITIONS):
            if batches[part].record_count():
                await flush(part)
        ends = dict.fromkeys(range(PARTITIONS), 0)
        for fut, count in sent:
            md = await fut  # the base offset of the batch
            ends[md.partition] = max(ends[md.partition], md.offset + count)
    finally:
        await producer.stop()
    return ends


async def _end_to_end(bootstrap: str, url: str, n: int) -> tuple[int, float]:
    topic = await _topic(bootstrap)
    group = f"g-{topic}"
    ids = [f"{topic}-{i}" for i in range(INSTANCES)]
    async with Engine(url, registry()) as engine:
        await asyncio.gather(
            *(engine.start("bench-counter", Begin(), instance_id=i) for i in ids)
        )
        worker = Worker(
            engine,
            bootstrap=bootstrap,
            topics=[topic],
            group=group,
            mapping=mapping,
            consumer_options=_GROUP,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        while len(worker.partitions) < PARTITIONS:  # joining is not timed
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        store = engine.store
        names = [tracking_name(group, topic, p) for p in range(PARTITIONS)]
        t0 = time.perf_counter()
        ends = await _produce(bootstrap, topic, [i.encode() for i in ids], n)
        target = {(topic, p): ends[p] for p in range(PARTITIONS)}
        # The worker's offsets move when a batch has committed: awaited, not
        # polled (a store query in this loop would stall the worker).
        while True:
            worker.committed.clear()
            if worker.offsets == target:
                break
            progress = asyncio.ensure_future(worker.committed.wait())
            await asyncio.wait([progress, task], return_when=asyncio.FIRST_COMPLETED)
            progress.cancel()
            if task.done():
                task.result()
        stored = await asyncio.to_thread(
            lambda: [store.tracking_position(x) for x in names]
        )
        elapsed = time.perf_counter() - t0
        if stored != [ends[p] for p in range(PARTITIONS)]:
            raise AssertionError(f"offsets stored {stored}, produced {ends}")
        stop.set()
        await task
        infos = await asyncio.gather(*(engine.get(i) for i in ids))
    total = sum(info.state.value for info in infos)
    if total != n:  # the effect must be exactly once, or the figure is void
        raise AssertionError(f"{n} messages produced, {total} applied")
    return n, elapsed


async def _producer_alone(bootstrap: str, n: int) -> tuple[int, float]:
    topic = await _topic(bootstrap)
    keys = [f"{topic}-{i}".encode() for i in range(INSTANCES)]
    t0 = time.perf_counter()
    await _produce(bootstrap, topic, keys, n)
    return n, time.perf_counter() - t0


def run(ctx: BenchContext) -> list[Figure]:
    n = 2_000 if ctx.quick else 100_000
    url = store_url(ctx.schema)
    with TansuBroker() as broker:
        subject = Contender(
            "nonstop Worker: produce -> committed in PostgreSQL",
            lambda: asyncio.run(_end_to_end(broker.bootstrap, url, n)),
        )
        alone = Contender(
            "aiokafka producer alone (to the broker)",
            lambda: asyncio.run(_producer_alone(broker.bootstrap, n)),
        )
        fig = measure(
            "kafka",
            "end to end, 3 partitions",
            unit="messages/s",
            what=f"{n:,} messages, 300 instances, exactly-once effect",
            subject=subject,
            baselines=[alone],
            reps=ctx.reps,
            target=Target(20_000),
        )
    return [fig]
