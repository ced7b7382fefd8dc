"""The ``eventsourcing`` PostgreSQL recorder subclass the PostgreSQL adapter uses.

It adds the dead-letter table (:mod:`engine.store.deadletters`) to the
library's process recorder. The private hooks it overrides are checked by
``tests/store/test_contract.py`` against the pinned ``eventsourcing`` series.
Apart from :mod:`engine.store.recorders` so that only PostgreSQL users need
``psycopg`` (``nonstop[postgres]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from psycopg import sql

from engine.core.events import now_micros
from engine.store import deadletters as dl
from engine.store import outbox as ob
from engine.store import pg_append
from engine.store.deadletters import TABLE, DeadLetter

__all__ = ["PostgresRecorder"]


class PostgresRecorder(PostgresProcessRecorder):  # type: ignore[misc]
    """The PostgreSQL process recorder, with dead letters and the append function.

    Only its DDL and its in-transaction hook (``_insert_events``) are used:
    the store runs its own statements (see :mod:`engine.store.pg_append`), so
    none of the library's ``@retry``-decorated methods ever runs an append or
    a read.
    """

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str,
        tracking_table_name: str,
        appends: str = "serial",
        settings: bool = True,
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
        self._ob_table = sql.Identifier(datastore.schema, ob.TABLE).as_string(None)
        self._ob_create = [
            s.format(table=self._ob_table, index=ob.TABLE)
            for s in ob.ddl(blob="bytea", bigint="bigint")
        ]
        self.statements = pg_append.Statements(
            schema=datastore.schema,
            events_table=events_table_name,
            channel=self.channel_name,
            lock_timeout=datastore.lock_timeout,
            outbox_table=ob.TABLE,
            appends=appends,
            settings=settings,
        )

    def create_table(self) -> None:
        """Create the tables and the append functions of the recorded mode.

        The events table gets its ``tx`` column (the writing transaction's id,
        see :class:`~engine.store.pg_append.Statements`) when it lacks one:
        added without a default first, so rows written before it are not
        rewritten (they read as NULL), then given its default.
        """
        super().create_table()
        table = sql.Identifier(self.datastore.schema, self.events_table_name)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._dl_create)
            for statement in self._ob_create:
                curs.execute(statement)
            curs.execute(
                "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attname = 'tx' AND NOT attisdropped",
                [table.as_string(curs)],
            )
            if curs.fetchone() is None:
                curs.execute(sql.SQL("ALTER TABLE {} ADD COLUMN tx xid8").format(table))
                curs.execute(
                    sql.SQL(
                        "ALTER TABLE {} ALTER COLUMN tx "
                        "SET DEFAULT pg_current_xact_id()"
                    ).format(table)
                )
            for function in self.statements.create_functions:
                curs.execute(function)

    def _insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # The library's hook inserts the tracking record; then the dead letters.
        super()._insert_events(curs, stored_events, **kwargs)
        letters: Sequence[DeadLetter] = kwargs.get("dead_letters") or ()
        now = now_micros()
        if letters:
            curs.executemany(self._dl_insert, [dl.row(d, now) for d in letters])
        ops = kwargs.get("outbox")
        if ops:
            for statement, rows in ob.sql_writes(ops, self._ob_table, "%s", now):
                curs.executemany(statement, rows)

    def in_transaction(self, curs: Any, **kwargs: Any) -> None:
        """Insert the tracking record, dead letters and outbox rows in ``curs``."""
        self._insert_events(curs, (), **kwargs)
