"""Scenario 3: bulk append throughput (events/s), batches of ``BATCH`` records.

The subject is ``EventStore.append`` (one transaction per batch, positions
checked, global positions returned). The baselines insert the same rows with the
raw driver's ``executemany`` in one transaction per batch, and with the
``eventsourcing`` recorder's ``insert_events``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from bench.commit import _RAW_PG_DDL, _RAW_SQLITE_DDL, _pg_conninfo
from bench.counter import encoded_stream
from bench.harness import PG_URL, Contender, Figure, measure, store_url, timed
from engine import open_store
from engine.store import NewRecord

__all__ = ["DESCRIPTION", "run_postgres", "run_sqlite"]

DESCRIPTION = """\
- **append** (`python -m bench --only append`): bulk `EventStore.append` of
  batches of 1,000 records (one transaction each) against the raw driver's
  `executemany` and the `eventsourcing` recorder's `insert_events` on the same
  batches, on PostgreSQL and SQLite."""


BATCH = 1_000
STREAM_LEN = 10


def _batches(tag: str, total: int) -> list[list[NewRecord]]:
    """``total`` records in streams of ``STREAM_LEN``, cut into batches."""
    records: list[NewRecord] = []
    for i in range(total // STREAM_LEN):
        records.extend(encoded_stream(f"{tag}-{i}", STREAM_LEN))
    return [records[i : i + BATCH] for i in range(0, len(records), BATCH)]


def _contenders(
    total: int,
    store_append: Callable[[list[NewRecord]], object],
    raw_append: Callable[[list[NewRecord]], object],
    es_append: Callable[[list[StoredEvent]], object],
    raw_name: str,
    es_name: str,
) -> tuple[Contender, list[Contender]]:
    run_id = [0]

    def prepared(prefix: str) -> list[list[NewRecord]]:
        run_id[0] += 1
        return _batches(f"{prefix}{run_id[0]}", total)

    def nonstop() -> tuple[int, float]:
        batches = prepared("n")
        return timed(lambda: sum(len(b) for b in batches if store_append(b) or 1))

    def raw() -> tuple[int, float]:
        batches = prepared("r")
        return timed(lambda: sum(len(b) for b in batches if raw_append(b) or 1))

    def es() -> tuple[int, float]:
        batches = [
            [StoredEvent(r.stream_id, r.position, r.type, r.data) for r in b]
            for b in prepared("e")
        ]
        return timed(lambda: sum(len(b) for b in batches if es_append(b) or 1))

    return Contender("nonstop EventStore.append", nonstop), [
        Contender(raw_name, raw),
        Contender(es_name, es),
    ]


def run_postgres(schema: str, *, total: int, reps: int) -> list[Figure]:
    store = open_store(store_url(schema))
    es_store = PostgresDatastore(
        **_pg_conninfo(), schema=schema, originator_id_type="text", pool_size=2
    )
    es = PostgresApplicationRecorder(es_store, events_table_name="es_append")
    es.create_table()
    table = f'"{schema}".raw_append'
    conn = psycopg.connect(PG_URL)
    conn.execute(_RAW_PG_DDL.format(t=table))
    conn.commit()
    insert = (
        f"INSERT INTO {table} (stream_id, position, type, data) VALUES (%s, %s, %s, %s)"
    )

    def raw_append(batch: list[NewRecord]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                insert, [(r.stream_id, r.position, r.type, r.data) for r in batch]
            )
        conn.commit()

    subject, baselines = _contenders(
        total,
        store.append,
        raw_append,
        es.insert_events,
        "raw psycopg executemany + COMMIT",
        "eventsourcing PostgresApplicationRecorder.insert_events",
    )
    try:
        fig = measure(
            "append-postgres",
            f"PostgreSQL: bulk append, batches of {BATCH}",
            unit="events/s",
            what=f"{total:,} events in streams of {STREAM_LEN}, one transaction per "
            f"batch of {BATCH}",
            subject=subject,
            baselines=baselines,
            reps=reps,
        )
    finally:
        conn.close()
        es_store.close()
        store.close()
    return [fig]


def run_sqlite(workdir: Path, *, total: int, reps: int) -> list[Figure]:
    store = open_store(f"sqlite:///{workdir / 'append-nonstop.db'}")
    es_store = SQLiteDatastore(
        str(workdir / "append-es.db"), originator_id_type="text", pool_size=2
    )
    es = SQLiteApplicationRecorder(es_store, events_table_name="es_append")
    es.create_table()
    conn = sqlite3.connect(str(workdir / "append-raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(_RAW_SQLITE_DDL.format(t="raw_append"))
    insert = "INSERT INTO raw_append (stream_id, position, type, data) VALUES (?,?,?,?)"

    def raw_append(batch: list[NewRecord]) -> None:
        conn.execute("BEGIN")
        conn.executemany(
            insert, [(r.stream_id, r.position, r.type, r.data) for r in batch]
        )
        conn.execute("COMMIT")

    subject, baselines = _contenders(
        total,
        store.append,
        raw_append,
        es.insert_events,
        "raw sqlite3 executemany + COMMIT",
        "eventsourcing SQLiteApplicationRecorder.insert_events",
    )
    try:
        fig = measure(
            "append-sqlite",
            f"SQLite: bulk append, batches of {BATCH}",
            unit="events/s",
            what=f"{total:,} events in streams of {STREAM_LEN}, one transaction per "
            f"batch of {BATCH}",
            subject=subject,
            baselines=baselines,
            reps=reps,
        )
    finally:
        conn.close()
        es_store.close()
        store.close()
    return [fig]
