"""The ``eventsourcing`` recorder subclasses the adapters are built on.

Each adds the dead-letter table (:mod:`engine.store.deadletters`) to the
library's process recorder, inserted in the same transaction as the events
through the ``dead_letters`` keyword of ``insert_events``. The private hooks
they override (``_insert_events``, ``_assert_uniqueness``, ``_update_table``)
are checked by ``tests/store/test_contract.py`` against the pinned
``eventsourcing`` series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOProcessRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder
from psycopg import sql

from engine.core.events import now_micros
from engine.store import deadletters as dl
from engine.store import pg_append
from engine.store.deadletters import TABLE, DeadLetter, StoredDeadLetter

__all__ = ["MemoryRecorder", "PostgresRecorder", "SQLiteRecorder"]


class PostgresRecorder(PostgresProcessRecorder):  # type: ignore[misc]
    """The PostgreSQL process recorder, with dead letters and the append function.

    Only its DDL and its in-transaction hooks (``_insert_events``,
    ``_lock_table``, ``_notify_channel``) are used: the store runs its own
    statements (see :mod:`engine.store.pg_append`), so none of the library's
    ``@retry``-decorated methods ever runs an append or a read.
    """

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
            f"INSERT INTO {{}} ({dl.COLUMNS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(table)
        self.statements = pg_append.Statements(
            schema=datastore.schema,
            events_table=events_table_name,
            channel=self.channel_name,
            lock_timeout=datastore.lock_timeout,
        )

    def create_table(self) -> None:
        """Create the events, tracking and dead-letter tables, the append function."""
        super().create_table()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._dl_create)
            curs.execute(self.statements.create_function)

    def _insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # The library's hook inserts the tracking record; then the dead letters.
        super()._insert_events(curs, stored_events, **kwargs)
        letters: Sequence[DeadLetter] = kwargs.get("dead_letters") or ()
        if letters:
            now = now_micros()
            curs.executemany(self._dl_insert, [dl.row(d, now) for d in letters])

    def in_transaction(self, curs: Any, **kwargs: Any) -> None:
        """Insert the tracking record and dead letters of an append in ``curs``."""
        self._insert_events(curs, (), **kwargs)

    def lock_and_notify(self, curs: Any) -> None:
        """Take the events table lock and queue the notification in ``curs``."""
        self._lock_table(curs)
        self._notify_channel(curs)


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
        f"INSERT INTO {TABLE} ({dl.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
            c.execute(self._dl_insert, dl.row(d, now))
        return returning

    def select_dead_letters(
        self, consumer: str | None, include_replayed: bool
    ) -> list[StoredDeadLetter]:
        """The stored dead letters, oldest first."""
        where, params = dl.where(consumer, include_replayed, "?")
        with self.datastore.transaction(commit=False) as c:
            cur = c.sqlite_cursor
            cur.row_factory = None
            cur.execute(dl.SELECT.format(TABLE) + where, params)
            return [dl.stored(r) for r in cur.fetchall()]

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
