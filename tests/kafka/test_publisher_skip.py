"""A bad event stops the publisher at it; an operator skips it with a reason."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from engine import Engine, EventCodec, open_store
from engine.cli import main
from engine.core.errors import PublishBlocked, SkipRefused
from engine.kafka.publisher import EVENT_ID, Publisher
from engine.store import NewRecord
from tests.kafka import tally
from tests.kafka.conftest import create_topic

pytestmark = [pytest.mark.kafka]

APP = "tests.kafka.tally:registry"


async def _ids(kafka: str, topic: str) -> list[str]:
    """Every event id on ``topic`` so far (it has one partition per key)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[str] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500)
            if not batch:
                return got
            for recs in batch.values():
                got += [dict(r.headers)[EVENT_ID].decode() for r in recs]
    finally:
        await consumer.stop()


async def _log_with_a_bad_row(url: str) -> int:
    """27 good events, one corrupt row, 5 good events; the bad global position."""
    async with Engine(url, tally.registry()) as engine:
        await engine.start("tally", tally.Open(), instance_id="a")
        for n in range(26):
            await engine.send("a", tally.Add(n))
        engine.store.append([NewRecord("bad", 1, "kafkatest.Added", b"\x93\xc1junk")])
        bad = engine.store.last_global_position()
        await engine.start("tally", tally.Open(), instance_id="b")
        for n in range(4):
            await engine.send("b", tally.Add(n))
    return bad


async def test_a_bad_event_stops_it_there_and_a_skip_moves_it_on(kafka, sqlite_url):
    bad = await _log_with_a_bad_row(sqlite_url)
    topic = await create_topic(kafka, partitions=1)
    store = open_store(sqlite_url)
    try:
        for _ in range(3):  # restarts publish nothing twice
            pub = Publisher(store, EventCodec(), kafka, topic)
            with pytest.raises(PublishBlocked) as exc:
                await pub.publish_pending()
            assert exc.value.global_position == bad
            assert "stream 'bad' position 1" in str(exc.value)
            assert f"nonstop publish skip {bad}" in str(exc.value)
            assert store.tracking_position(pub.name) == bad - 1
        assert await _ids(kafka, topic) == [f"a:{p}" for p in range(1, 28)]

        with pytest.raises(SkipRefused, match="give a --reason"):
            pub.skip(bad, "  ")
        with pytest.raises(SkipRefused, match="already past it"):
            pub.skip(bad - 1, "published already")
        with pytest.raises(SkipRefused, match="no event is stored there"):
            pub.skip(bad + 1000, "nothing there")
        pub.skip(bad, "corrupt row, restored from backup elsewhere", by="ops")
        with pytest.raises(SkipRefused, match="already skipped"):
            pub.skip(bad, "again")

        assert await pub.publish_pending() == 5
        (skip,) = pub.skips()
        assert (skip.event.global_position, skip.event.stream_id) == (bad, "bad")
        assert (skip.event.by, skip.event.type) == ("ops", "kafkatest.Added")
        assert "corrupt row" in skip.event.reason
        assert await pub.publish_pending() == 0
        assert store.tracking_position(pub.name) == store.last_global_position()
    finally:
        store.close()
    ids = await _ids(kafka, topic)
    assert ids == [f"a:{p}" for p in range(1, 28)] + [f"b:{p}" for p in range(1, 6)]


def test_the_cli_says_where_it_stopped_and_skips_with_a_reason(
    kafka, sqlite_url, capsys
):
    bad = asyncio.run(_log_with_a_bad_row(sqlite_url))
    topic = asyncio.run(create_topic(kafka, partitions=1))
    base = ["--store", sqlite_url, "--app", APP]
    publish = [*base, "publish", "--kafka", kafka, "--topic", topic, "--once"]
    assert main(publish) == 2
    err = capsys.readouterr().err
    assert f"stopped at global position {bad}" in err
    assert "Everything before it is published" in err
    assert main([*base, "publish", "skips", "--topic", topic]) == 0
    assert "no skips" in capsys.readouterr().out
    skip = [*base, "publish", "skip", str(bad), "--topic", topic]
    assert main([*skip, "--reason", "corrupt", "--by", "ops"]) == 0
    assert f"will pass over global position {bad}" in capsys.readouterr().out
    assert main([*skip, "--reason", "twice"]) == 2
    assert "already skipped" in capsys.readouterr().err
    assert main(publish) == 0
    assert "published 5 events" in capsys.readouterr().out
    assert main([*base, "publish", "skips", "--topic", topic]) == 0
    out = capsys.readouterr().out
    assert str(bad) in out and "corrupt" in out and "ops" in out
    assert main([*base, "publish", "--once"]) == 2
    assert "publish needs --kafka and --topic" in capsys.readouterr().err
    values = asyncio.run(_ids(kafka, topic))
    assert len(values) == len(set(values)) == 32
