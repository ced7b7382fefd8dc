"""Projections follow a store that runs several appends at once, exactly once."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine.store.postgres import PostgresStore
from projections import Runner
from tests.projections.conftest import Log, read_totals, tally

pytestmark = pytest.mark.postgres


@pytest.mark.timeout(120)
async def test_a_runner_wakes_on_notify_and_counts_every_event_once(pg_url):
    store = PostgresStore(pg_url, appends="concurrent")
    logs = [Log(store) for _ in range(6)]

    def write(n: int) -> None:
        for i in range(40):
            logs[n].add(f"w{n}-{i % 5}", 1, 2)

    with Runner(pg_url, [tally()]) as runner:
        stop = asyncio.Event()
        # Polling alone would take 60 s: the post-commit notification wakes it.
        task = asyncio.create_task(runner.run(stop, max_poll=60.0))
        try:
            threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
            for t in threads:
                t.start()
            await asyncio.to_thread(lambda: [t.join(60) for t in threads])
            last = max(r.global_position for r in store.read_all(limit=10_000))
            head = store.last_global_position()
            await runner.wait_for("tally", max(last, head), timeout=60)
            gp = await asyncio.to_thread(logs[0].add, "after", 0, 5)
            await runner.wait_for("tally", gp, timeout=30)
        finally:
            stop.set()
            await task
        expected: dict[str, tuple[int, int]] = {}
        for log in logs:
            expected.update(log.expected())
        assert read_totals(runner.db) == expected
    store.close()
