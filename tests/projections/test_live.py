"""Live follow: LISTEN/NOTIFY on PostgreSQL, polling with backoff on SQLite."""

from __future__ import annotations

import asyncio

import pytest

from engine.store import open_store
from projections import Runner
from tests.projections.conftest import Log, read_totals, tally


async def _follow(runner: Runner, log: Log, **run_args: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop, **run_args))
    try:
        for i in range(5):
            gp = await asyncio.to_thread(log.add, f"live{i}", 0, i + 1)
            await runner.wait_for("tally", gp, timeout=5)
            assert read_totals(runner.db)[f"live{i}"] == (i + 1, 1)
        gp = await asyncio.to_thread(log.add, "live0", 10)
        await runner.wait_for("tally", gp, timeout=5)
        assert read_totals(runner.db)["live0"] == (11, 2)
    finally:
        stop.set()
        await task


@pytest.mark.postgres
async def test_postgres_wakes_on_notify(pg_url):
    store = open_store(pg_url)
    log = Log(store)
    log.add("before", 0, 7)
    with Runner(pg_url, [tally()]) as runner:
        assert runner.listen == pg_url
        # Polling alone would take 60 s: only a notification wakes it in time.
        await _follow(runner, log, max_poll=60.0)
        assert read_totals(runner.db)["before"] == (7, 1)
    store.close()


async def test_sqlite_polls_with_backoff(sqlite_url):
    store = open_store(sqlite_url)
    log = Log(store)
    with Runner(sqlite_url, [tally()]) as runner:
        assert runner.listen is None
        await _follow(runner, log, min_poll=0.005, max_poll=0.05)
    store.close()


async def test_notify_wakes_a_polling_runner_at_once(sqlite_url):
    store = open_store(sqlite_url)
    log = Log(store)
    with Runner(sqlite_url, [tally()]) as runner:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop, min_poll=60.0, max_poll=60.0))
        try:
            await runner.wait_for("tally", 0, timeout=5)  # first round done
            gp = log.add("x", 0, 3)
            runner.notify()
            await runner.wait_for("tally", gp, timeout=5)
            assert read_totals(runner.db) == {"x": (3, 1)}
        finally:
            stop.set()
            await task


async def test_several_projections_follow_concurrently(sqlite_url):
    from projections import Projection, Tx

    store = open_store(sqlite_url)
    log = Log(store)
    starts = Projection("starts", tables=["n"])

    @starts.setup
    def create(tx: Tx) -> None:
        tx.execute(f"CREATE TABLE {tx.table('n')} (stream TEXT PRIMARY KEY)")

    @starts.on("nonstop.Started")
    def started(tx: Tx, e) -> None:
        tx.execute(f"INSERT INTO {tx.table('n')} (stream) VALUES (?)", (e.stream_id,))

    with Runner(sqlite_url, [tally(), starts]) as runner:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop, max_poll=0.05))
        try:
            gp = await asyncio.to_thread(log.add, "s", 0, 4)
            await runner.wait_for("tally", gp, timeout=5)
            await runner.wait_for("starts", gp, timeout=5)
            assert read_totals(runner.db) == {"s": (4, 1)}
            assert runner.db.query("SELECT stream FROM starts_n") == [("s",)]
        finally:
            stop.set()
            await task
    store.close()


async def test_wait_for_times_out(sqlite_url):
    with Runner(sqlite_url, [tally()]) as runner, pytest.raises(TimeoutError):
        await runner.wait_for("tally", 1, timeout=0.05)


@pytest.mark.postgres
async def test_a_lost_read_model_connection_is_reopened(pg_url):
    import psycopg

    from tests.conftest import PG_URL

    store = open_store(pg_url)
    log = Log(store)
    with Runner(pg_url, [tally()]) as runner:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop, max_poll=0.2))
        try:
            gp = await asyncio.to_thread(log.add, "a", 0, 1)
            await runner.wait_for("tally", gp, timeout=5)
            pid = runner.db._conn.info.backend_pid
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            gp = await asyncio.to_thread(log.add, "a", 2)
            await runner.wait_for("tally", gp, timeout=10)
            assert runner.db._conn.info.backend_pid != pid
            assert read_totals(runner.db) == {"a": (3, 2)}
        finally:
            stop.set()
            await task
    store.close()
