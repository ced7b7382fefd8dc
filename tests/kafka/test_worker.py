"""The worker against a real broker and PostgreSQL: apply, dead-letter, resume."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer

from engine import Engine
from engine.kafka.deadletters import replay
from engine.kafka.worker import Worker
from tests.kafka import tally
from tests.kafka.conftest import (
    FAST_GROUP,
    Produced,
    create_topic,
    produce,
    tracked,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _add(key: str, n: int) -> tuple[bytes, bytes]:
    return key.encode(), json.dumps({"add": n}).encode()


async def _drain(
    engine: Engine, worker: Worker, topic: str, produced: Produced
) -> None:
    """Run the worker until the store has tracked every message of ``topic``."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    ends = produced.ends

    async def done() -> bool:
        if task.done():
            task.result()  # surface a crash
        now = await asyncio.to_thread(tracked, engine.store, worker.group, topic, 3)
        return now == ends

    try:
        await wait_until(done, 60, "the worker to track every offset")
    finally:
        stop.set()
        await task


async def test_messages_apply_and_bad_ones_are_dead_lettered(kafka, pg_url):
    topic = await create_topic(kafka)
    produced = Produced()
    keys = [f"tally-{i}" for i in range(6)]
    good = [(k.encode(), b'{"open": true}') for k in keys]
    good += [_add(keys[i % 6], i + 1) for i in range(300)]
    bad = [
        (b"tally-0", b"{not json"),  # cannot decode: mapping fails
        (b"tally-1", json.dumps({"add": -5}).encode()),  # the workflow rejects it
        (b"nobody", json.dumps({"add": 1}).encode()),  # unknown instance
        (None, b"{}"),  # no key: mapping fails
    ]
    skipped = [(b"tally-2", b"{}")]  # the mapping returns None
    # Opens first (one partition per key keeps them before the adds).
    await produce(kafka, topic, good[:6], produced)
    await produce(kafka, topic, [*good[6:150], *bad, *skipped, *good[150:]], produced)

    async with Engine(pg_url, tally.registry()) as engine:
        worker = Worker(
            engine,
            bootstrap=kafka,
            topics=[topic],
            group="g1",
            mapping=tally.mapping,
            consumer_options=FAST_GROUP,
        )
        await _drain(engine, worker, topic, produced)
        assert worker.stats.dead == 4
        assert worker.stats.skipped == 1
        for i, key in enumerate(keys):
            info = await engine.get(key)
            expected = [n + 1 for n in range(300) if n % 6 == i]
            assert (info.state.total, info.state.count) == (sum(expected), 50)
        letters = engine.store.dead_letters()
    assert sorted(((x.letter.key, x.letter.value) for x in letters), key=repr) == (
        sorted(bad, key=repr)
    )
    reasons = {x.letter.value: x.letter.reason for x in letters}
    assert "mapping failed" in reasons[b"{not json"]
    assert "negative" in reasons[json.dumps({"add": -5}).encode()]
    assert "UnknownInstance" in reasons[json.dumps({"add": 1}).encode()]
    assert all(x.letter.topic == topic and x.letter.consumer == "g1" for x in letters)

    # The dead-letter topic got them too, with the reason in a header.
    consumer = AIOKafkaConsumer(
        f"{topic}.deadletters", bootstrap_servers=kafka, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        got: list[tuple[bytes | None, dict[str, bytes]]] = []
        while len(got) < 4:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "the dead-letter topic did not get every letter"
            for recs in batch.values():
                got += [(r.value, dict(r.headers)) for r in recs]
    finally:
        await consumer.stop()
    assert sorted(v for v, _ in got) == sorted(v for _, v in bad)
    assert all(b"negative" in h["nonstop-reason"] for v, h in got if v == bad[1][1])
    assert all(h["nonstop-origin"].startswith(topic.encode()) for _, h in got)


async def test_a_restarted_worker_resumes_from_the_stored_offsets(kafka, pg_url):
    topic = await create_topic(kafka)
    produced = Produced()
    await produce(kafka, topic, [(b"t", b'{"open": true}')], produced)
    await produce(kafka, topic, [_add("t", 1) for _ in range(100)], produced)
    async with Engine(pg_url, tally.registry()) as engine:
        first = Worker(
            engine,
            bootstrap=kafka,
            topics=[topic],
            group="g",
            mapping=tally.mapping,
            consumer_options=FAST_GROUP,
        )
        await _drain(engine, first, topic, produced)
    await produce(kafka, topic, [_add("t", 10) for _ in range(50)], produced)
    # A new engine and worker, and a Kafka group whose own offsets say nothing:
    # only the offsets in the store can tell where to go on.
    async with Engine(pg_url, tally.registry()) as engine:
        second = Worker(
            engine,
            bootstrap=kafka,
            topics=[topic],
            group="g",
            mapping=tally.mapping,
            consumer_options=FAST_GROUP,
        )
        await _drain(engine, second, topic, produced)
        info = await engine.get("t")
    assert (info.state.total, info.state.count) == (600, 150)
    assert second.stats.applied == 50


async def test_a_replayed_dead_letter_applies_once(kafka, pg_url):
    topic = await create_topic(kafka)
    produced = Produced()
    await produce(kafka, topic, [(b"late", json.dumps({"add": 7}).encode())], produced)
    async with Engine(pg_url, tally.registry()) as engine:
        worker = Worker(
            engine,
            bootstrap=kafka,
            topics=[topic],
            group="g",
            mapping=tally.mapping,
            consumer_options=FAST_GROUP,
        )
        await _drain(engine, worker, topic, produced)
        (letter,) = engine.store.dead_letters()
        assert "UnknownInstance" in letter.letter.reason
        await engine.start("tally", tally.Open(), instance_id="late")
        await replay(engine.store, kafka, [letter.id])
        assert engine.store.dead_letters() == []
        (marked,) = engine.store.dead_letters(include_replayed=True)
        assert marked.replayed_to == topic
        produced.ends[letter.letter.partition] += 1  # the replayed copy
        await _drain(engine, worker, topic, produced)
        info = await engine.get("late")
    assert (info.state.total, info.state.count) == (7, 1)
