"""Projection catch-up throughput and live-follow latency on PostgreSQL.

Catch-up: a counter projection (events per stream) folds a log of counter
instances into PostgreSQL, from position 0, in a fresh read-model schema each
repetition. Beside it, the ``eventsourcing`` library's ``ProjectionRunner``
does the same work (count events per aggregate into a PostgreSQL view, with its
tracking) over an application log of the same shape and the same number of
events in the same run. Both are timed after construction: ours after
``prepare()``, theirs from the end of the runner's constructor (its events
processed before then are not counted).

Live follow: with the runner following the store (LISTEN/NOTIFY), one event
is appended at a time and the time until the read model has committed it is
taken; beside it, the ``eventsourcing`` runner's time from ``save`` to its view
having tracked the event.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter as Tally
from collections.abc import Iterable
from functools import singledispatchmethod
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection as ESProjection
from eventsourcing.projection import ProjectionRunner
from psycopg.sql import SQL, Identifier

from bench.counter import encoded_stream
from bench.harness import (
    PG_URL,
    BenchContext,
    Contender,
    Figure,
    Target,
    measure,
    store_url,
    timed,
)
from engine.core.events import RecordedEvent
from engine.store import EventStore, open_store
from projections import ALL, Projection, Runner, Tx

__all__ = ["DESCRIPTION", "counter_projection", "run"]

DESCRIPTION = (
    "- **projection**: catch-up of a counter projection (events per instance) "
    "into PostgreSQL, events/s from position 0, beside the `eventsourcing` "
    "library's `ProjectionRunner` doing the same counting into a PostgreSQL view "
    "in the same run; and live follow, the median time from an append to the "
    "event being committed in the read model (LISTEN/NOTIFY wake-up), beside "
    "the `eventsourcing` runner's save-to-tracked time."
)
_ES_NAME = "eventsourcing ProjectionRunner"


def counter_projection() -> Projection:
    """Events per stream, written once per batch."""
    p = Projection("bench_counts", tables=["per_stream"])

    @p.setup
    def create(tx: Tx) -> None:
        tx.execute(
            f"CREATE TABLE {tx.table('per_stream')} "
            "(stream TEXT PRIMARY KEY, n BIGINT NOT NULL)"
        )

    @p.on_batch(ALL)
    def count(tx: Tx, events: Iterable[RecordedEvent]) -> None:
        t = tx.table("per_stream")
        counts = sorted(Tally(e.stream_id for e in events).items())
        upsert = f"ON CONFLICT (stream) DO UPDATE SET n = {t}.n + excluded.n"
        if tx.dialect == "postgres":  # one statement for the whole batch
            tx.execute(
                f"INSERT INTO {t} (stream, n) "
                f"SELECT * FROM unnest(?::text[], ?::bigint[]) {upsert}",
                ([s for s, _ in counts], [n for _, n in counts]),
            )
        else:
            tx.executemany(
                f"INSERT INTO {t} (stream, n) VALUES (?, ?) {upsert}", counts
            )

    return p


# ------------------------------------------------------- eventsourcing side


class _Counter(Aggregate):
    @event("Created")
    def __init__(self) -> None:
        self.n = 0

    @event("Incremented")
    def increment(self) -> None:
        self.n += 1


class _CounterApp(Application[Any]):
    pass


class _CounterView(PostgresTrackingRecorder):
    """Events per aggregate, tracked in the same transaction (the library's way)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table = f"{self.tracking_table_name}_counts"
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} "
                "(stream TEXT PRIMARY KEY, n BIGINT NOT NULL)"
            ).format(Identifier(self.datastore.schema), Identifier(self.table))
        )

    def incr(self, stream: str, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                f"INSERT INTO {self.datastore.schema}.{self.table} (stream, n) "
                "VALUES (%s, 1) ON CONFLICT (stream) "
                f"DO UPDATE SET n = {self.table}.n + 1",
                (stream,),
            )
            self._insert_tracking(curs, tracking)


class _CounterProjection(ESProjection[_CounterView]):
    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.incr(str(domain_event.originator_id), tracking)


def _es_env(schema: str) -> dict[str, str]:
    parts = urlsplit(PG_URL)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": schema,
        "CREATE_TABLE": "y",
        **{k.upper(): v[0] for k, v in parse_qs(parts.query).items()},
    }


def _es_projection(name: str) -> type[_CounterProjection]:
    return type(name, (_CounterProjection,), {"name": name})


def _create(schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def _es_populate(env: dict[str, str], streams: int, length: int) -> int:
    _create(env["POSTGRES_SCHEMA"])
    app = _CounterApp(env)
    try:
        aggs = [_Counter() for _ in range(streams)]
        for _ in range(length - 1):
            for a in aggs:
                a.increment()
        for i in range(0, streams, 50):
            app.save(*aggs[i : i + 50])
        return int(app.recorder.max_notification_id() or 0)
    finally:
        app.close()


# ---------------------------------------------------------------- helpers


def _populate(store: EventStore, streams: int, length: int, chunk: int = 10) -> int:
    """Counter instances, interleaved ``chunk`` events at a time (as group commit
    interleaves them)."""
    ids = [f"c-{i:06d}" for i in range(streams)]
    for first in range(1, length + 1, chunk):
        last = min(first + chunk - 1, length)
        batch = []
        for sid in ids:
            batch.extend(encoded_stream(sid, last, first=first))
            if len(batch) >= 20_000:
                store.append(batch)
                batch = []
        if batch:
            store.append(batch)
    return store.last_global_position()


def _schema(name: str) -> str:
    return store_url(name)


def _drop(schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# ---------------------------------------------------------------- figures


def _catch_up(
    ctx: BenchContext, store: EventStore, total: int, streams: int, length: int
) -> Figure:
    es_schema = f"{ctx.schema}_es"
    es_env = _es_env(es_schema)
    # The same number of events, in streams of the same length.
    es_total = _es_populate(es_env, streams, length)

    def ours() -> tuple[int, float]:
        rm = f"{ctx.schema}_rm_{uuid.uuid4().hex[:6]}"
        try:
            with Runner(
                store, [counter_projection()], db=_schema(rm), batch_size=5000
            ) as runner:
                runner.prepare()
                cpu: list[float] = []

                def catch_up() -> int:
                    c0 = time.process_time()
                    n = runner.catch_up()
                    cpu.append(time.process_time() - c0)
                    return n

                n, secs = timed(catch_up)
                got = runner.db.query("SELECT SUM(n) FROM bench_counts_per_stream")
                assert int(got[0][0]) == total, (got, total)
                # CPU per event steadies the wall-clock figure on a busy machine.
                print(f"  nonstop catch-up: {cpu[0] / n * 1e6:.2f} µs CPU per event")
                return n, secs
        finally:
            _drop(rm)

    def theirs() -> tuple[int, float]:
        cls = _es_projection(f"cnt_{uuid.uuid4().hex[:6]}")
        with ProjectionRunner(
            application_class=_CounterApp,
            projection_class=cls,
            view_class=_CounterView,
            env=es_env,
        ) as runner:
            # Timed from the end of its construction (app, view, subscription
            # thread), as ours is from after prepare(): the events it had
            # already processed by then are not counted.
            t0 = time.perf_counter()
            before = runner.view.max_tracking_id(runner.app.name) or 0
            runner.wait(es_total, timeout=600)
            secs = time.perf_counter() - t0
        return es_total - before, secs

    try:
        return measure(
            "projection",
            "catch-up into PostgreSQL",
            unit="events/s",
            what=f"counter projection from position 0 over {total:,} events "
            f"(the eventsourcing runner over {es_total:,}), both timed after "
            "construction",
            subject=Contender("nonstop Runner, batches of 5,000", ours),
            baselines=[Contender(_ES_NAME, theirs)],
            reps=ctx.reps,
            target=Target(100_000, ">="),
        )
    finally:
        _drop(es_schema)


def _ours_latency(store: EventStore, url: str, rm: str, count: int) -> list[float]:
    out: list[float] = []

    async def go() -> None:
        with Runner(store, [counter_projection()], db=_schema(rm), listen=url) as r:
            stop = asyncio.Event()
            task = asyncio.create_task(r.run(stop))
            try:
                await r.wait_for("bench_counts", store.last_global_position(), 60)
                sid = f"live-{uuid.uuid4().hex[:6]}"
                for pos in range(1, count + 1):
                    (rec,) = encoded_stream(sid, pos, first=pos)
                    t0 = time.perf_counter()
                    (gp,) = await asyncio.to_thread(store.append, [rec])
                    await r.wait_for("bench_counts", gp, 10)
                    out.append((time.perf_counter() - t0) * 1000)
            finally:
                stop.set()
                await task

    asyncio.run(go())
    return out


def _theirs_latency(env: dict[str, str], count: int) -> list[float]:
    out: list[float] = []
    cls = _es_projection(f"live_{uuid.uuid4().hex[:6]}")
    app = _CounterApp(env)
    try:
        agg = _Counter()
        app.save(agg)
        with ProjectionRunner(
            application_class=_CounterApp,
            projection_class=cls,
            view_class=_CounterView,
            env=env,
        ) as runner:
            runner.wait(app.recorder.max_notification_id(), timeout=60)
            for _ in range(count):
                agg.increment()
                t0 = time.perf_counter()
                (rec,) = app.save(agg)
                runner.wait(rec.notification.id, timeout=10)
                out.append((time.perf_counter() - t0) * 1000)
    finally:
        app.close()
    return out


def _latency(ctx: BenchContext, store: EventStore, url: str) -> Figure:
    count = 5 if ctx.quick else 100
    es_schema = f"{ctx.schema}_esl"
    env = _es_env(es_schema)
    _create(es_schema)
    ours: list[float] = []
    theirs: list[float] = []
    try:
        for rep in range(ctx.reps):
            rm = f"{ctx.schema}_rml_{rep}"
            try:
                ours.append(statistics.median(_ours_latency(store, url, rm, count)))
            finally:
                _drop(rm)
            theirs.append(statistics.median(_theirs_latency(env, count)))
            print(
                f"  [{rep + 1}/{ctx.reps}] live follow: nonstop {ours[-1]:.2f} ms, "
                f"eventsourcing {theirs[-1]:.2f} ms (median of {count})"
            )
    finally:
        _drop(es_schema)
    return Figure(
        "projection",
        "live follow latency (median)",
        "ms",
        f"append one event, wait until the read model committed it ({count} in a "
        "row, PostgreSQL LISTEN/NOTIFY)",
        "nonstop Runner.run",
        ours,
        {_ES_NAME: theirs},
        Target(100, "<="),
    )


def run(ctx: BenchContext) -> list[Figure]:
    """Catch-up throughput and live-follow latency."""
    streams, length = (20, 100) if ctx.quick else (2_000, 100)
    url = store_url(ctx.schema)
    store = open_store(url)
    try:
        total = _populate(store, streams, length)
        figures = [
            _catch_up(ctx, store, total, streams, length),
            _latency(ctx, store, url),
        ]
    finally:
        store.close()
    return figures
