"""The ``eventsourcing`` recorder subclasses of the SQLite and memory adapters.

The PostgreSQL one is in :mod:`engine.store.pg_recorder`, so that an embedded
SQLite user needs no PostgreSQL driver installed.

Each adds the dead-letter table (:mod:`engine.store.deadletters`) and the
outbox (:mod:`engine.store.outbox`) to the library's process recorder, written
in the same transaction as the events through the ``dead_letters`` and
``outbox`` keywords of ``insert_events``. The private hooks
they override (``_insert_events``, ``_assert_uniqueness``, ``_update_table``)
are checked by ``tests/store/test_contract.py`` against the pinned
``eventsourcing`` series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder

from engine.core.events import now_micros
from engine.store import deadletters as dl
from engine.store import outbox as ob
from engine.store.deadletters import TABLE, DeadLetter, StoredDeadLetter

__all__ = ["MemoryRecorder", "SQLiteRecorder"]


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
        """Create the events, tracking, dead-letter and outbox tables."""
        super().create_table()
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._dl_create)
            for statement in ob.ddl(blob="BLOB", bigint="INTEGER"):
                c.execute(statement.format(table=ob.TABLE, index=ob.TABLE))

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
        ops = kwargs.get("outbox")
        if ops:
            for statement, rows in ob.sql_writes(ops, ob.TABLE, "?", now):
                c.sqlite_cursor.executemany(statement, rows)
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
        self.outbox = ob.MemoryOutbox(self._database_lock)
        """The outbox rows, written with the events."""
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
        ops = kwargs.get("outbox")
        if ops:
            self.outbox.write(ops, now)
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
