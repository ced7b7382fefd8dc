"""The publisher tails a store that runs several appends at once: each event once."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from engine import Engine
from engine.kafka.publisher import Publisher
from engine.store.postgres import PostgresStore
from tests.kafka import tally
from tests.kafka.conftest import create_topic
from tests.kafka.test_publisher import _codecs, _consume

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.mark.timeout(180)
async def test_publishing_while_engines_write_concurrently_sends_each_event_once(
    kafka, pg_url
):
    PostgresStore(pg_url, appends="concurrent").close()
    _, codec = _codecs()
    topic = await create_topic(kafka)
    store = PostgresStore(pg_url)
    pub = Publisher(store, codec, kafka, topic)
    writing = True

    async def publish() -> int:
        sent = 0
        while writing:
            sent += await pub.publish_pending()
            await asyncio.sleep(0.01)
        return sent

    publisher = asyncio.create_task(publish())
    ids = [f"k{i}" for i in range(32)]
    async with (
        Engine(pg_url, tally.registry()) as a,
        Engine(pg_url, tally.registry()) as b,
    ):

        async def run(engine: Engine, instance: str) -> None:
            await engine.start("tally", tally.Open(), instance_id=instance)
            for n in range(4):
                await engine.send(instance, tally.Add(n))

        await asyncio.gather(*(run((a, b)[i % 2], x) for i, x in enumerate(ids)))
    writing = False
    sent = await publisher
    total = 32 * 5
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        sent < total
        or store.last_global_position() > (store.tracking_position(pub.name) or 0)
    ):
        sent += await pub.publish_pending()
        await asyncio.sleep(0.01)
    assert sent >= total  # the tally's events, and any health buckets flushed
    assert store.tracking_position(pub.name) == store.last_global_position()
    store.close()
    records = await _consume(kafka, topic, sent)
    keys = [json.loads(r.value)["id"] for r in records]  # type: ignore[attr-defined]
    assert len(keys) == len(set(keys))  # each event once
    tallied = [k for k in keys if k.split(":")[0] in set(ids)]
    assert len(tallied) == total
