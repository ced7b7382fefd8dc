"""SQLite adapter: the embedded default, one file, no server."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteDatastore,
)

from engine.core.errors import StoreNotFound, StoreUnavailable
from engine.store.adapter import RecorderStore
from engine.store.outbox import TABLE as OUTBOX_TABLE
from engine.store.outbox import Outbox, SqlOutbox
from engine.store.port import Record, RecordRow
from engine.store.recorders import SQLiteRecorder
from engine.store.urls import redact, sqlite_path

__all__ = ["SQLiteStore"]

EVENTS_TABLE = "nonstop_events"
SNAPSHOTS_TABLE = "nonstop_snapshots"
_STREAMS_PER_QUERY = 500
_NO_LIMIT = 2**62
"""A position no stream reaches (``iter_streams`` without ``upto``)."""


class SQLiteStore(RecorderStore):
    """An event store in one SQLite file (WAL mode).

    Args:
        url: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.
        create: Create the file and the tables when missing; with False, a
            missing file or missing tables raise ``StoreNotFound`` and nothing
            is created.
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        path = sqlite_path(url)
        if not create:
            _check_exists(url, path)
        try:
            self._datastore = SQLiteDatastore(
                path, originator_id_type="text", pool_size=4, max_overflow=8
            )
            events = SQLiteRecorder(self._datastore, events_table_name=EVENTS_TABLE)
            snapshots = SQLiteAggregateRecorder(self._datastore, SNAPSHOTS_TABLE)
            if create:
                events.create_table()
                snapshots.create_table()
        except (OperationalError, InterfaceError, sqlite3.Error) as exc:
            raise StoreUnavailable(redact(url), str(exc)) from None
        super().__init__(url, events, snapshots)
        self._select_stream = (
            f"SELECT rowid, originator_version, topic, state FROM {EVENTS_TABLE} "
            "WHERE originator_id=? AND originator_version>? "
            "ORDER BY originator_version LIMIT ?"
        )
        self._select_streams = (
            "SELECT originator_id, originator_version, rowid, topic, state "
            f"FROM {EVENTS_TABLE} WHERE originator_id IN ({{}}) "
            "AND originator_version <= ? ORDER BY originator_id, originator_version"
        )
        self._select_all = (
            "SELECT originator_id, originator_version, rowid, topic, state "
            f"FROM {EVENTS_TABLE} WHERE rowid>? {{}}ORDER BY rowid LIMIT ?"
        )
        self._outbox = SqlOutbox(self._execute, OUTBOX_TABLE, "?", skip_locked=False)

    def outbox(self) -> Outbox:
        """See :meth:`EventStore.outbox` (a single runner per file)."""
        return self._outbox

    def _execute(
        self, statement: str, rows: Sequence[tuple[object, ...]], fetch: bool
    ) -> tuple[list[Any], int]:
        """One outbox statement in a transaction (see :class:`SqlOutbox`)."""
        try:
            with self._datastore.transaction(commit=True) as c:
                cur = c.sqlite_cursor
                cur.row_factory = None
                if fetch:
                    cur.execute(statement, rows[0])
                    found: list[Any] = cur.fetchall()
                    return found, len(found)
                cur.executemany(statement, rows)
                return [], int(cur.rowcount)
        except (OperationalError, InterfaceError, sqlite3.Error) as exc:
            raise StoreUnavailable(self.url, str(exc)) from None

    def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Sequence[str] = ()
    ) -> list[Record]:
        """See :meth:`EventStore.read_all` (plain tuples, no row objects)."""
        topics = f"AND topic IN ({','.join('?' * len(types))}) " if types else ""
        try:
            with self._datastore.transaction(commit=False) as c:
                cur = c.sqlite_cursor
                cur.row_factory = None
                cur.execute(self._select_all.format(topics), (after, *types, limit))
                new = tuple.__new__  # half the cost of Record(...) per row
                return [new(Record, row) for row in cur.fetchall()]
        except (OperationalError, InterfaceError, sqlite3.Error) as exc:
            raise StoreUnavailable(self.url, str(exc)) from None

    def read_stream(
        self, stream_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        """See :meth:`EventStore.read_stream` (plain tuples, no row objects)."""
        try:
            with self._datastore.transaction(commit=False) as c:
                cur = c.sqlite_cursor
                cur.row_factory = None
                cur.execute(self._select_stream, (stream_id, after, limit or -1))
                new = tuple.__new__  # half the cost of Record(...) per row
                return [
                    new(Record, (stream_id, v, g, t, s))
                    for g, v, t, s in cur.fetchall()
                ]
        except (OperationalError, InterfaceError, sqlite3.Error) as exc:
            raise StoreUnavailable(self.url, str(exc)) from None

    def iter_streams(
        self, stream_ids: Sequence[str], *, upto: int | None = None
    ) -> Iterator[list[RecordRow]]:
        """See :meth:`EventStore.iter_streams` (one query per 500 streams)."""
        ids = list(dict.fromkeys(stream_ids))
        for i in range(0, len(ids), _STREAMS_PER_QUERY):
            yield self._read_chunk(ids[i : i + _STREAMS_PER_QUERY], upto)

    def _read_chunk(self, stream_ids: list[str], upto: int | None) -> list[RecordRow]:
        """The rows of ``stream_ids``, ordered by stream id and position."""
        marks = ",".join("?" * len(stream_ids))
        try:
            with self._datastore.transaction(commit=False) as c:
                cur = c.sqlite_cursor
                cur.row_factory = None
                last = _NO_LIMIT if upto is None else upto
                cur.execute(self._select_streams.format(marks), (*stream_ids, last))
                rows: list[RecordRow] = cur.fetchall()
                return rows
        except (OperationalError, InterfaceError, sqlite3.Error) as exc:
            raise StoreUnavailable(self.url, str(exc)) from None

    def _replace_snapshot(self, stored: StoredEvent) -> None:
        with self._datastore.transaction(commit=True) as c:
            c.execute(
                f"DELETE FROM {SNAPSHOTS_TABLE} "
                "WHERE originator_id=? AND originator_version=?",
                (stored.originator_id, stored.originator_version),
            )
            c.execute(
                f"INSERT INTO {SNAPSHOTS_TABLE} "
                "(originator_id, originator_version, topic, state) VALUES (?,?,?,?)",
                (
                    stored.originator_id,
                    stored.originator_version,
                    stored.topic,
                    stored.state,
                ),
            )

    def close(self) -> None:
        """Close the connection pool."""
        self._datastore.close()


def _check_exists(url: str, path: str) -> None:
    """Raise ``StoreNotFound`` unless ``path`` holds nonstop's tables.

    Opened read-only (``mode=ro``): the check creates no file.
    """
    if not Path(path).is_file():
        raise StoreNotFound(redact(url), f"no file {path!r}")
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
                "(?, ?)",
                (EVENTS_TABLE, SNAPSHOTS_TABLE),
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreNotFound(redact(url), f"{path!r} is not a database: {exc}") from None
    if not found or found[0] < 2:
        raise StoreNotFound(redact(url), f"{path!r} holds no nonstop tables")
