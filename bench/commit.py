"""Scenarios 1 and 2: committed transitions/s with 64 concurrent callers.

Each caller owns one counter instance and sends it ``Increment`` commands one
after another, each through its own ``Engine.send``; the engine's group commit
turns what is queued into one transaction. The baselines commit one row per
transaction from 64 threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from psycopg_pool import ConnectionPool

from bench.counter import Begin, Increment, encoded_stream, registry
from bench.harness import PG_URL, Contender, Figure, Target, measure, store_url
from engine import Engine, open_store

__all__ = ["DESCRIPTION", "drive_counters", "run_postgres", "run_sqlite"]

DESCRIPTION = """\
- **commit** (`python -m bench --only commit`): 64 concurrent callers (asyncio
  tasks on one `Engine`), each sending `Increment` commands to its own counter
  instance (`bench/counter.py`), one `Engine.send` per transition, for a fixed
  time; the figure is committed transitions per second, on PostgreSQL and SQLite.
  The engine's group commit writes whatever queued up while the previous
  transaction was in flight in one transaction. Baselines write one row per
  transaction from 64 threads, each with its own connection (as many
  connections as callers): the `eventsourcing` recorder (on PostgreSQL it takes
  `LOCK TABLE ... IN EXCLUSIVE MODE` and sends `NOTIFY` in every transaction) and
  the raw driver (`INSERT` + `COMMIT`); on PostgreSQL also the raw async driver
  (64 asyncio tasks on 64 `AsyncConnection`s), since nonstop runs async."""


CALLERS = 64
RAW_THREADS = f"raw psycopg INSERT+COMMIT ({CALLERS} threads, {CALLERS} connections)"
"""The baseline of the issue's goal: one connection per calling thread."""
_RAW_PG_DDL = (
    "CREATE TABLE IF NOT EXISTS {t} (stream_id text NOT NULL, position bigint NOT "
    "NULL, type text NOT NULL, data bytea NOT NULL, global_position bigserial, "
    "PRIMARY KEY (stream_id, position))"
)
_RAW_SQLITE_DDL = (
    "CREATE TABLE IF NOT EXISTS {t} (stream_id TEXT NOT NULL, position INTEGER NOT "
    "NULL, type TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (stream_id, position))"
)
_PAYLOAD = encoded_stream("x", 2)[1]


async def drive_counters(
    engine: Engine, ids: list[str], seconds: float
) -> tuple[int, float]:
    """Start a counter per id, then one task per id sends until the deadline.

    Returns the commands sent and the seconds they took; closes the engine.
    """
    await asyncio.gather(
        *(engine.start("bench-counter", Begin(), instance_id=i) for i in ids)
    )
    done = [0]
    deadline = time.perf_counter() + seconds

    async def caller(iid: str) -> None:
        while time.perf_counter() < deadline:
            await engine.send(iid, Increment(1))
            done[0] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in ids))
    elapsed = time.perf_counter() - t0
    await engine.close()
    return done[0], elapsed


def _engine_contender(url: str, seconds: float, tag: str) -> Contender:
    """64 asyncio tasks on one Engine, each sending to its own instance."""
    reg = registry()
    counter = [0]

    async def go() -> tuple[int, float]:
        counter[0] += 1
        engine = Engine(open_store(url), reg)
        ids = [f"{tag}-{counter[0]}-{i}" for i in range(CALLERS)]
        return await drive_counters(engine, ids, seconds)

    def run() -> tuple[int, float]:
        return asyncio.run(go())

    return Contender("nonstop Engine.send (64 tasks, group commit)", run)


def _threads(seconds: float, work: Callable[[int, int], None]) -> tuple[int, float]:
    """64 threads call ``work(thread, n)`` until the deadline; returns (done, s)."""
    counts = [0] * CALLERS
    deadline = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def loop(t: int) -> None:
        n = 0
        try:
            while time.perf_counter() < deadline:
                n += 1
                work(t, n)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        counts[t] = n - 1 if errors else n

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(CALLERS)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts), elapsed


# ------------------------------------------------------------- PostgreSQL


def run_postgres(schema: str, *, seconds: float, reps: int) -> list[Figure]:
    url = store_url(schema)
    run_id = [0]

    # eventsourcing's PostgreSQL recorder: LOCK TABLE + NOTIFY per transaction,
    # one pooled connection per thread (opened for the run, not timed).
    def es_run() -> tuple[int, float]:
        run_id[0] += 1
        r = run_id[0]
        es_store = PostgresDatastore(
            **_pg_conninfo(),
            schema=schema,
            originator_id_type="text",
            pool_size=CALLERS,
            max_overflow=0,
        )
        try:
            es = PostgresApplicationRecorder(es_store, events_table_name="es_commit")
            es.create_table()

            def work(t: int, n: int) -> None:
                es.insert_events(
                    [StoredEvent(f"es-{r}-{t}", n, _PAYLOAD.type, _PAYLOAD.data)]
                )

            return _threads(seconds, work)
        finally:
            es_store.close()

    # Raw psycopg: one INSERT + COMMIT per transition, a connection per thread.
    table = f'"{schema}".raw_commit'
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(_RAW_PG_DDL.format(t=table))
    insert = (
        f"INSERT INTO {table} (stream_id, position, type, data) VALUES (%s, %s, %s, %s)"
    )

    def raw_run() -> tuple[int, float]:
        run_id[0] += 1
        r = run_id[0]
        with ConnectionPool(
            PG_URL, min_size=CALLERS, max_size=CALLERS, open=True
        ) as pool:
            pool.wait()  # every connection open before the clock starts

            def work(t: int, n: int) -> None:
                with pool.connection() as conn:
                    conn.execute(
                        insert, (f"raw-{r}-{t}", n, _PAYLOAD.type, _PAYLOAD.data)
                    )

            return _threads(seconds, work)

    def raw_async_run() -> tuple[int, float]:
        run_id[0] += 1
        return asyncio.run(_raw_async(insert, run_id[0], seconds))

    fig = measure(
        "commit-postgres",
        "PostgreSQL: committed transitions/s, 64 concurrent callers",
        unit="transitions/s",
        what=(
            "64 asyncio tasks on one Engine, each Engine.send on its own counter "
            "instance, one after another; baselines commit one row per "
            "transaction from 64 threads on 64 connections, or from 64 async "
            "tasks on 64 connections"
        ),
        subject=_engine_contender(url, seconds, "pg"),
        baselines=[
            Contender("eventsourcing PostgresApplicationRecorder", es_run),
            Contender(RAW_THREADS, raw_run),
            Contender(
                f"raw psycopg async INSERT+COMMIT ({CALLERS} tasks, "
                f"{CALLERS} connections)",
                raw_async_run,
            ),
        ],
        reps=reps,
        targets=[Target(5_000), Target(2.5, ">=", against=RAW_THREADS)],
    )
    return [fig]


async def _raw_async(insert: str, r: int, seconds: float) -> tuple[int, float]:
    """``CALLERS`` asyncio tasks, each INSERT + COMMIT on its own connection."""
    conns = await asyncio.gather(
        *(
            psycopg.AsyncConnection.connect(PG_URL, autocommit=True)
            for _ in range(CALLERS)
        )
    )
    done = [0]
    deadline = time.perf_counter() + seconds

    async def caller(t: int, conn: psycopg.AsyncConnection[Any]) -> None:
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            await conn.execute(
                insert, (f"raw-a{r}-{t}", n, _PAYLOAD.type, _PAYLOAD.data)
            )
            done[0] += 1

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(t, c) for t, c in enumerate(conns)))
        return done[0], time.perf_counter() - t0
    finally:
        await asyncio.gather(*(c.close() for c in conns))


def _pg_conninfo() -> dict[str, Any]:
    info = psycopg.conninfo.conninfo_to_dict(PG_URL)
    return {
        "dbname": info.get("dbname", "postgres"),
        "host": info.get("host", "127.0.0.1"),
        "port": info.get("port", 5432),
        "user": info.get("user", "postgres"),
        "password": info.get("password", ""),
    }


# ----------------------------------------------------------------- SQLite


def run_sqlite(workdir: Path, *, seconds: float, reps: int) -> list[Figure]:
    url = f"sqlite:///{workdir / 'commit-nonstop.db'}"
    run_id = [0]

    es_store = SQLiteDatastore(
        str(workdir / "commit-es.db"), originator_id_type="text", pool_size=4
    )
    es = SQLiteApplicationRecorder(es_store, events_table_name="es_commit")
    es.create_table()

    def es_run() -> tuple[int, float]:
        run_id[0] += 1
        r = run_id[0]

        def work(t: int, n: int) -> None:
            es.insert_events(
                [StoredEvent(f"es-{r}-{t}", n, _PAYLOAD.type, _PAYLOAD.data)]
            )

        return _threads(seconds, work)

    # Raw sqlite3: SQLite has one writer, so the threads share one connection
    # behind a lock (per-thread connections would spin in the busy handler).
    conn = sqlite3.connect(
        str(workdir / "commit-raw.db"), isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(_RAW_SQLITE_DDL.format(t="raw_commit"))
    lock = threading.Lock()
    insert = "INSERT INTO raw_commit (stream_id, position, type, data) VALUES (?,?,?,?)"

    def raw_run() -> tuple[int, float]:
        run_id[0] += 1
        r = run_id[0]

        def work(t: int, n: int) -> None:
            with lock:
                conn.execute("BEGIN")
                conn.execute(insert, (f"raw-{r}-{t}", n, _PAYLOAD.type, _PAYLOAD.data))
                conn.execute("COMMIT")

        return _threads(seconds, work)

    try:
        fig = measure(
            "commit-sqlite",
            "SQLite: committed transitions/s, 64 concurrent callers",
            unit="transitions/s",
            what=(
                "the same load on a SQLite file (WAL); baselines commit one row per "
                "transaction from 64 threads on 64 connections, or 64 async tasks "
                "on 64 connections"
            ),
            subject=_engine_contender(url, seconds, "sq"),
            baselines=[
                Contender("eventsourcing SQLiteApplicationRecorder", es_run),
                Contender("raw sqlite3 INSERT+COMMIT (one connection)", raw_run),
            ],
            reps=reps,
            target=Target(10_000),
        )
    finally:
        conn.close()
        es_store.close()
    return [fig]
