"""A second Kafka client on the wire: librdkafka (confluent-kafka) against Tansu.

nonstop speaks Kafka through aiokafka; these tests check that what it consumes
and publishes is plain Kafka to another client implementation: messages
produced by librdkafka are applied once by the worker, and events the
publisher sends are read by a librdkafka consumer group with their keys and
headers. (Debian's kcat links librdkafka 2.0.2, which cannot parse Tansu's
ApiVersions v3 reply; see docs/kafka.md.)
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest

from engine import Engine
from engine.kafka.publisher import EVENT_ID, Publisher
from engine.kafka.worker import Worker
from tests.kafka import tally
from tests.kafka.conftest import FAST_GROUP, create_topic, tracked, wait_until

if os.environ.get("CI"):  # `make` installs it: under CI its absence is a failure
    import confluent_kafka as ck
else:
    ck = pytest.importorskip("confluent_kafka", reason="confluent-kafka not installed")

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]
) -> dict[int, int]:
    """Produce with librdkafka; return the next offset of each partition."""
    producer = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    ends: dict[int, int] = {}
    errors: list[object] = []

    def delivered(err: object, msg: ck.Message) -> None:
        if err is not None:
            errors.append(err)
            return
        p, o = msg.partition(), msg.offset()
        ends[p] = max(ends.get(p, 0), o + 1)

    for key, value in messages:
        producer.produce(topic, value, key, on_delivery=delivered)
    left = producer.flush(30)
    assert left == 0 and not errors, (left, errors)
    return ends


def _consume(bootstrap: str, topic: str, count: int) -> list[ck.Message]:
    """Read ``count`` messages as a librdkafka consumer group, committing offsets."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"interop-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[ck.Message] = []
    try:
        for _ in range(300):  # at most 300 polls of 0.1 s
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg)
            if len(got) == count:
                break
        if got:
            committed = consumer.commit(asynchronous=False)
            assert committed, "the group could not commit its offsets"
    finally:
        consumer.close()
    assert len(got) == count, f"only {len(got)} of {count} messages arrived"
    return got


async def test_messages_produced_by_librdkafka_are_applied_once(kafka, pg_url):
    topic = await create_topic(kafka)
    keys = [f"lib-{i}" for i in range(3)]
    ends = await asyncio.to_thread(
        _produce, kafka, topic, [(k.encode(), b'{"open": true}') for k in keys]
    )
    adds = [(keys[i % 3].encode(), json.dumps({"add": i}).encode()) for i in range(90)]
    more = await asyncio.to_thread(_produce, kafka, topic, adds)
    ends = {p: max(ends.get(p, 0), more.get(p, 0)) for p in range(3)}
    async with Engine(pg_url, tally.registry()) as engine:
        worker = Worker(
            engine,
            bootstrap=kafka,
            topics=[topic],
            group="interop",
            mapping=tally.mapping,
            consumer_options=FAST_GROUP,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))

        async def done() -> bool:
            if task.done():
                task.result()
            now = await asyncio.to_thread(tracked, engine.store, "interop", topic, 3)
            return now == {p: ends.get(p, 0) for p in range(3)}

        try:
            await wait_until(done, 60, "the worker to track every librdkafka offset")
        finally:
            stop.set()
            await task
        for i, key in enumerate(keys):
            info = await engine.get(key)
            expected = [n for n in range(90) if n % 3 == i]
            assert (info.state.total, info.state.count) == (sum(expected), 30)


async def test_published_events_reach_a_librdkafka_consumer_group(kafka, pg_url):
    from tests.kafka.test_publisher import _codecs

    _, codec = _codecs()
    topic = await create_topic(kafka)
    async with Engine(pg_url, tally.registry()) as engine:
        await engine.start("tally", tally.Open(), instance_id="r")
        for n in range(9):
            await engine.send("r", tally.Add(n))
        pub = Publisher(engine.store, codec, kafka, topic)
        assert await pub.publish_pending() == 10
    msgs = await asyncio.to_thread(_consume, kafka, topic, 10)
    ids = [dict(m.headers() or [])[EVENT_ID].decode() for m in msgs]
    assert ids == [f"r:{p}" for p in range(1, 11)]  # one key: one partition, in order
    assert all(m.key() == b"r" for m in msgs)
    values = [json.loads(m.value()) for m in msgs]
    assert [v["data"]["n"] for v in values if v["type"] == "kafkatest.Added"] == list(
        range(9)
    )
