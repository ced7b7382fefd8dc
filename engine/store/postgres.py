"""PostgreSQL adapter (psycopg 3 with a connection pool)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresDatastore,
)
from psycopg import sql
from psycopg.rows import RowMaker, tuple_row

from engine.core.errors import StoreUnavailable
from engine.store.base import NewRecord, Record, RecorderStore, RecordRow, redact
from engine.store.deadletters import PostgresRecorder

__all__ = ["PostgresStore"]

EVENTS_TABLE = "nonstop_events"
SNAPSHOTS_TABLE = "nonstop_snapshots"
TRACKING_TABLE = "nonstop_tracking"
_STREAMS_PER_QUERY = 1_000
# Each row is built straight into a Record (``tuple.__new__``, no Python frame):
# half the CPU of copying psycopg's row tuples, and half the objects for the
# garbage collector to scan, when events are read by the thousand.
_make_record = cast("RowMaker[Record]", partial(tuple.__new__, Record))


def _record_rows(cursor: Any) -> RowMaker[Record]:
    """Row factory: each row (columns in Record order) as a :class:`Record`."""
    return _make_record


class PostgresStore(RecorderStore):
    """An event store in PostgreSQL.

    Args:
        url: ``postgresql://user[:password]@host[:port]/dbname[?schema=NAME]``;
            ``schema`` (default ``public``) is created when missing.
        pool_size: Connections kept open.
    """

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.schema = query.get("schema", ["public"])[0]
        dbname = unquote(parts.path.lstrip("/")) or "postgres"
        conninfo: dict[str, Any] = {
            "dbname": dbname,
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "user": unquote(parts.username or "postgres"),
            "password": unquote(parts.password or ""),
        }
        try:
            guard = psycopg.connect(**conninfo, connect_timeout=5, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(redact(url), str(exc).strip()) from None
        try:
            # Stores opened at once on a fresh schema would race in CREATE ... (the
            # recorder's functions and tables): one creator per schema at a time.
            guard.execute(
                "SELECT pg_advisory_lock(hashtext(%s))", [f"nonstop:{self.schema}"]
            )
            guard.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema)
                )
            )
            self._datastore = PostgresDatastore(
                **conninfo,
                schema=self.schema,
                originator_id_type="text",
                pool_size=pool_size,
                max_overflow=pool_size,
            )
            events = PostgresRecorder(
                self._datastore,
                events_table_name=EVENTS_TABLE,
                tracking_table_name=TRACKING_TABLE,
            )
            snapshots = PostgresAggregateRecorder(
                self._datastore, events_table_name=SNAPSHOTS_TABLE
            )
            events.create_table()
            snapshots.create_table()
        except (OperationalError, InterfaceError, psycopg.Error) as exc:
            raise StoreUnavailable(redact(url), str(exc).strip()) from None
        finally:
            guard.close()  # ends the session: releases the advisory lock
        super().__init__(url, events, snapshots)
        self._recorder = events
        table = sql.Identifier(self.schema, EVENTS_TABLE)
        self._select_stream = sql.SQL(
            "SELECT notification_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = %s AND originator_version > %s "
            "ORDER BY originator_version LIMIT %s"
        ).format(table)
        self._select_streams = sql.SQL(
            "SELECT originator_id, originator_version, notification_id, topic, state "
            "FROM {} WHERE originator_id = ANY(%s::text[]) "
            "ORDER BY originator_id, originator_version"
        ).format(table)
        self._stream_position = sql.SQL(
            "SELECT max(originator_version) FROM {} WHERE originator_id = %s"
        ).format(table)
        self._select_all = sql.SQL(
            "SELECT originator_id, originator_version, notification_id, topic, state "
            "FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(table)
        self._select_all_types = sql.SQL(
            "SELECT originator_id, originator_version, notification_id, topic, state "
            "FROM {} WHERE notification_id > %s AND topic = ANY(%s::text[]) "
            "ORDER BY notification_id LIMIT %s"
        ).format(table)

    def _insert(
        self, records: Sequence[NewRecord], kwargs: dict[str, Any]
    ) -> Sequence[int] | None:
        columns = (
            [r.stream_id for r in records],
            [r.position for r in records],
            [r.type for r in records],
            [r.data for r in records],
        )
        ids: list[int] = self._recorder.insert_columns(columns, **kwargs)
        return ids

    def read_stream(
        self, stream_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        """See :meth:`EventStore.read_stream` (binary rows, plain tuples)."""
        try:
            with (
                self._datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row, binary=True) as cur,
            ):
                cur.execute(
                    self._select_stream, (stream_id, after, limit), prepare=True
                )
                new = tuple.__new__  # half the cost of Record(...) per row
                return [
                    new(Record, (stream_id, v, g, t, s))
                    for g, v, t, s in cur.fetchall()
                ]
        except (psycopg.OperationalError, OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None

    def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Sequence[str] = ()
    ) -> list[Record]:
        """See :meth:`EventStore.read_all` (binary rows, built as records)."""
        try:
            with (
                self._datastore.get_connection() as conn,
                conn.cursor(row_factory=_record_rows, binary=True) as cur,
            ):
                if types:
                    params: tuple[Any, ...] = (after, list(types), limit)
                    cur.execute(self._select_all_types, params, prepare=True)
                else:
                    cur.execute(self._select_all, (after, limit), prepare=True)
                rows: list[Record] = cur.fetchall()
                return rows
        except (psycopg.OperationalError, OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None

    def iter_streams(self, stream_ids: Sequence[str]) -> Iterator[list[RecordRow]]:
        """See :meth:`EventStore.iter_streams` (one query per 1,000 streams)."""
        ids = list(dict.fromkeys(stream_ids))
        for i in range(0, len(ids), _STREAMS_PER_QUERY):
            yield self._read_chunk(ids[i : i + _STREAMS_PER_QUERY])

    def _read_chunk(self, stream_ids: list[str]) -> list[RecordRow]:
        """The rows of ``stream_ids``, ordered by stream id and position."""
        try:
            with (
                self._datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row, binary=True) as cur,
            ):
                cur.execute(self._select_streams, (stream_ids,), prepare=True)
                rows: list[RecordRow] = cur.fetchall()
                return rows
        except (psycopg.OperationalError, OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None

    def stream_position(self, stream_id: str) -> int:
        """See :meth:`EventStore.stream_position`."""
        with (
            self._datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            cur.execute(self._stream_position, (stream_id,), prepare=True)
            row = cur.fetchone()
            return int(row[0]) if row and row[0] is not None else 0

    def _replace_snapshot(self, stored: StoredEvent) -> None:
        table = sql.Identifier(self.schema, SNAPSHOTS_TABLE)
        with self._datastore.transaction(commit=True) as c:
            c.execute(
                sql.SQL(
                    "DELETE FROM {} "
                    "WHERE originator_id = %s AND originator_version = %s"
                ).format(table),
                (stored.originator_id, stored.originator_version),
            )
            c.execute(
                sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state) "
                    "VALUES (%s, %s, %s, %s)"
                ).format(table),
                (
                    stored.originator_id,
                    stored.originator_version,
                    stored.topic,
                    stored.state,
                ),
            )

    def drop(self) -> None:
        """Drop this store's schema with everything in it (tests only)."""
        with self._datastore.get_connection() as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(self.schema)
                )
            )

    def close(self) -> None:
        """Close the connection pool."""
        self._datastore.close()
