"""Scenario 4: replay, i.e. rebuilding instance state from the store.

For each instance a fresh Engine (empty cache) reads its stream and folds it
with the workflow's reducer, through public calls only: ``Engine.get_many`` of
1,000 ids a call (batched), ``Engine.get`` one instance after another, and
``Engine.get`` from 64 tasks (whose cold loads are grouped into batched reads).
Baselines read the same rows: a raw driver SELECT of each instance's
rows (all columns, no decoding), and the ``eventsourcing`` recorder's
``select_events`` per instance and its notification log read in pages.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from psycopg.rows import tuple_row

from bench.bulk import es_application, fill_es, insert_es
from bench.bulk import es_ids as bulk_ids
from bench.commit import _pg_conninfo
from bench.counter import encoded_stream, registry
from bench.harness import PG_URL, Contender, Figure, Target, measure, store_url, timed
from engine import Engine, open_store
from engine.store import EventStore, NewRecord

__all__ = ["DESCRIPTION", "run_postgres", "run_sqlite"]

DESCRIPTION = """\
- **replay** (`python -m bench --only replay`): a fresh `Engine` (empty cache)
  rebuilds the state of many short instances from PostgreSQL and SQLite: read each
  stream, decode every event (typed msgpack), fold it with the reducer, through
  public calls only. *Batched* calls `Engine.get_many` with 1,000 ids a call
  (one query), against the raw driver's SELECT of the same rows
  (all columns, no decoding: what bounds any replay) and `eventsourcing`'s
  `Application.repository.get` of the same counter as an aggregate, one per
  instance, timed on 2,000 of them (also shown: its recorder's `select_events`
  per instance and its notification log). *One by one* awaits a cold
  `Engine.get` per instance, one after another (one query and one thread hop
  each), and shows `Engine.get` from 64 tasks beside it (their cold loads are
  grouped into batched reads). The *long stream* figure rebuilds one instance with
  many events (read in pages of 10,000)."""


STREAM_LEN = 10
ES_SAMPLE = 2_000
"""eventsourcing's per-instance baselines time this many instances (a rate
per event, like the others); all of them would take minutes."""
ES_GET = (
    f"eventsourcing Application.repository.get per instance ({ES_SAMPLE:,} of them)"
)
PAGE = 10_000
LONG_ID = "long-stream"


def _populate(store: EventStore, instances: int, long_len: int) -> list[str]:
    ids = [f"i{n:07d}" for n in range(instances)]
    batch: list[NewRecord] = []
    for iid in ids:
        batch.extend(encoded_stream(iid, STREAM_LEN))
        if len(batch) >= 5_000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    for first in range(1, long_len + 1, 10_000):
        last = min(first + 9_999, long_len)
        store.append(encoded_stream(LONG_ID, last, first=first))
    return ids


BATCH = 1_000


def _engine_contenders(
    store: EventStore, ids: list[str], *, check_value: int
) -> dict[str, Contender]:
    reg = registry()

    def load_each() -> tuple[int, float]:
        engine = Engine(store, reg, cache_size=len(ids) + 1)

        async def go() -> int:
            events = 0
            for iid in ids:
                info = await engine.get(iid)
                events += info.position
            assert info.state.value == check_value, info.state
            return events

        return timed(lambda: asyncio.run(go()))

    def load_many() -> tuple[int, float]:
        engine = Engine(store, reg)

        async def go() -> int:
            events = 0
            for i in range(0, len(ids), BATCH):
                loaded = await engine.get_many(ids[i : i + BATCH])
                assert len(loaded) == len(ids[i : i + BATCH])
                for info in loaded.values():
                    events += info.position
            assert info.state.value == check_value, info.state
            return events

        return timed(lambda: asyncio.run(go()))

    def get_all() -> tuple[int, float]:
        engine = Engine(store, reg, cache_size=len(ids) + 1)

        async def go() -> int:
            it: Iterator[str] = iter(ids)
            done = [0]

            async def worker() -> None:
                for iid in it:
                    info = await engine.get(iid)
                    done[0] += info.position

            await asyncio.gather(*(worker() for _ in range(64)))
            return done[0]

        return timed(lambda: asyncio.run(go()))

    def long_one() -> tuple[int, float]:
        engine = Engine(store, reg)

        async def go() -> int:
            position = (await engine.get(LONG_ID)).position
            return position

        return timed(lambda: asyncio.run(go()))

    return {
        "each": Contender("nonstop Engine.get, one instance at a time", load_each),
        "many": Contender(f"nonstop Engine.get_many, {BATCH:,} ids a call", load_many),
        "get": Contender("nonstop Engine.get from 64 tasks (async API)", get_all),
        "long": Contender("nonstop Engine.get of the long stream", long_one),
    }


def _figures(
    tag: str,
    db: str,
    store: EventStore,
    ids: list[str],
    long_len: int,
    *,
    reps: int,
    goals: bool,
    raw_per_instance: Callable[[], tuple[int, float]],
    raw_batched: Callable[[], tuple[int, float]],
    raw_long: Callable[[], tuple[int, float]],
    es: PostgresApplicationRecorder | SQLiteApplicationRecorder,
    es_app: Any,
    es_ids: list[uuid.UUID],
) -> list[Figure]:
    ours = _engine_contenders(store, ids, check_value=STREAM_LEN - 1)

    def es_get() -> tuple[int, float]:
        get = es_app.repository.get

        def go() -> int:
            events = 0
            for oid in es_ids[:ES_SAMPLE]:
                counter = get(oid)
                events += counter.version
            assert counter.value == STREAM_LEN - 1, counter.value
            return events

        return timed(go)

    def es_select() -> tuple[int, float]:
        return timed(lambda: sum(len(es.select_events(i)) for i in ids[:ES_SAMPLE]))

    def es_log() -> tuple[int, float]:
        def go() -> int:
            n, after = 0, 0
            while True:
                rows = es.select_notifications(after, PAGE, inclusive_of_start=False)
                n += len(rows)
                if len(rows) < PAGE:
                    return n
                after = rows[-1].id

        return timed(go)

    def es_long() -> tuple[int, float]:
        return timed(lambda: len(es.select_events(LONG_ID)))

    n = len(ids)
    raw_each = Contender(
        f"raw {tag} SELECT per instance (no decoding)", raw_per_instance
    )
    raw_many = f"raw {tag} SELECT of {BATCH:,} instances (no decoding)"
    return [
        measure(
            f"replay-{tag}",
            f"{db}: replay {n:,} instances x {STREAM_LEN} events, batched",
            unit="events/s",
            what=(
                f"a fresh Engine (empty cache) rebuilds the state of {n:,} "
                f"instances of {STREAM_LEN} events: it reads {BATCH:,} streams per "
                "query, decodes every event and folds it with the reducer; the raw "
                "baselines only fetch the same rows"
            ),
            subject=ours["many"],
            baselines=[
                Contender(raw_many, raw_batched),
                raw_each,
                Contender(ES_GET, es_get),
                Contender(
                    f"eventsourcing select_events per instance ({ES_SAMPLE:,} of them)",
                    es_select,
                ),
                Contender("eventsourcing notification log, pages of 10,000", es_log),
            ],
            reps=reps,
            targets=[
                # The goal for the public path (the private load path
                # was held to 0.8 before).
                Target(0.5, ">=", against=raw_many),
                Target(3.0, ">=", against=ES_GET),
            ]
            if goals
            else None,
        ),
        measure(
            f"replay-each-{tag}",
            f"{db}: replay {n:,} instances x {STREAM_LEN} events, one by one",
            unit="events/s",
            what=(
                "the same rebuild, one cold Engine.get after another (one query "
                "and one thread hop each); 64 tasks calling Engine.get (their "
                "cold loads grouped into batched reads) are shown beside it"
            ),
            subject=ours["each"],
            baselines=[raw_each, ours["get"]],
            reps=reps,
        ),
        measure(
            f"replay-long-{tag}",
            f"{db}: replay one stream of {long_len:,} events",
            unit="events/s",
            what=f"a fresh Engine rebuilds one instance of {long_len:,} events",
            subject=ours["long"],
            baselines=[
                Contender(f"raw {tag} SELECT of the stream (no decoding)", raw_long),
                Contender("eventsourcing select_events of the stream", es_long),
            ],
            reps=reps,
        ),
    ]


def run_postgres(
    schema: str, *, instances: int, long_len: int, reps: int
) -> list[Figure]:
    store = open_store(store_url(schema))
    ids = _populate(store, instances, long_len)
    es_store = PostgresDatastore(
        **_pg_conninfo(), schema=schema, originator_id_type="text", pool_size=2
    )
    es = PostgresApplicationRecorder(es_store, events_table_name="nonstop_events")
    es_app = es_application(schema=schema)
    es_ids = bulk_ids(instances)
    fill_es(es_app, schema, es_ids, STREAM_LEN)
    conn = psycopg.connect(PG_URL, autocommit=True)
    table = f'"{schema}".nonstop_events'
    select = (
        f"SELECT originator_id, originator_version, topic, state, notification_id "
        f"FROM {table} WHERE originator_id = %s ORDER BY originator_version"
    )
    with conn.cursor() as cur:
        cur.execute(f"VACUUM ANALYZE {table}")

    def raw_per_instance() -> tuple[int, float]:
        def go() -> int:
            n = 0
            with conn.cursor(row_factory=tuple_row, binary=True) as cur:
                for iid in ids:
                    cur.execute(select, (iid,), prepare=True)
                    n += len(cur.fetchall())
            return n

        return timed(go)

    many = (
        f"SELECT originator_id, originator_version, topic, state, notification_id "
        f"FROM {table} WHERE originator_id = ANY(%s::text[]) "
        "ORDER BY originator_id, originator_version"
    )

    def raw_batched() -> tuple[int, float]:
        def go() -> int:
            n = 0
            with conn.cursor(row_factory=tuple_row, binary=True) as cur:
                for i in range(0, len(ids), BATCH):
                    cur.execute(many, (ids[i : i + BATCH],), prepare=True)
                    n += len(cur.fetchall())
            return n

        return timed(go)

    def raw_long() -> tuple[int, float]:
        def go() -> int:
            with conn.cursor(row_factory=tuple_row, binary=True) as cur:
                cur.execute(select, (LONG_ID,))
                return len(cur.fetchall())

        return timed(go)

    try:
        return _figures(
            "psycopg",
            "PostgreSQL",
            store,
            ids,
            long_len,
            reps=reps,
            goals=True,
            raw_per_instance=raw_per_instance,
            raw_batched=raw_batched,
            raw_long=raw_long,
            es=es,
            es_app=es_app,
            es_ids=es_ids,
        )
    finally:
        conn.close()
        es_app.close()
        es_store.close()
        store.close()


def run_sqlite(
    workdir: Path, *, instances: int, long_len: int, reps: int
) -> list[Figure]:
    path = workdir / "replay.db"
    store = open_store(f"sqlite:///{path}")
    ids = _populate(store, instances, long_len)
    es_store = SQLiteDatastore(str(path), originator_id_type="text", pool_size=2)
    es = SQLiteApplicationRecorder(es_store, events_table_name="nonstop_events")
    es_app = es_application(sqlite=str(path))
    es_ids = bulk_ids(instances)
    insert_es(es_app, [(oid, STREAM_LEN) for oid in es_ids])
    conn = sqlite3.connect(str(path), isolation_level=None)
    select = (
        "SELECT originator_id, originator_version, topic, state, rowid "
        "FROM nonstop_events WHERE originator_id = ? ORDER BY originator_version"
    )

    def raw_per_instance() -> tuple[int, float]:
        def go() -> int:
            n = 0
            for iid in ids:
                n += len(conn.execute(select, (iid,)).fetchall())
            return n

        return timed(go)

    def raw_batched() -> tuple[int, float]:
        def go() -> int:
            n = 0
            for i in range(0, len(ids), BATCH // 2):
                chunk = ids[i : i + BATCH // 2]
                q = (
                    "SELECT originator_id, originator_version, topic, state, rowid "
                    "FROM nonstop_events WHERE originator_id IN "
                    f"({','.join('?' * len(chunk))}) "
                    "ORDER BY originator_id, originator_version"
                )
                n += len(conn.execute(q, chunk).fetchall())
            return n

        return timed(go)

    def raw_long() -> tuple[int, float]:
        return timed(lambda: len(conn.execute(select, (LONG_ID,)).fetchall()))

    try:
        return _figures(
            "sqlite3",
            "SQLite",
            store,
            ids,
            long_len,
            reps=reps,
            goals=False,
            raw_per_instance=raw_per_instance,
            raw_batched=raw_batched,
            raw_long=raw_long,
            es=es,
            es_app=es_app,
            es_ids=es_ids,
        )
    finally:
        conn.close()
        es_app.close()
        es_store.close()
        store.close()
