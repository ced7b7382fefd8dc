"""The publisher: global order, keys, headers, upcasting, tracked position."""

from __future__ import annotations

import json

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from engine import Engine, open_store
from engine.core.codec import EventCodec
from engine.core.events import EventTypeRegistry, Metadata, Started
from engine.kafka.publisher import EVENT_ID, Publisher
from engine.store import NewRecord
from tests.kafka import tally
from tests.kafka.conftest import create_topic
from upcasters import UpcasterRegistry

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


class MeasuredV1(msgspec.Struct, frozen=True):
    celsius: int


class MeasuredV2(msgspec.Struct, frozen=True):
    kelvin: float


def _codecs() -> tuple[EventCodec, EventCodec]:
    """A codec at schema 1 of ``kafkatest.Measured`` and one at schema 2."""
    old_types = EventTypeRegistry()
    old_types.register(MeasuredV1, "kafkatest.Measured", 1)
    types = EventTypeRegistry()
    types.register(Started, "nonstop.Started")
    types.register(tally.Added, "kafkatest.Added")
    types.register(MeasuredV2, "kafkatest.Measured", 2)
    ups = UpcasterRegistry()

    @ups.upcaster("kafkatest.Measured", from_version=1)
    def to_kelvin(p: dict[str, object]) -> dict[str, object]:
        assert isinstance(p["celsius"], int)
        return {"kelvin": p["celsius"] + 273.15}

    codec = EventCodec(types)
    codec.use_upcasters(ups)
    return EventCodec(old_types), codec


async def _consume(kafka: str, topic: str, count: int) -> list[object]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[object] = []
    try:
        while len(got) < count:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, f"only {len(got)} of {count} messages arrived"
            for recs in batch.values():
                got.extend(recs)
    finally:
        await consumer.stop()
    return got


async def test_events_are_published_in_order_keyed_upcast_and_once(kafka, pg_url):
    old, codec = _codecs()
    async with Engine(pg_url, tally.registry()) as engine:
        for key in ("a", "b", "c"):
            await engine.start("tally", tally.Open(), instance_id=key)
        for i in range(30):
            await engine.send("abc"[i % 3], tally.Add(i))
    store = open_store(pg_url)
    try:
        name, data = old.encode(MeasuredV1(20), Metadata("sensors@1"), recorded_at=1)
        store.append([NewRecord("sensor-1", 1, name, data)])
        topic = await create_topic(kafka)
        pub = Publisher(store, codec, kafka, topic)
        assert await pub.publish_pending() == 34
        assert await pub.publish_pending() == 0  # its position is tracked
        assert store.tracking_position(pub.name) == store.last_global_position()
    finally:
        store.close()
    records = await _consume(kafka, topic, 34)
    values = [json.loads(r.value) for r in records]  # type: ignore[attr-defined]
    by_key: dict[bytes, list[int]] = {}
    for r, v in zip(records, values, strict=True):
        headers = dict(r.headers)  # type: ignore[attr-defined]
        assert r.key == v["stream"].encode()  # type: ignore[attr-defined]
        assert headers[EVENT_ID].decode() == v["id"] == f"{v['stream']}:{v['position']}"
        assert headers["nonstop-type"].decode() == v["type"]
        by_key.setdefault(r.key, []).append(v["global_position"])  # type: ignore[attr-defined]
    # Per instance, the global order holds (one partition per key).
    assert all(g == sorted(g) for g in by_key.values())
    assert sorted(len(g) for g in by_key.values()) == [1, 11, 11, 11]
    (measured,) = [v for v in values if v["type"] == "kafkatest.Measured"]
    assert measured["schema"] == 2 and measured["data"] == {"kelvin": 293.15}
    adds = sorted(v["data"]["n"] for v in values if v["type"] == "kafkatest.Added")
    assert adds == list(range(30))


async def test_a_restarted_publisher_goes_on_from_its_position(kafka, pg_url):
    _, codec = _codecs()
    topic = await create_topic(kafka)
    async with Engine(pg_url, tally.registry()) as engine:
        await engine.start("tally", tally.Open(), instance_id="x")
        first = Publisher(engine.store, codec, kafka, topic)
        assert await first.publish_pending() == 1
        await engine.send("x", tally.Add(5))
        again = Publisher(engine.store, codec, kafka, topic)
        assert await again.publish_pending() == 1
    records = await _consume(kafka, topic, 2)
    ids = [dict(r.headers)[EVENT_ID] for r in records]  # type: ignore[attr-defined]
    assert ids == [b"x:1", b"x:2"]
