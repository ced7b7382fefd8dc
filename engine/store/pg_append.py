"""The PostgreSQL append: one statement for events alone, one transaction otherwise.

Events alone go through a server-side function (created with the tables) that
takes the table lock, the positions and inserts every row: one round trip,
committed by the server at its end (the connections are in autocommit),
instead of BEGIN ... COMMIT over two. An append with a tracking record, dead
letters or outbox rows is one pipelined transaction that calls the same
function first. How appends exclude each other (one at a time, or several in
flight) is the store's append mode: see :class:`Statements`.

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
from engine.store.urls import APPENDS

__all__ = ["SETTINGS_TABLE", "Columns", "Statements", "append", "is_dead"]

Columns = tuple[list[str], list[int], list[str], list[bytes]]
"""Events to insert as columns: stream ids, positions, type names, envelopes."""


SETTINGS_TABLE = "nonstop_settings"
"""The store's settings (``name``, ``value``): the append mode lives there."""

_SECTION_KEY = 0x6E6F6E73
"""First half of the advisory-lock key of the id section (``hashtext`` of the
schema is the second): a key space apart from the one-key creation lock."""


@dataclass
class Statements:
    """The SQL of the append for one schema, events table and append mode.

    In both modes every event's row records the id of the transaction that
    wrote it (``tx``), and the transaction takes its id and then its global
    positions in one step no other append interleaves with: so of two appends,
    the one with the lower positions has the lower transaction id.

    - ``serial``: each append takes the events table in ``EXCLUSIVE`` mode,
      so appends commit one at a time, in the order of their positions; a
      reader may read up to the last committed position.
    - ``concurrent``: appends hold the table in ``ROW EXCLUSIVE`` mode only
      (what any ``INSERT`` takes), and take the transaction id and positions
      under a session advisory lock held for microseconds, not until commit:
      several appends are in flight at once and may commit out of position
      order. A reader then returns only the rows of transactions older than
      the oldest transaction still running
      (``tx < pg_snapshot_xmin(pg_current_snapshot())``): every position below
      such a row belongs to an older transaction, which has ended, so no row
      can later appear below what a reader has passed.
    """

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
    appends: str = "serial"
    """The append mode: ``serial`` or ``concurrent``."""
    settings: bool = True
    """The store has its settings table and ``tx`` column; False for a store
    written by a release before them and opened read-only (it appends
    serially: every row is visible)."""
    create_functions: list[sql.Composed] = field(init=False)
    """DDL of the id section and of the two append functions, for this mode."""
    call_ending: sql.Composed = field(init=False)
    """The call of the function that also cancels the pending timers of
    instances that end: the four arrays, the ended streams, now."""
    call_function: sql.Composed = field(init=False)
    """The call of the append function with the four column arrays."""
    notify: sql.Composed = field(init=False)
    """The notification sent after concurrent appends have committed (see
    :mod:`engine.store.pg_notify`); the serial mode's function queues it."""
    visible: sql.Composed = field(init=False)
    """The condition a row must meet to be read in the global order (see
    above); true for every row while the store appends serially."""

    def __post_init__(self) -> None:
        if self.appends not in APPENDS:
            raise ValueError(f"append mode {self.appends!r} is not one of {APPENDS}")
        table = sql.Identifier(self.schema, self.events_table)
        ids = sql.Identifier(self.schema, f"{self.events_table}_ids")
        sequence = sql.Literal(
            sql.Identifier(
                self.schema, f"{self.events_table}_notification_id_seq"
            ).as_string(None)
        )
        key = sql.SQL("{}, hashtext({})").format(
            sql.Literal(_SECTION_KEY), sql.Literal(self.schema)
        )
        section = sql.SQL(
            "CREATE OR REPLACE FUNCTION {ids}(integer) RETURNS bigint[] "
            "LANGUAGE plpgsql AS $$ DECLARE out bigint[]; BEGIN "
            "BEGIN "
            "PERFORM pg_advisory_lock({key}); "
            "PERFORM pg_current_xact_id(); "
            "out := ARRAY(SELECT nextval({sequence}) FROM generate_series(1, $1)); "
            "PERFORM pg_advisory_unlock({key}); "
            # A cancel (statement timeout) is not in OTHERS: named, so the
            # session never keeps the lock.
            "EXCEPTION WHEN OTHERS OR query_canceled THEN "
            "PERFORM pg_advisory_unlock({key}); RAISE; "
            "END; RETURN out; END $$"
        ).format(ids=ids, key=key, sequence=sequence)
        if self.appends == "serial":
            prologue = sql.SQL(
                "LOCK TABLE {table} IN EXCLUSIVE MODE; NOTIFY {channel}; "
                "PERFORM pg_current_xact_id(); "
                "RETURN QUERY INSERT INTO {table} "
                "(originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest($1, $2, $3, $4) RETURNING notification_id; "
            )
        else:
            prologue = sql.SQL(
                "LOCK TABLE {table} IN ROW EXCLUSIVE MODE; "
                "RETURN QUERY INSERT INTO {table} "
                "(notification_id, originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest({ids}(cardinality($1)), $1, $2, $3, $4) "
                "RETURNING notification_id; "
            )
        insert = prologue.format(
            table=table, channel=sql.Identifier(self.channel), ids=ids
        )
        timeout = sql.Literal(f"{self.lock_timeout}s")
        function = sql.Identifier(self.schema, f"{self.events_table}_append")
        ending = sql.Identifier(self.schema, f"{self.events_table}_append_ending")
        create_function = sql.SQL(
            "CREATE OR REPLACE FUNCTION {append}"
            "(text[], bigint[], text[], bytea[]) RETURNS SETOF bigint "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "SET LOCAL lock_timeout = {timeout}; {insert}END $$"
        ).format(append=function, timeout=timeout, insert=insert)
        create_ending = sql.SQL(
            "CREATE OR REPLACE FUNCTION {append}"
            "(text[], bigint[], text[], bytea[], text[], bigint) RETURNS SETOF bigint "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "SET LOCAL lock_timeout = {timeout}; {insert}"
            # After the events: a write before them would take the
            # transaction id outside the section (see the class docstring).
            "UPDATE {outbox} SET status = 'cancelled', updated_at = $6 "
            "WHERE stream_id = ANY($5) AND kind = 'timer' AND status = 'pending' "
            "AND lease_until <= $6; END $$"
        ).format(
            append=ending,
            timeout=timeout,
            insert=insert,
            outbox=sql.Identifier(self.schema, self.outbox_table),
        )
        self.create_functions = [section, create_function, create_ending]
        self.call_ending = sql.SQL(
            "SELECT * FROM {}(%b::text[], %b::bigint[], %b::text[], %b::bytea[], "
            "%b::text[], %b::bigint)"
        ).format(ending)
        self.call_function = sql.SQL(
            "SELECT * FROM {}(%b::text[], %b::bigint[], %b::text[], %b::bytea[])"
        ).format(function)
        self.notify = sql.SQL("NOTIFY {}").format(sql.Identifier(self.channel))
        self.visible = sql.SQL(
            "TRUE"
            if not self.settings
            else "(tx IS NULL OR tx < pg_snapshot_xmin(pg_current_snapshot()) "
            "OR (SELECT value FROM {} WHERE name = 'appends') IS DISTINCT FROM "
            "'concurrent')"
        ).format(sql.Identifier(self.schema, SETTINGS_TABLE))


def append(
    conn: psycopg.Connection[Any],
    statements: Statements,
    columns: Columns,
    *,
    url: str,
    in_transaction: Callable[[Any], None] | None = None,
    ended: tuple[list[str], int] | None = None,
) -> list[int]:
    """Append ``columns`` (and what ``in_transaction`` inserts) on ``conn``.

    Args:
        conn: An autocommit connection.
        statements: The SQL for the store's schema.
        columns: The events, one list per column (may be empty).
        url: The store's redacted URL, for errors.
        in_transaction: Inserts the tracking record, dead letters and outbox
            rows in the transaction's cursor, after the events; None for
            events alone (one statement).
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
                ids = [row[0] for row in curs.fetchall()]
        else:
            ids = _transaction(conn, statements, columns, in_transaction)
    except _Committing as c:
        raise _failure(c.cause, in_flight=True, url=url) from None
    except psycopg.IntegrityError:
        raise
    except psycopg.Error as exc:
        raise _failure(exc, in_flight=sent, url=url) from None
    return ids


class _RolledBack(Exception):
    """A step of the transaction failed: roll it back, then raise that."""


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
) -> list[int]:
    exc: Exception | None = None
    ids: list[int] = []
    committing = False
    try:
        with conn.pipeline() as pipeline, conn.transaction():
            # The events first: their positions (and the transaction's id)
            # are taken before anything else in the transaction writes.
            if columns[0]:
                with conn.cursor(row_factory=tuple_row) as curs:
                    try:
                        curs.execute(statements.call_function, columns, prepare=True)
                        # Sync now: a unique violation raises here, not at COMMIT.
                        pipeline.sync()
                        ids = [row[0] for row in curs.fetchall()]
                    except Exception as e:
                        exc = e  # raised once the pipeline has closed
            if exc is None:
                with conn.cursor() as curs:
                    try:
                        in_transaction(curs)
                        pipeline.sync()
                    except Exception as e:
                        exc = e
            if exc is not None:
                raise _RolledBack  # leaving the blocks sends ROLLBACK
            committing = True  # leaving the blocks sends COMMIT
    except _RolledBack:
        pass
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
