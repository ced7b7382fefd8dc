"""The PostgreSQL append: one statement for events alone, one transaction otherwise.

Events alone go through a server-side function (created with the tables) that
takes the table lock, queues the notification and inserts every row: one round
trip, committed by the server at its end (the connections are in autocommit),
instead of BEGIN ... COMMIT over two. An append with a tracking record or dead
letters is one pipelined transaction.

An append is never re-run here. When the connection fails, :func:`append`
tells whether the append surely did not commit (the failure came before the
statement or the COMMIT was sent, or the server answered with an error) --
:class:`~engine.core.errors.StoreUnavailable` -- or may have committed (the
connection broke while the statement or the COMMIT was in flight) --
:class:`~engine.core.errors.CommitInDoubt`.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from engine.core.errors import CommitInDoubt, StoreUnavailable

__all__ = ["Columns", "Statements", "append", "is_dead"]

Columns = tuple[list[str], list[int], list[str], list[bytes]]
"""Events to insert as columns: stream ids, positions, type names, envelopes."""


@dataclass
class Statements:
    """The SQL of the append for one schema and events table."""

    schema: str
    """The store's schema."""
    events_table: str
    """The events table's name."""
    channel: str
    """The channel notified on every append."""
    lock_timeout: int = 0
    """Seconds the function waits for the table lock (0: no limit of its own)."""
    outbox_table: str = "nonstop_outbox"
    """The outbox table (see :mod:`engine.store.outbox`)."""
    create_function: sql.Composed = field(init=False)
    """DDL of the one-statement append function."""
    create_ending: sql.Composed = field(init=False)
    """DDL of the append function that also cancels the pending timers of
    instances that end (one statement, instead of a transaction)."""
    call_ending: sql.Composed = field(init=False)
    """The call of that function: the four arrays, the ended streams, now."""
    call_function: sql.Composed = field(init=False)
    """The call of that function with the four column arrays."""
    insert_arrays: sql.Composed = field(init=False)
    """The insert of the four column arrays, for use inside a transaction."""

    def __post_init__(self) -> None:
        table = sql.Identifier(self.schema, self.events_table)
        function = sql.Identifier(self.schema, f"{self.events_table}_append")
        self.create_function = sql.SQL(
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
            append=function,
            timeout=sql.Literal(f"{self.lock_timeout}s"),
            table=table,
            channel=sql.Identifier(self.channel),
        )
        ending = sql.Identifier(self.schema, f"{self.events_table}_append_ending")
        self.create_ending = sql.SQL(
            "CREATE OR REPLACE FUNCTION {append}"
            "(text[], bigint[], text[], bytea[], text[], bigint) RETURNS SETOF bigint "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "SET LOCAL lock_timeout = {timeout}; "
            "LOCK TABLE {table} IN EXCLUSIVE MODE; "
            "NOTIFY {channel}; "
            "UPDATE {outbox} SET status = 'cancelled', updated_at = $6 "
            "WHERE stream_id = ANY($5) AND kind = 'timer' AND status = 'pending' "
            "AND lease_until <= $6; "
            "RETURN QUERY INSERT INTO {table} "
            "(originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest($1, $2, $3, $4) RETURNING notification_id; "
            "END $$"
        ).format(
            append=ending,
            timeout=sql.Literal(f"{self.lock_timeout}s"),
            table=table,
            channel=sql.Identifier(self.channel),
            outbox=sql.Identifier(self.schema, self.outbox_table),
        )
        self.call_ending = sql.SQL(
            "SELECT * FROM {}(%b::text[], %b::bigint[], %b::text[], %b::bytea[], "
            "%b::text[], %b::bigint)"
        ).format(ending)
        self.call_function = sql.SQL(
            "SELECT * FROM {}(%b::text[], %b::bigint[], %b::text[], %b::bytea[])"
        ).format(function)
        self.insert_arrays = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(table)


def append(
    conn: psycopg.Connection[Any],
    statements: Statements,
    columns: Columns,
    *,
    url: str,
    in_transaction: Callable[[Any], None] | None = None,
    lock_and_notify: Callable[[Any], None] | None = None,
    ended: tuple[list[str], int] | None = None,
) -> list[int]:
    """Append ``columns`` (and what ``in_transaction`` inserts) on ``conn``.

    Args:
        conn: An autocommit connection.
        statements: The SQL for the store's schema.
        columns: The events, one list per column (may be empty).
        url: The store's redacted URL, for errors.
        in_transaction: Inserts the tracking record and dead letters in the
            transaction's cursor; None for events alone (one statement).
        lock_and_notify: Takes the table lock and queues the notification in a
            cursor; needed with ``in_transaction`` when there are events.
        ended: Without ``in_transaction``: the instances that end with this
            append and the time, to cancel their pending timers in the same
            statement.

    Returns:
        The global position of each event, in order.

    Raises:
        psycopg.IntegrityError: a unique key is taken; nothing was written.
        CommitInDoubt: the connection failed while the append was in flight.
        StoreUnavailable: the append surely did not commit.
    """
    sent = False
    try:
        if in_transaction is None:
            with conn.cursor(row_factory=tuple_row) as curs:
                sent = not is_dead(conn)
                if ended is None:
                    curs.execute(statements.call_function, columns, prepare=True)
                else:
                    params = (*columns, *ended)
                    curs.execute(statements.call_ending, params, prepare=True)
                return [row[0] for row in curs.fetchall()]
        return _transaction(conn, statements, columns, in_transaction, lock_and_notify)
    except _Committing as c:
        raise _failure(c.cause, in_flight=True, url=url) from None
    except psycopg.IntegrityError:
        raise
    except psycopg.Error as exc:
        raise _failure(exc, in_flight=sent, url=url) from None


class _Committing(Exception):
    """The connection failed while COMMIT was in flight."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _transaction(
    conn: psycopg.Connection[Any],
    statements: Statements,
    columns: Columns,
    in_transaction: Callable[[Any], None],
    lock_and_notify: Callable[[Any], None] | None,
) -> list[int]:
    exc: Exception | None = None
    ids: list[int] = []
    committing = False
    try:
        with conn.pipeline() as pipeline, conn.transaction():
            with conn.cursor() as curs:
                in_transaction(curs)
            if columns[0]:
                with conn.cursor(row_factory=tuple_row) as curs:
                    try:
                        if lock_and_notify is not None:
                            lock_and_notify(curs)
                        curs.execute(statements.insert_arrays, columns, prepare=True)
                        # Sync now: a unique violation raises here, not at COMMIT.
                        pipeline.sync()
                        ids = [row[0] for row in curs.fetchall()]
                    except Exception as e:
                        exc = e  # raised once the pipeline has closed
            # Leaving the blocks sends COMMIT (unless exc aborted the transaction).
            committing = exc is None
    except psycopg.Error as e:
        if committing and e.sqlstate is None:
            raise _Committing(e) from None
        raise
    if exc:
        raise exc
    return ids


def _failure(exc: psycopg.Error, *, in_flight: bool, url: str) -> StoreUnavailable:
    reason = str(exc).strip() or type(exc).__name__
    # An error the server answered with (a timeout, a shutdown...) aborted the
    # statement: nothing was committed. Only a silent break leaves the doubt.
    if in_flight and exc.sqlstate is None:
        return CommitInDoubt(url, reason)
    return StoreUnavailable(url, reason)


def is_dead(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server already closed this idle connection.

    An idle autocommit connection has nothing to read; a readable socket means
    the server ended the session (a restart, a terminated backend), so what is
    sent next cannot run, and its failure is surely not a commit.
    """
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
