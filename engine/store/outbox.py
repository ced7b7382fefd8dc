"""The outbox: effect requests and timers, stored with the events that asked.

A decision's :data:`~engine.core.effects.OutboxOp` values ride on its last
record (``NewRecord.outbox``); every adapter writes them in the append's
transaction (:func:`sql_writes` for SQLite and PostgreSQL, :class:`MemoryOutbox`
in memory), so a request exists if and only if its events do.

The effect runner and the timer service then work through :class:`Outbox`:
:meth:`~Outbox.claim` leases due rows (PostgreSQL: ``FOR UPDATE SKIP LOCKED``,
so several runners share the work; a lease that runs out makes the row due
again, for the runner that died holding it), :meth:`~Outbox.finish` records
the outcome. Row states: ``pending`` -> ``done`` | ``failed`` | ``cancelled``;
a failed row can be put back (:meth:`~Outbox.retry`).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from engine.core.effects import CancelTimers, OutboxItem, OutboxKind, OutboxOp

__all__ = [
    "COLUMNS",
    "TABLE",
    "Entry",
    "MemoryOutbox",
    "Outbox",
    "OutboxStatus",
    "Pending",
    "SqlOutbox",
    "ddl",
    "sql_writes",
]

TABLE = "nonstop_outbox"
"""The outbox table, in the event store's database (and schema)."""
OutboxStatus = Literal["pending", "done", "failed", "cancelled"]
COLUMNS = (
    "id, kind, stream_id, workflow, name, version, payload, due_at, status, "
    "attempts, error, lease_until, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class Entry:
    """An outbox row."""

    item: OutboxItem
    """What was asked."""
    status: OutboxStatus
    """``pending``, ``done``, ``failed`` or ``cancelled``."""
    attempts: int
    """Handler runs recorded so far (effects)."""
    error: str | None
    """The last error or the note of the outcome."""
    lease_until: int
    """A runner holds it until then (microseconds; 0: nobody)."""
    created_at: int
    """When it was written, microseconds."""
    updated_at: int
    """When its status last changed, microseconds."""

    @property
    def id(self) -> str:
        """The outbox id."""
        return self.item.id


@dataclass(frozen=True, slots=True)
class Pending:
    """Pending (or failed) rows of one workflow version and effect or timer type."""

    workflow: str
    """``name@version`` that asked."""
    kind: OutboxKind
    """``effect`` or ``timer``."""
    name: str
    """Effect type or timer command path."""
    version: int
    """Handler version (0 for timers)."""
    count: int
    """How many rows."""


class Outbox(ABC):
    """Claims and outcomes of outbox rows (thread-safe, blocking)."""

    @abstractmethod
    def claim(
        self, kind: OutboxKind, *, now: int, lease: int, limit: int
    ) -> list[Entry]:
        """Lease up to ``limit`` pending rows due at ``now`` for ``lease`` µs.

        A row leased by another runner is skipped until its lease runs out.
        """

    @abstractmethod
    def finish(
        self, outcomes: Sequence[tuple[str, OutboxStatus, int, str | None]], now: int
    ) -> int:
        """Record ``(id, status, attempts, note)`` of delivered rows.

        A row cancelled before it was claimed stays cancelled; one cancelled
        while a runner held it (the delivery happened) gets the outcome.

        Returns:
            How many rows took the outcome.
        """

    @abstractmethod
    def entries(
        self,
        *,
        kind: OutboxKind | None = None,
        status: OutboxStatus | None = None,
        limit: int = 1000,
    ) -> list[Entry]:
        """Rows, oldest first."""

    @abstractmethod
    def get(self, entry_id: str) -> Entry | None:
        """One row, if it exists."""

    @abstractmethod
    def retry(self, entry_id: str, now: int) -> bool:
        """Put a failed row back to pending, due now; False if it is not failed."""

    @abstractmethod
    def cancel(self, entry_id: str, now: int) -> bool:
        """Cancel a pending or failed row; False if it is neither."""

    @abstractmethod
    def pending(self) -> list[Pending]:
        """Counts of pending and failed rows by workflow version and type."""


def ddl(*, blob: str, bigint: str) -> list[str]:
    """The table and index DDL, in the adapter's type names."""
    return [
        f"CREATE TABLE IF NOT EXISTS {{table}} (id text PRIMARY KEY, "
        "kind text NOT NULL, stream_id text NOT NULL, workflow text NOT NULL, "
        f"name text NOT NULL, version integer NOT NULL, payload {blob} NOT NULL, "
        f"due_at {bigint} NOT NULL, status text NOT NULL, "
        "attempts integer NOT NULL, error text, "
        f"lease_until {bigint} NOT NULL, created_at {bigint} NOT NULL, "
        f"updated_at {bigint} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {index}_due ON {table} (kind, status, due_at)",
        "CREATE INDEX IF NOT EXISTS {index}_stream ON {table} (stream_id, kind)",
        # Rows done stay in the table: what is open is counted through this
        # partial index, whatever the history (versions, retire).
        "CREATE INDEX IF NOT EXISTS {index}_open ON {table} "
        "(workflow, kind, name, version) WHERE status IN ('pending', 'failed')",
    ]


def sql_writes(
    ops: Sequence[OutboxOp], table: str, mark: str, now: int
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements (and parameter rows) that write ``ops``, in order.

    Setting a keyed timer again re-arms it (an upsert).
    """
    m = ", ".join([mark] * 14)
    upsert = (
        f"INSERT INTO {table} ({COLUMNS}) VALUES ({m}) ON CONFLICT (id) DO UPDATE "
        "SET due_at = excluded.due_at, payload = excluded.payload, "
        "name = excluded.name, workflow = excluded.workflow, status = 'pending', "
        "attempts = 0, error = NULL, lease_until = 0, updated_at = excluded.updated_at"
    )
    # A timer a runner holds is being delivered (maybe by the very decision
    # that ends the instance): its outcome is recorded, not a cancel.
    cancel_all = (
        f"UPDATE {table} SET status = 'cancelled', updated_at = {mark} "
        f"WHERE stream_id = {mark} AND kind = 'timer' AND status = 'pending' "
        f"AND lease_until <= {mark}"
    )
    cancel_one = (
        f"UPDATE {table} SET status = 'cancelled', updated_at = {mark} "
        f"WHERE id = {mark} AND kind = 'timer' AND status = 'pending'"
    )
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    for op in ops:
        if isinstance(op, OutboxItem):
            row = (*_item_values(op), "pending", 0, None, 0, now, now)
            if out and out[-1][0] is upsert:
                out[-1][1].append(row)
            else:
                out.append((upsert, [row]))
        elif op.ids is None:
            out.append((cancel_all, [(now, op.stream_id, now)]))
        else:
            out.append((cancel_one, [(now, i) for i in op.ids]))
    return out


def _item_values(i: OutboxItem) -> tuple[Any, ...]:
    return (
        i.id,
        i.kind,
        i.stream_id,
        i.workflow,
        i.name,
        i.version,
        i.payload,
        i.due_at,
    )


def _entry(row: Sequence[Any]) -> Entry:
    (i, kind, sid, wf, name, ver, payload, due, status, att, err, lease, c, u) = row
    item = OutboxItem(i, kind, sid, wf, name, int(ver), bytes(payload), int(due))
    return Entry(item, status, int(att), err, int(lease), int(c), int(u))


_OPEN = "status = 'pending' OR (status = 'cancelled' AND lease_until > 0)"
"""Rows an outcome is recorded for: pending, or cancelled while a runner held
them (the delivery happened: the outcome is the truth)."""

Execute = Callable[[str, Sequence[tuple[Any, ...]], bool], tuple[list[Any], int]]
"""``execute(sql, parameter rows, fetch) -> (rows, rowcount)`` in one transaction."""


class SqlOutbox(Outbox):
    """The outbox over SQL (SQLite or PostgreSQL).

    Args:
        execute: Runs one statement (once per parameter row) in a transaction.
        table: The qualified table name.
        mark: The parameter mark (``?`` or ``%s``).
        skip_locked: Claim with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL).
    """

    def __init__(
        self, execute: Execute, table: str, mark: str, *, skip_locked: bool
    ) -> None:
        self._execute = execute
        self._table = table
        self._m = mark
        lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
        m = mark
        # Ordered by the index's due_at alone: a claim reads no more than
        # ``limit`` rows, however many are due.
        self._claim = (
            f"UPDATE {table} SET lease_until = {m} WHERE id IN (SELECT id FROM {table} "
            f"WHERE kind = {m} AND status = 'pending' AND due_at <= {m} "
            f"AND lease_until <= {m} ORDER BY due_at LIMIT {m}{lock}) "
            f"RETURNING {COLUMNS}"
        )

    def claim(
        self, kind: OutboxKind, *, now: int, lease: int, limit: int
    ) -> list[Entry]:
        """See :meth:`Outbox.claim`."""
        rows, _ = self._execute(
            self._claim, [(now + lease, kind, now, now, limit)], True
        )
        return sorted(map(_entry, rows), key=_due)

    def finish(
        self, outcomes: Sequence[tuple[str, OutboxStatus, int, str | None]], now: int
    ) -> int:
        """See :meth:`Outbox.finish`."""
        if not outcomes:
            return 0
        m = self._m
        _, count = self._execute(
            f"UPDATE {self._table} SET status = {m}, attempts = {m}, error = {m}, "
            f"lease_until = 0, updated_at = {m} WHERE id = {m} AND ({_OPEN})",
            [(s, a, note, now, i) for i, s, a, note in outcomes],
            False,
        )
        return count

    def entries(
        self,
        *,
        kind: OutboxKind | None = None,
        status: OutboxStatus | None = None,
        limit: int = 1000,
    ) -> list[Entry]:
        """See :meth:`Outbox.entries`."""
        clauses, params = [], []
        for column, value in (("kind", kind), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = {self._m}")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows, _ = self._execute(
            f"SELECT {COLUMNS} FROM {self._table}{where} "
            f"ORDER BY created_at, id LIMIT {self._m}",
            [(*params, limit)],
            True,
        )
        return [_entry(r) for r in rows]

    def get(self, entry_id: str) -> Entry | None:
        """See :meth:`Outbox.get`."""
        rows, _ = self._execute(
            f"SELECT {COLUMNS} FROM {self._table} WHERE id = {self._m}",
            [(entry_id,)],
            True,
        )
        return _entry(rows[0]) if rows else None

    def retry(self, entry_id: str, now: int) -> bool:
        """See :meth:`Outbox.retry`."""
        m = self._m
        _, count = self._execute(
            f"UPDATE {self._table} SET status = 'pending', attempts = 0, "
            f"error = NULL, lease_until = 0, due_at = {m}, updated_at = {m} "
            f"WHERE id = {m} AND status = 'failed'",
            [(now, now, entry_id)],
            False,
        )
        return count == 1

    def cancel(self, entry_id: str, now: int) -> bool:
        """See :meth:`Outbox.cancel`."""
        m = self._m
        _, count = self._execute(
            f"UPDATE {self._table} SET status = 'cancelled', updated_at = {m} "
            f"WHERE id = {m} AND status IN ('pending', 'failed')",
            [(now, entry_id)],
            False,
        )
        return count == 1

    def pending(self) -> list[Pending]:
        """See :meth:`Outbox.pending`."""
        rows, _ = self._execute(
            f"SELECT workflow, kind, name, version, count(*) FROM {self._table} "
            "WHERE status IN ('pending', 'failed') "
            "GROUP BY workflow, kind, name, version "
            "ORDER BY workflow, kind, name, version",
            [()],
            True,
        )
        return [Pending(w, k, n, int(v), int(c)) for w, k, n, v, c in rows]


class MemoryOutbox(Outbox):
    """The outbox of the in-memory store (written by its recorder)."""

    def __init__(self, lock: threading.Lock | threading.RLock) -> None:
        self._lock = lock
        self._rows: dict[str, Entry] = {}

    def write(self, ops: Sequence[OutboxOp], now: int) -> None:
        """Apply ``ops`` (called inside the recorder's append)."""
        with self._lock:
            for op in ops:
                if isinstance(op, OutboxItem):
                    old = self._rows.get(op.id)
                    created = old.created_at if old is not None else now
                    self._rows[op.id] = Entry(op, "pending", 0, None, 0, created, now)
                    continue
                self._cancel_timers(op, now)

    def _cancel_timers(self, op: CancelTimers, now: int) -> None:
        for key, e in list(self._rows.items()):
            if op.ids is None:
                hit = e.item.stream_id == op.stream_id and e.lease_until <= now
            else:
                hit = key in op.ids
            if hit and e.item.kind == "timer" and e.status == "pending":
                self._rows[key] = replace(e, status="cancelled", updated_at=now)

    def claim(
        self, kind: OutboxKind, *, now: int, lease: int, limit: int
    ) -> list[Entry]:
        """See :meth:`Outbox.claim`."""
        with self._lock:
            due = sorted(
                (
                    e
                    for e in self._rows.values()
                    if e.item.kind == kind
                    and e.status == "pending"
                    and e.item.due_at <= now
                    and e.lease_until <= now
                ),
                key=_due,
            )[:limit]
            out = [replace(e, lease_until=now + lease) for e in due]
            for e in out:
                self._rows[e.id] = e
            return out

    def finish(
        self, outcomes: Sequence[tuple[str, OutboxStatus, int, str | None]], now: int
    ) -> int:
        """See :meth:`Outbox.finish`."""
        count = 0
        with self._lock:
            for i, status, attempts, note in outcomes:
                e = self._rows.get(i)
                if e is None or not _open(e):
                    continue
                self._rows[i] = replace(
                    e,
                    status=status,
                    attempts=attempts,
                    error=note,
                    lease_until=0,
                    updated_at=now,
                )
                count += 1
        return count

    def entries(
        self,
        *,
        kind: OutboxKind | None = None,
        status: OutboxStatus | None = None,
        limit: int = 1000,
    ) -> list[Entry]:
        """See :meth:`Outbox.entries`."""
        with self._lock:
            rows = [
                e
                for e in self._rows.values()
                if (kind is None or e.item.kind == kind)
                and (status is None or e.status == status)
            ]
        return sorted(rows, key=lambda e: (e.created_at, e.id))[:limit]

    def get(self, entry_id: str) -> Entry | None:
        """See :meth:`Outbox.get`."""
        with self._lock:
            return self._rows.get(entry_id)

    def retry(self, entry_id: str, now: int) -> bool:
        """See :meth:`Outbox.retry`."""
        with self._lock:
            e = self._rows.get(entry_id)
            if e is None or e.status != "failed":
                return False
            item = replace_item(e.item, due_at=now)
            self._rows[entry_id] = Entry(item, "pending", 0, None, 0, e.created_at, now)
            return True

    def cancel(self, entry_id: str, now: int) -> bool:
        """See :meth:`Outbox.cancel`."""
        with self._lock:
            e = self._rows.get(entry_id)
            if e is None or e.status not in ("pending", "failed"):
                return False
            self._rows[entry_id] = replace(e, status="cancelled", updated_at=now)
            return True

    def pending(self) -> list[Pending]:
        """See :meth:`Outbox.pending`."""
        counts: dict[tuple[str, OutboxKind, str, int], int] = {}
        with self._lock:
            for e in self._rows.values():
                if e.status in ("pending", "failed"):
                    i = e.item
                    key = (i.workflow, i.kind, i.name, i.version)
                    counts[key] = counts.get(key, 0) + 1
        return [Pending(*k, c) for k, c in sorted(counts.items())]


def _due(e: Entry) -> tuple[int, int, str]:
    return (e.item.due_at, e.created_at, e.id)


def _open(e: Entry) -> bool:
    return e.status == "pending" or (e.status == "cancelled" and e.lease_until > 0)


def replace_item(item: OutboxItem, *, due_at: int) -> OutboxItem:
    """``item`` due at ``due_at``."""
    return OutboxItem(
        item.id,
        item.kind,
        item.stream_id,
        item.workflow,
        item.name,
        item.version,
        item.payload,
        due_at,
    )
