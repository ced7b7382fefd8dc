"""PostgreSQL adapter (psycopg 3 with a connection pool).

The adapter runs its own statements for every port method: the
``eventsourcing`` recorders only create the tables and insert tracking records
inside an append's transaction, so none of their ``@retry``-decorated methods
runs (no stacked retries, and an append is never re-run: see
:mod:`engine.store.pg_append`). Every wait is bounded: connect, pool acquire
and statement timeouts, TCP keepalives (see :mod:`engine.store.urls` and
``docs/operations.md``).

It is longer than most modules because it implements the whole port (reads,
appends, snapshots, tracking, dead letters, the outbox) on one pool and one
set of prepared statements, and reads and switches the store's append mode
(:meth:`PostgresStore.set_appends`, :meth:`PostgresStore.held_back`), which
needs the same pool, statements and creation lock; the append SQL and its
error mapping live in :mod:`engine.store.pg_append`, the concurrent mode's
notifications in :mod:`engine.store.pg_notify`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import psycopg
import psycopg_pool
from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresDatastore
from psycopg import sql
from psycopg.rows import RowMaker, dict_row, tuple_row

from engine.core.effects import CancelTimers, OutboxOp
from engine.core.errors import AppendModeMismatch, StoreNotFound, StoreUnavailable
from engine.core.events import now_micros
from engine.store import deadletters as dl
from engine.store import pg_append, retry
from engine.store.adapter import conflict
from engine.store.deadletters import DeadLetter, StoredDeadLetter
from engine.store.outbox import TABLE as OUTBOX_TABLE
from engine.store.outbox import Outbox, SqlOutbox
from engine.store.pg_notify import Notifier
from engine.store.pg_recorder import PostgresRecorder
from engine.store.port import (
    EventStore,
    NewRecord,
    Record,
    RecordRow,
    Snapshot,
    Tracking,
    outbox_ops,
)
from engine.store.urls import APPENDS, parse_postgres_url, redact
from engine.store.watchdog import Watchdog

__all__ = ["HeldBack", "PostgresStore"]

log = logging.getLogger("nonstop.store")

EVENTS_TABLE = "nonstop_events"
SNAPSHOTS_TABLE = "nonstop_snapshots"
TRACKING_TABLE = "nonstop_tracking"
_STREAMS_PER_QUERY = 1_000
_NO_LIMIT = 2**62
"""A position no stream reaches (``iter_streams`` without ``upto``)."""
STALL_MARGIN = 2.0
"""Seconds past the statement timeout after which a busy connection is broken."""
_RECONNECT_TIMEOUT = 2.0
"""Seconds the pool keeps retrying a connection in the background before it
gives up and lets the next caller try afresh: after an outage, the first
caller connects at once instead of waiting out a long backoff."""
# Each row is built straight into a Record (``tuple.__new__``, no Python frame):
# half the CPU of copying psycopg's row tuples, and half the objects for the
# garbage collector to scan, when events are read by the thousand.
_make_record = cast("RowMaker[Record]", partial(tuple.__new__, Record))


@dataclass(frozen=True)
class HeldBack:
    """Committed positions readers cannot pass yet (see :meth:`held_back`)."""

    last: int
    """The highest committed position."""
    readable: int
    """The highest position readers may pass."""
    pid: int | None = None
    """The server process of the oldest running transaction, when held back
    and visible to this role."""
    since: str | None = None
    """When that transaction began (the server's text)."""
    application: str = ""
    """Its session's ``application_name``."""
    database: str = ""
    """Its database."""

    @property
    def positions(self) -> int:
        """How many positions wait (0: readers see everything committed)."""
        return self.last - self.readable


def _ends(op: OutboxOp) -> bool:
    """Whether ``op`` is the cancel of an ending instance's timers."""
    return isinstance(op, CancelTimers) and op.ids is None


def _record_rows(cursor: Any) -> RowMaker[Record]:
    """Row factory: each row (columns in Record order) as a :class:`Record`."""
    return _make_record


class PostgresStore(EventStore):
    """An event store in PostgreSQL.

    Options come from the URL's query or from keyword arguments (which win);
    any libpq keyword (``sslmode``, ``keepalives_idle``, ...) may be given in
    the query too.

    Args:
        url: ``postgresql://user[:password]@host[:port]/dbname[?schema=NAME]``;
            ``schema`` (default ``public``) is created when missing.
        pool_size: Connections kept open (default 4; twice as many at peaks).
        connect_timeout: Seconds to open a connection (default 3).
        statement_timeout: Seconds a statement may run (default 5; 0: none).
        pool_timeout: Seconds to wait for a pooled connection (default 5).
            A connection still busy ``statement_timeout`` + 2 s into a call
            is broken (a stalled network path; see :mod:`engine.store.watchdog`).
        libpq: More libpq keywords, e.g. the TCP keepalives
            (``keepalives_idle`` 5, ``keepalives_interval`` 2,
            ``keepalives_count`` 2, ``tcp_user_timeout`` 9000 by default).
        create: Create the schema and tables when missing; with False, a store
            without nonstop's tables raises ``StoreNotFound`` and nothing is
            created.
        appends: The append mode (``serial`` or ``concurrent``, see
            :class:`~engine.store.pg_append.Statements`). Recorded in the
            store, which every process follows: None (the default) takes the
            recorded mode (``serial`` for a new store); a mode that differs
            from the recorded one raises ``AppendModeMismatch``. Change it
            with :meth:`set_appends` (``nonstop store appends MODE``).
        writers: In the concurrent mode, the most appends one engine keeps in
            flight at once (default 4; slots past the first open only for a
            backlog of full groups, see
            :class:`~engine.runtime.committer.GroupCommitter`; the pool grows
            to fit them).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int | None = None,
        connect_timeout: float | None = None,
        statement_timeout: float | None = None,
        pool_timeout: float | None = None,
        libpq: Mapping[str, str | int] | None = None,
        create: bool = True,
        appends: str | None = None,
        writers: int | None = None,
    ) -> None:
        self.url = redact(url)
        opts = parse_postgres_url(
            url,
            pool_size=pool_size,
            connect_timeout=None if connect_timeout is None else int(connect_timeout),
            statement_timeout=statement_timeout,
            pool_timeout=pool_timeout,
            libpq=libpq,
            appends=appends,
            writers=writers,
        )
        self.schema = opts.schema
        self.options = opts
        conninfo = dict(opts.conninfo)
        if opts.statement_timeout:
            ms = int(opts.statement_timeout * 1000)
            extra = conninfo.get("options", "")
            conninfo["options"] = f"{extra} -c statement_timeout={ms}".strip()
        self._pool_timeout = opts.pool_timeout
        self.writers = opts.writers
        """Appends one engine keeps in flight (1 unless concurrent)."""
        # A connection busy this long sits on a stalled path: the server would
        # have cancelled the statement (and answered) by then.
        self._watchdog = Watchdog(
            opts.statement_timeout + STALL_MARGIN if opts.statement_timeout else 0
        )
        try:
            guard = psycopg.connect(**conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None
        try:
            if not create:
                self._check_exists(guard)
            else:
                # Stores opened at once on a fresh schema would race in CREATE
                # ... (tables, functions): one creator per schema at a time.
                guard.execute(
                    "SELECT pg_advisory_lock(hashtext(%s))", [f"nonstop:{self.schema}"]
                )
                guard.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(self.schema)
                    )
                )
            self.appends = self._append_mode(guard, opts.appends, create)
            self._datastore = PostgresDatastore(
                dbname=str(conninfo["dbname"]),
                host=str(conninfo["host"]),
                port=conninfo["port"],
                user=str(conninfo["user"]),
                password=str(conninfo.get("password", "")),
                schema=self.schema,
                originator_id_type="text",
            )
            self._pool = self._datastore.pool = _pool(
                self._datastore,
                conninfo,
                opts.pool_size,
                opts.pool_timeout,
                spare=self.writers,
            )
            events = PostgresRecorder(
                self._datastore,
                events_table_name=EVENTS_TABLE,
                tracking_table_name=TRACKING_TABLE,
                appends=self.appends,
                settings=self._settings,
            )
            snapshots = PostgresAggregateRecorder(
                self._datastore, events_table_name=SNAPSHOTS_TABLE
            )
            if create:
                _create_tables(events, snapshots)
            else:
                self._pool.open(wait=False)
        except (PersistenceError, psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            self._close_pool()
            raise StoreUnavailable(self.url, str(exc).strip()) from None
        except BaseException:
            self._close_pool()
            raise
        finally:
            guard.close()  # ends the session: releases the advisory lock
        self._recorder = events
        self._statements = events.statements
        self._prepare_statements()
        self._notifier = (
            Notifier(self._notify) if self.appends == "concurrent" else None
        )
        self._outbox = SqlOutbox(
            self._execute,
            sql.Identifier(self.schema, OUTBOX_TABLE).as_string(None),
            "%s",
            skip_locked=True,
        )

    def _append_mode(
        self, conn: psycopg.Connection[Any], requested: str | None, create: bool
    ) -> str:
        """The store's recorded append mode (recorded first for a new store).

        Raises:
            AppendModeMismatch: ``requested`` differs from the recorded mode.
        """
        table = sql.Identifier(self.schema, pg_append.SETTINGS_TABLE)
        if create:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} "
                    "(name text PRIMARY KEY, value text NOT NULL)"
                ).format(table)
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} VALUES ('appends', %s) ON CONFLICT DO NOTHING"
                ).format(table),
                [requested or "serial"],
            )
        found = conn.execute(
            "SELECT to_regclass(%s)", [table.as_string(conn)]
        ).fetchone()
        recorded = "serial"
        self._settings = found is not None and found[0] is not None
        if self._settings:
            row = conn.execute(
                sql.SQL("SELECT value FROM {} WHERE name = 'appends'").format(table)
            ).fetchone()
            recorded = str(row[0]) if row else "serial"
        if requested is not None and requested != recorded:
            raise AppendModeMismatch(self.url, recorded, requested)
        self.writers = self.options.writers if recorded == "concurrent" else 1
        return recorded

    def set_appends(self, mode: str) -> bool:
        """Switch the store's append mode, for every process on it, live.

        To ``concurrent``: one transaction installs the concurrent append
        functions and records the mode, which readers check in every read.
        To ``serial``: one transaction takes the events table in ``EXCLUSIVE``
        mode (waiting for appends in flight) and installs the serial
        functions; a second waits the same way for the appends that had
        already entered the old function, then records the mode, so readers
        stop checking transaction ids only when no concurrent append is left.
        Processes learn the new mode's number of appends in flight and its
        notification when they reopen the store; until then they stay correct
        (their appends go through the store's functions) but may be slower.

        Args:
            mode: ``serial`` or ``concurrent``.

        Returns:
            Whether the mode changed (False: it was already ``mode``).

        Raises:
            ValueError: ``mode`` is not one of them.
            StoreUnavailable: the database failed; the mode is unchanged or,
                when switching to serial, still concurrent (run it again).
        """
        if mode not in APPENDS:
            raise ValueError(f"append mode {mode!r} is not one of {', '.join(APPENDS)}")
        table = sql.Identifier(self.schema, pg_append.SETTINGS_TABLE)
        events = sql.Identifier(self.schema, EVENTS_TABLE)
        record = sql.SQL(
            "INSERT INTO {} VALUES ('appends', %s) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
        ).format(table)
        target = pg_append.Statements(
            schema=self.schema,
            events_table=EVENTS_TABLE,
            channel=self._statements.channel,
            lock_timeout=self._statements.lock_timeout,
            outbox_table=self._statements.outbox_table,
            appends=mode,
        )
        lock = sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(events)
        # One schema change at a time: a store being opened installs the
        # functions of the mode it read under the same lock.
        creating = sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(
            sql.Literal(f"nonstop:{self.schema}")
        )
        with self._connection() as conn:
            row = (
                conn.cursor(row_factory=tuple_row)
                .execute(
                    sql.SQL("SELECT value FROM {} WHERE name = 'appends'").format(table)
                )
                .fetchone()
            )
            if (str(row[0]) if row else "serial") == mode:
                return False
            with conn.transaction():
                conn.execute(creating)
                if mode == "serial":
                    conn.execute(lock)
                for statement in target.create_functions:
                    conn.execute(statement)
                if mode == "concurrent":
                    conn.execute(record, [mode])
            if mode == "serial":
                with conn.transaction():
                    conn.execute(creating)
                    conn.execute(lock)
                    conn.execute(record, [mode])
        return True

    def outbox(self) -> Outbox:
        """See :meth:`EventStore.outbox` (several runners share it)."""
        return self._outbox

    def _execute(
        self, statement: str, rows: Sequence[tuple[object, ...]], fetch: bool
    ) -> tuple[list[Any], int]:
        """One outbox statement in a transaction (see :class:`SqlOutbox`).

        Not retried: a claim or an outcome whose reply was lost is repaired by
        the lease running out, or recorded again by the next delivery.
        """
        query = sql.SQL(statement)
        with (
            self._connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            if fetch:
                cur.execute(query, rows[0])
                return cur.fetchall(), cur.rowcount
            cur.executemany(query, rows)
            return [], cur.rowcount

    def _check_exists(self, conn: psycopg.Connection[Any]) -> None:
        """Raise ``StoreNotFound`` unless the schema holds nonstop's tables."""
        row = conn.execute(
            "SELECT to_regclass(%s), to_regclass(%s)",
            [
                sql.Identifier(self.schema, EVENTS_TABLE).as_string(conn),
                sql.Identifier(self.schema, TRACKING_TABLE).as_string(conn),
            ],
        ).fetchone()
        if row is None or None in row:
            raise StoreNotFound(
                self.url, f"schema {self.schema!r} holds no nonstop tables"
            )

    def _close_pool(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()

    def _prepare_statements(self) -> None:
        table = sql.Identifier(self.schema, EVENTS_TABLE)
        snapshots = sql.Identifier(self.schema, SNAPSHOTS_TABLE)
        self._select_stream = sql.SQL(
            "SELECT notification_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = %s AND originator_version > %s "
            "ORDER BY originator_version LIMIT %s"
        ).format(table)
        self._select_streams = sql.SQL(
            "SELECT originator_id, originator_version, notification_id, topic, state "
            "FROM {} WHERE originator_id = ANY(%s::text[]) "
            "AND originator_version <= %s "
            "ORDER BY originator_id, originator_version"
        ).format(table)
        self._stream_position = sql.SQL(
            "SELECT max(originator_version) FROM {} WHERE originator_id = %s"
        ).format(table)
        visible = self._statements.visible
        self._last_global = sql.SQL(
            "SELECT max(notification_id) FROM {} WHERE {}"
        ).format(table, visible)
        self._tracking = sql.SQL(
            "SELECT max(notification_id) FROM {} WHERE application_name = %s"
        ).format(sql.Identifier(self.schema, TRACKING_TABLE))
        self._select_all = sql.SQL(
            "SELECT originator_id, originator_version, notification_id, topic, state "
            "FROM {} WHERE notification_id > %s AND {} "
            "ORDER BY notification_id LIMIT %s"
        ).format(table, visible)
        self._select_all_types = sql.SQL(
            "SELECT originator_id, originator_version, notification_id, topic, state "
            "FROM {} WHERE notification_id > %s AND topic = ANY(%s::text[]) "
            "AND {} ORDER BY notification_id LIMIT %s"
        ).format(table, visible)
        self._load_snapshot = sql.SQL(
            "SELECT originator_version, topic, state FROM {} "
            "WHERE originator_id = %s ORDER BY originator_version DESC LIMIT 1"
        ).format(snapshots)
        self._insert_snapshot = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (originator_id, originator_version) DO {}"
        )
        self._snapshots_table = snapshots
        self._dl_table = sql.Identifier(self.schema, dl.TABLE)

    # ------------------------------------------------------------ connections

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; failing to get or use it is ``StoreUnavailable``."""
        try:
            with self._pool.connection(timeout=self._pool_timeout) as conn:
                watchdog = self._watchdog
                watchdog.begin(conn)
                try:
                    yield conn
                finally:
                    watchdog.end(conn)
        except psycopg_pool.PoolTimeout as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None
        except psycopg.IntegrityError:
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(self.url, str(exc).strip()) from None
        except psycopg.Error as exc:
            if exc.sqlstate in _UNAVAILABLE_STATES:
                raise StoreUnavailable(self.url, str(exc).strip()) from None
            raise

    def _query(self, statement: sql.Composed, params: Sequence[Any]) -> list[Any]:
        """Rows of one read statement (plain tuples), retried within the budget."""

        def attempt() -> list[Any]:
            with (
                self._connection() as conn,
                conn.cursor(row_factory=tuple_row, binary=True) as cur,
            ):
                cur.execute(statement, params, prepare=True)
                return cur.fetchall()

        return retry.call(attempt)

    # ---------------------------------------------------------------- writes

    def append(
        self,
        records: Sequence[NewRecord],
        *,
        tracking: Tracking | None = None,
        dead_letters: Sequence[DeadLetter] = (),
    ) -> list[int]:
        """See :meth:`EventStore.append` (never re-run: see ``pg_append``)."""
        if not records and tracking is None and not dead_letters:
            return []
        columns: pg_append.Columns = (
            [r.stream_id for r in records],
            [r.position for r in records],
            [r.type for r in records],
            [r.data for r in records],
        )
        kwargs: dict[str, Any] = {}
        if tracking is not None:
            from eventsourcing.persistence import Tracking as _ESTracking

            kwargs["tracking"] = _ESTracking(tracking.name, tracking.position)
        if dead_letters:
            kwargs["dead_letters"] = list(dead_letters)
        ops = outbox_ops(records)
        ended = None
        if ops and not kwargs and all(_ends(op) for op in ops):
            # Instances that end, nothing else for the outbox: one statement.
            ended = ([op.stream_id for op in ops], now_micros())
        elif ops:
            kwargs["outbox"] = ops
        recorder = self._recorder

        def attempt() -> list[int]:
            with self._connection() as conn:
                if kwargs:
                    return pg_append.append(
                        conn,
                        self._statements,
                        columns,
                        url=self.url,
                        in_transaction=partial(recorder.in_transaction, **kwargs),
                    )
                return pg_append.append(
                    conn,
                    self._statements,
                    columns,
                    url=self.url,
                    ended=ended,
                )

        try:
            # Retried only while it surely did not commit (no connection, or
            # the server refused it); CommitInDoubt is never retried.
            ids = retry.call(attempt)
            if ids and self._notifier is not None:
                self._notifier.poke()
            return ids
        except (psycopg.IntegrityError, IntegrityError):
            # IntegrityError: the library's tracking hook, a tracking record
            # that does not advance.
            raise conflict(self, records, tracking, dead_letters) from None

    def save_snapshot(self, snapshot: Snapshot, *, replace: bool = False) -> None:
        """See :meth:`EventStore.save_snapshot`."""
        action = (
            sql.SQL("UPDATE SET topic = EXCLUDED.topic, state = EXCLUDED.state")
            if replace
            else sql.SQL("NOTHING")
        )
        statement = self._insert_snapshot.format(self._snapshots_table, action)
        params = (snapshot.stream_id, snapshot.position, snapshot.key, snapshot.data)
        # Idempotent (an upsert or an insert-if-absent): safe to retry.

        def attempt() -> None:
            with self._connection() as conn:
                conn.execute(statement, params)

        retry.call(attempt)

    def mark_dead_letter_replayed(self, letter_id: int, topic: str) -> bool:
        """See :meth:`EventStore.mark_dead_letter_replayed`."""
        query = sql.SQL(
            "UPDATE {} SET replayed_to = %s WHERE id = %s AND replayed_to IS NULL"
        ).format(self._dl_table)
        with self._connection() as conn:
            cur = conn.execute(query, (topic, letter_id))
            return cur.rowcount == 1

    # ----------------------------------------------------------------- reads

    def dead_letters(
        self, *, consumer: str | None = None, include_replayed: bool = False
    ) -> list[StoredDeadLetter]:
        """See :meth:`EventStore.dead_letters`."""
        where, params = dl.where(consumer, include_replayed, "%s")
        query = sql.SQL(dl.SELECT + where).format(self._dl_table)
        return [dl.stored(r) for r in self._query(query, params)]

    def last_global_position(self) -> int:
        """See :meth:`EventStore.last_global_position`."""
        rows = self._query(self._last_global, ())
        return int(rows[0][0] or 0) if rows else 0

    def held_back(self) -> HeldBack:
        """How far readers of the global order are held back, and by whom.

        In the concurrent mode a reader stops below the oldest transaction
        running on the server (see :class:`~engine.store.pg_append.Statements`);
        this says how many committed positions wait behind it, and which
        session runs it, so an operator can find a long transaction.
        """
        query = sql.SQL(
            "SELECT (SELECT max(notification_id) FROM {t}), "
            "(SELECT max(notification_id) FROM {t} WHERE {visible}), "
            "a.pid, a.xact_start::text, a.application_name, a.datname "
            "FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint "
            "%% 4294967296 AS x) s LEFT JOIN pg_stat_activity a "
            "ON a.backend_xid::text = s.x::text "
            "AND a.pid <> pg_backend_pid() LIMIT 1"
        ).format(
            t=sql.Identifier(self.schema, EVENTS_TABLE),
            visible=self._statements.visible,
        )
        rows = self._query(query, ())
        if not rows:
            return HeldBack(0, 0)
        taken, visible, pid, since, app, db = rows[0]
        last, readable = int(taken or 0), int(visible or 0)
        if readable >= last:
            return HeldBack(last, readable)
        return HeldBack(
            last,
            readable,
            None if pid is None else int(pid),
            None if since is None else str(since),
            str(app or ""),
            str(db or ""),
        )

    def stream_position(self, stream_id: str) -> int:
        """See :meth:`EventStore.stream_position`."""
        rows = self._query(self._stream_position, (stream_id,))
        return int(rows[0][0] or 0) if rows else 0

    def tracking_position(self, name: str) -> int | None:
        """See :meth:`EventStore.tracking_position`."""
        rows = self._query(self._tracking, (name,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """See :meth:`EventStore.load_snapshot`."""
        rows = self._query(self._load_snapshot, (stream_id,))
        if not rows:
            return None
        position, key, data = rows[0]
        return Snapshot(stream_id, int(position), key, bytes(data))

    def read_stream(
        self, stream_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        """See :meth:`EventStore.read_stream` (binary rows, plain tuples)."""
        rows = self._query(self._select_stream, (stream_id, after, limit))
        new = tuple.__new__  # half the cost of Record(...) per row
        return [new(Record, (stream_id, v, g, t, s)) for g, v, t, s in rows]

    def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Sequence[str] = ()
    ) -> list[Record]:
        """See :meth:`EventStore.read_all` (binary rows, built as records)."""

        def attempt() -> list[Record]:
            with (
                self._connection() as conn,
                conn.cursor(row_factory=_record_rows, binary=True) as cur,
            ):
                if types:
                    params: tuple[Any, ...] = (after, list(types), limit)
                    cur.execute(self._select_all_types, params, prepare=True)
                else:
                    cur.execute(self._select_all, (after, limit), prepare=True)
                rows: list[Record] = cur.fetchall()
                return rows

        return retry.call(attempt)

    def iter_streams(
        self, stream_ids: Sequence[str], *, upto: int | None = None
    ) -> Iterator[list[RecordRow]]:
        """See :meth:`EventStore.iter_streams` (one query per 1,000 streams)."""
        ids = list(dict.fromkeys(stream_ids))
        for i in range(0, len(ids), _STREAMS_PER_QUERY):
            yield self._read_chunk(ids[i : i + _STREAMS_PER_QUERY], upto)

    def _read_chunk(self, stream_ids: list[str], upto: int | None) -> list[RecordRow]:
        """The rows of ``stream_ids``, ordered by stream id and position."""
        last = _NO_LIMIT if upto is None else upto
        rows: list[RecordRow] = self._query(self._select_streams, (stream_ids, last))
        return rows

    def drop(self) -> None:
        """Drop this store's schema with everything in it (tests only)."""
        with self._connection() as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(self.schema)
                )
            )

    def _notify(self) -> None:
        """One notification on the store's channel (see ``pg_notify``)."""
        with self._connection() as conn:
            conn.execute(self._statements.notify)

    def close(self) -> None:
        """Send a pending notification, close the connection pool."""
        if self._notifier is not None:
            self._notifier.close()
        self._pool.close()
        self._watchdog.close()


_UNAVAILABLE_STATES = frozenset(
    {
        "57014",  # query_canceled: the statement timeout
        "55P03",  # lock_not_available: the lock timeout
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "53300",  # too_many_connections
    }
)
"""Server errors that mean "unavailable now", not a bug in the statement."""


def _pool(
    datastore: PostgresDatastore,
    conninfo: dict[str, Any],
    size: int,
    timeout: float,
    *,
    spare: int = 1,
) -> psycopg_pool.ConnectionPool[Any]:
    """The store's pool: bounded waits, fast recovery after an outage.

    It grows to twice ``size`` at peaks, or to ``size`` + ``spare`` when that
    is more (room for an engine's appends in flight beside its reads).
    """
    return psycopg_pool.ConnectionPool(
        kwargs={**conninfo, "row_factory": dict_row},
        min_size=size,
        max_size=max(2 * size, size + spare),
        open=False,
        configure=datastore.after_connect_func(),
        timeout=timeout,
        reconnect_timeout=_RECONNECT_TIMEOUT,
        check=_check_alive,
        name="nonstop",
    )


def _create_tables(*recorders: Any, attempts: int = 3) -> None:
    """Create the tables (``IF NOT EXISTS``), again if a statement timed out.

    DDL waits for locks on the catalog that a busy server may hold for a few
    seconds; each try is bounded by the statement timeout, and creating twice
    is harmless.
    """
    for attempt in range(1, attempts + 1):
        try:
            for recorder in recorders:
                recorder.create_table()
            return
        except PersistenceError as exc:
            if attempt == attempts or "statement timeout" not in str(exc):
                raise
            log.warning("creating the store's tables timed out; trying again")


def _check_alive(conn: psycopg.Connection[Any]) -> None:
    """Pool check, without a round trip: refuse a connection the server closed.

    After an outage the pool holds connections the server has ended; handing
    one out would fail the caller's first statement although the database is
    back. The pool discards it and takes (or opens) another.
    """
    if pg_append.is_dead(conn):
        conn.close()  # closed, the pool discards it instead of handing it back
        raise psycopg.OperationalError("the server closed this pooled connection")
