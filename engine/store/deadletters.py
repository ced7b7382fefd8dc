"""Dead letters: messages a consumer could not apply, stored beside the events.

A Kafka worker stores the dead letters of a batch in the same transaction as
the batch's events and its partition's tracking record, so an offset never
advances without the outcome of every message before it. The table
(``nonstop_dead_letters``) is unique on ``(consumer, topic, partition, offset)``:
one message is dead-lettered at most once.

The adapters' process recorders below add that table and that insert to the
``eventsourcing`` recorders, through the ``dead_letters`` keyword that
``insert_events`` passes on to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.popo import POPOProcessRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder
from eventsourcing.utils import retry
from psycopg import sql
from psycopg.rows import tuple_row

from engine.core.events import now_micros

__all__ = [
    "TABLE",
    "Columns",
    "DeadLetter",
    "MemoryRecorder",
    "PostgresRecorder",
    "SQLiteRecorder",
    "StoredDeadLetter",
]

TABLE = "nonstop_dead_letters"
"""The dead-letter table, in the event store's database (and schema)."""

_COLUMNS = (
    "consumer, topic, partition, offset_, reason, key, value, headers, "
    "timestamp_ms, recorded_at"
)
_SELECT = f"SELECT id, {_COLUMNS}, replayed_to FROM {{}}"
_headers = msgspec.msgpack.Encoder()

Columns = tuple[list[str], list[int], list[str], list[bytes]]
"""Events to insert as columns: stream ids, positions, type names, envelopes."""
_decode_headers = msgspec.msgpack.Decoder(list[tuple[str, bytes]])


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be applied, and why."""

    consumer: str
    """Who gave up on it (a Kafka consumer group)."""
    topic: str
    """Topic it was read from."""
    partition: int
    """Partition."""
    offset: int
    """Offset in the partition."""
    reason: str
    """Why: the decode or mapping error, or the workflow's rejection."""
    key: bytes | None
    """The original key bytes."""
    value: bytes | None
    """The original value bytes."""
    headers: tuple[tuple[str, bytes], ...] = ()
    """The original headers."""
    timestamp: int = 0
    """The message's timestamp, milliseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as stored."""

    id: int
    """Its id in the table."""
    letter: DeadLetter
    """The message and the reason."""
    recorded_at: int
    """When it was stored, microseconds since the epoch."""
    replayed_to: str | None
    """The topic it was replayed to, if it was."""


def _row(d: DeadLetter, now: int) -> tuple[Any, ...]:
    return (
        d.consumer,
        d.topic,
        d.partition,
        d.offset,
        d.reason,
        d.key,
        d.value,
        _headers.encode(list(d.headers)),
        d.timestamp,
        now,
    )


def _stored(row: Sequence[Any]) -> StoredDeadLetter:
    i, consumer, topic, part, off, reason, key, value, hdrs, ts, at, replayed = row
    letter = DeadLetter(
        consumer,
        topic,
        int(part),
        int(off),
        reason,
        None if key is None else bytes(key),
        None if value is None else bytes(value),
        tuple(_decode_headers.decode(bytes(hdrs))),
        int(ts),
    )
    return StoredDeadLetter(int(i), letter, int(at), replayed)


def _where(
    consumer: str | None, include_replayed: bool, mark: str
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if consumer is not None:
        clauses.append(f"consumer = {mark}")
        params.append(consumer)
    if not include_replayed:
        clauses.append("replayed_to IS NULL")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return where + " ORDER BY id", params


class PostgresRecorder(PostgresProcessRecorder):  # type: ignore[misc]
    """The PostgreSQL process recorder, storing dead letters with the events."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str,
        tracking_table_name: str,
    ) -> None:
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        table = sql.Identifier(datastore.schema, TABLE)
        self._dl_create = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, "
            "consumer text NOT NULL, topic text NOT NULL, partition integer NOT NULL, "
            "offset_ bigint NOT NULL, reason text NOT NULL, key bytea, value bytea, "
            "headers bytea NOT NULL, timestamp_ms bigint NOT NULL, "
            "recorded_at bigint NOT NULL, replayed_to text, "
            "UNIQUE (consumer, topic, partition, offset_))"
        ).format(table)
        self._dl_insert = sql.SQL(
            f"INSERT INTO {{}} ({_COLUMNS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(table)
        self._dl_table = table
        self._insert_arrays = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(sql.Identifier(datastore.schema, events_table_name))
        # The same lock, notification and insert in one function, so that an
        # append without tracking or dead letters is one statement: one round
        # trip, committed by the server at its end (the connections are in
        # autocommit), instead of BEGIN ... COMMIT over two.
        append = sql.Identifier(datastore.schema, f"{events_table_name}_append")
        self._create_append = sql.SQL(
            "CREATE OR REPLACE FUNCTION {append}"
            "(text[], bigint[], text[], bytea[]) RETURNS SETOF bigint "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "SET LOCAL lock_timeout = {timeout}; "
            "LOCK TABLE {table} IN EXCLUSIVE MODE; "
            "NOTIFY {channel}; "
            "RETURN QUERY INSERT INTO {table} "
            "(originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest($1, $2, $3, $4) RETURNING notification_id; "
            "END $$"
        ).format(
            append=append,
            timeout=sql.Literal(f"{datastore.lock_timeout}s"),
            table=sql.Identifier(datastore.schema, events_table_name),
            channel=sql.Identifier(self.channel_name),
        )
        self._call_append = sql.SQL(
            "SELECT * FROM {}(%b::text[], %b::bigint[], %b::text[], %b::bytea[])"
        ).format(append)

    def create_table(self) -> None:
        """Create the events, tracking and dead-letter tables."""
        super().create_table()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._dl_create)
            curs.execute(self._create_append)

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # The same lock, notification and insert as eventsourcing's, with one
        # array per column instead of an array of composites: psycopg adapts
        # flat arrays in C, several times faster for large batches.
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_arrays,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )

    def _insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        letters: Sequence[DeadLetter] = kwargs.get("dead_letters") or ()
        if letters:
            now = now_micros()
            curs.executemany(self._dl_insert, [_row(d, now) for d in letters])

    @retry(  # type: ignore[untyped-decorator]
        (InterfaceError, OperationalError), max_attempts=10, wait=0.2
    )
    def insert_columns(self, columns: Columns, **kwargs: Any) -> list[int]:
        """``insert_events`` given one list per column; the notification ids.

        The same transaction as eventsourcing's (tracking record, dead letters,
        table lock, notification, one insert), without a ``StoredEvent`` per
        event or a dict per returned id: in a batch of thousands those cost
        more than the rest of the append.
        """
        exc: Exception | None = None
        ids: list[int] = []
        if columns[0] and not any(kwargs.values()):
            # Events alone: one statement, one round trip (see create_table).
            with (
                self.datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row) as curs,
            ):
                curs.execute(self._call_append, columns, prepare=True)
                ids = [row[0] for row in curs.fetchall()]
                if not conn.autocommit:  # the datastore's are; commit otherwise
                    conn.commit()
                return ids
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline, conn.transaction():
                with conn.cursor() as curs:
                    self._insert_events(curs, (), **kwargs)
                if columns[0]:
                    with conn.cursor(row_factory=tuple_row) as curs:
                        try:
                            self._lock_table(curs)
                            self._notify_channel(curs)
                            curs.execute(self._insert_arrays, columns, prepare=True)
                            # Sync now: a unique violation raises here, not at
                            # COMMIT (as in eventsourcing's insert_events).
                            pipeline.sync()
                            ids = [row[0] for row in curs.fetchall()]
                        except Exception as e:
                            exc = e  # raised once the pipeline has closed
            if exc:
                raise exc
        return ids

    def select_dead_letters(
        self, consumer: str | None, include_replayed: bool
    ) -> list[StoredDeadLetter]:
        """The stored dead letters, oldest first."""
        where, params = _where(consumer, include_replayed, "%s")
        query = sql.SQL(_SELECT + where).format(self._dl_table)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, params)
            return [_stored(tuple(r.values())) for r in curs.fetchall()]

    def mark_dead_letter_replayed(self, letter_id: int, topic: str) -> bool:
        """Record the replay of a pending letter; False if there is none."""
        query = sql.SQL(
            "UPDATE {} SET replayed_to = %s WHERE id = %s AND replayed_to IS NULL"
        ).format(self._dl_table)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(query, (topic, letter_id))
            return bool(curs.rowcount == 1)


class SQLiteRecorder(SQLiteProcessRecorder):  # type: ignore[misc]
    """The SQLite process recorder, storing dead letters with the events."""

    _dl_create = (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "consumer TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, "
        "offset_ INTEGER NOT NULL, reason TEXT NOT NULL, key BLOB, value BLOB, "
        "headers BLOB NOT NULL, timestamp_ms INTEGER NOT NULL, "
        "recorded_at INTEGER NOT NULL, replayed_to TEXT, "
        "UNIQUE (consumer, topic, partition, offset_))"
    )
    _dl_insert = (
        f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def create_table(self) -> None:
        """Create the events, tracking and dead-letter tables."""
        super().create_table()
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._dl_create)

    def _insert_events(
        self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        returning: Sequence[int] | None = super()._insert_events(
            c, stored_events, **kwargs
        )
        letters: Sequence[DeadLetter] = kwargs.get("dead_letters") or ()
        now = now_micros()
        for d in letters:
            c.execute(self._dl_insert, _row(d, now))
        return returning

    def select_dead_letters(
        self, consumer: str | None, include_replayed: bool
    ) -> list[StoredDeadLetter]:
        """The stored dead letters, oldest first."""
        where, params = _where(consumer, include_replayed, "?")
        with self.datastore.transaction(commit=False) as c:
            cur = c.sqlite_cursor
            cur.row_factory = None
            cur.execute(_SELECT.format(TABLE) + where, params)
            return [_stored(r) for r in cur.fetchall()]

    def mark_dead_letter_replayed(self, letter_id: int, topic: str) -> bool:
        """Record the replay of a pending letter; False if there is none."""
        with self.datastore.transaction(commit=True) as c:
            cur = c.sqlite_cursor
            cur.execute(
                f"UPDATE {TABLE} SET replayed_to = ? "
                "WHERE id = ? AND replayed_to IS NULL",
                (topic, letter_id),
            )
            return bool(cur.rowcount == 1)


class MemoryRecorder(POPOProcessRecorder):  # type: ignore[misc]
    """The in-memory process recorder, storing dead letters with the events."""

    def __init__(self) -> None:
        super().__init__()
        self._letters: list[StoredDeadLetter] = []
        self._letter_keys: set[tuple[str, str, int, int]] = set()

    def _assert_uniqueness(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        keys = [
            (d.consumer, d.topic, d.partition, d.offset)
            for d in kwargs.get("dead_letters") or ()
        ]
        if len(set(keys)) != len(keys) or self._letter_keys.intersection(keys):
            raise IntegrityError(f"dead letter already recorded: {keys}")

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids: Sequence[int] | None = super()._update_table(stored_events, **kwargs)
        now = now_micros()
        for d in kwargs.get("dead_letters") or ():
            self._letters.append(StoredDeadLetter(len(self._letters) + 1, d, now, None))
            self._letter_keys.add((d.consumer, d.topic, d.partition, d.offset))
        return ids

    def select_dead_letters(
        self, consumer: str | None, include_replayed: bool
    ) -> list[StoredDeadLetter]:
        """The stored dead letters, oldest first."""
        with self._database_lock:
            return [
                x
                for x in self._letters
                if (consumer is None or x.letter.consumer == consumer)
                and (include_replayed or x.replayed_to is None)
            ]

    def mark_dead_letter_replayed(self, letter_id: int, topic: str) -> bool:
        """Record the replay of a pending letter; False if there is none."""
        with self._database_lock:
            if not 0 < letter_id <= len(self._letters):
                return False
            x = self._letters[letter_id - 1]
            if x.replayed_to is not None:
                return False
            self._letters[letter_id - 1] = StoredDeadLetter(
                x.id, x.letter, x.recorded_at, topic
            )
            return True
