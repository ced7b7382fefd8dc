"""PostgreSQL goes away under load: the worker waits, resumes, loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

from engine import Engine, open_store
from engine.kafka.worker import Worker
from tests.kafka import tally
from tests.kafka.conftest import FAST_GROUP, Produced, create_topic, tracked, wait_until
from tests.kafka.test_exactly_once import _check, _feed, _open
from tests.proxy import Proxy

OUTAGE_RETRIES = 3
"""Failed attempts the worker makes while the database is away."""

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.timeout(600)
async def test_the_worker_waits_for_the_database_and_resumes(kafka, pg_url):
    parts = urlsplit(pg_url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    topic = await create_topic(kafka)
    produced = Produced()
    await _open(kafka, topic, produced)
    total = 6_000
    gate = asyncio.Event()
    feeding = asyncio.create_task(_feed(kafka, topic, produced, total, gate))
    direct = open_store(pg_url)
    async with Engine(_through(pg_url, proxy.port), tally.registry()) as engine:
        worker = Worker(
            engine,
            bootstrap=kafka,
            topics=[topic],
            group="g",
            mapping=tally.mapping,
            max_batch=200,
            backoff=(0.05, 0.5),
            consumer_options=FAST_GROUP,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))

        async def working() -> bool:
            if task.done():
                task.result()
            return worker.stats.applied > 500

        await wait_until(working, 60, "the worker to apply messages")
        proxy.cut()  # the database goes away, with the second half to come
        gate.set()
        seen = worker.stats.retries

        def retried(times: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                if task.done():
                    task.result()
                return worker.stats.retries >= seen + times

            return check

        # Once the worker has met the outage, the commit in flight has landed
        # or failed: nothing more can reach the database.
        await wait_until(retried(1), 90, "the worker to meet the outage")
        during = await asyncio.to_thread(tracked, direct, "g", topic, 3)
        # The database stays away while the worker retries a few more times.
        await wait_until(retried(1 + OUTAGE_RETRIES), 90, "the worker to retry")
        assert await asyncio.to_thread(tracked, direct, "g", topic, 3) == during
        assert not task.done()  # the worker waits; it does not give up
        proxy.start()
        await feeding

        async def done() -> bool:
            if task.done():
                task.result()
            now = await asyncio.to_thread(tracked, engine.store, "g", topic, 3)
            return now == produced.ends

        await wait_until(done, 90, "the worker to finish after the outage")
        stop.set()
        await task
    proxy.close()
    direct.close()
    assert worker.stats.dead == 0  # a transient failure is never a dead letter
    await _check(pg_url, total)
