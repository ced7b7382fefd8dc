"""Group commit, and the truth about commits in doubt.

Concurrent callers do not each pay for a transaction: each hands its records
to :meth:`GroupCommitter.commit`; a write slot commits whatever has queued up
while the previous commits were in flight, in one transaction. A store that
runs several appends at once (PostgreSQL in the ``concurrent`` append mode)
gets several slots; every other store one. A lone caller never waits for a
window to close: with a slot free and nothing queued, its append starts at
once. That write is the committer's (a task it owns), not the caller's: a
caller cancelled meanwhile does not stop it, and
:meth:`GroupCommitter.close` waits for it.

When the store raises :class:`~engine.core.errors.CommitInDoubt` (the
connection failed after the append may have reached the server), nothing is
decided again. Every decision's first record carries an idempotency key in its
bytes (the caller's command id, or a key the engine generated), so the committer
reads back the records at the expected positions and compares bytes: its own
records mean the append committed; empty positions mean it did not, and it
appends the same records again (same expected positions: it cannot apply
twice); another writer's records are a normal
:class:`~engine.core.errors.ConcurrencyConflict`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from engine.core.errors import CommitInDoubt, ConcurrencyConflict
from engine.store import DeadLetter, EventStore, NewRecord, Tracking

__all__ = ["GroupCommitter", "append_resolving"]

log = logging.getLogger("nonstop.runtime")
_Outcome = Literal["committed", "absent"]


def append_resolving(
    store: EventStore,
    records: Sequence[NewRecord],
    *,
    tracking: Tracking | None = None,
    dead_letters: Sequence[DeadLetter] = (),
    max_doubts: int = 3,
) -> None:
    """Append, resolving a commit in doubt by reading the records back (blocking).

    Raises:
        ConcurrencyConflict: another writer holds one of the positions.
        CommitInDoubt: still in doubt after ``max_doubts`` read-backs.
        StoreUnavailable: the store cannot be reached (the append did not
            happen, or the read-back failed: then the append is in doubt).
    """
    doubts = 0
    while True:
        try:
            store.append(records, tracking=tracking, dead_letters=dead_letters)
            return
        except ConcurrencyConflict:
            # After a doubt read back as absent, the server may still have
            # committed the first append (it finished a transaction its
            # client had given up on): the positions then hold our own records.
            if doubts and _find_out(store, records, tracking) == "committed":
                log.warning("commit in doubt resolved late: committed after all")
                return
            raise
        except CommitInDoubt as exc:
            doubts += 1
            outcome = _find_out(store, records, tracking)
            if outcome == "committed":
                log.warning("commit in doubt resolved: committed (%s)", exc.reason)
                return
            log.warning("commit in doubt resolved: not committed (%s)", exc.reason)
            if doubts >= max_doubts:
                raise


def _find_out(
    store: EventStore, records: Sequence[NewRecord], tracking: Tracking | None
) -> _Outcome:
    """Whether an append whose reply was lost committed.

    The append is one transaction: one of its records found stored means all
    are. Records are ours when the stored bytes equal ours (the idempotency key
    is in them).

    Raises:
        ConcurrencyConflict: another writer's records hold some positions.
    """
    if not records:
        if tracking is None:
            return "committed"  # nothing was to be written
        done = store.tracking_position(tracking.name)
        return (
            "committed"
            if done is not None and done >= tracking.position
            else ("absent")
        )
    firsts: dict[str, NewRecord] = {}
    for rec in records:
        firsts.setdefault(rec.stream_id, rec)
    taken: list[tuple[str, int]] = []
    for rec in firsts.values():
        found = store.read_stream(rec.stream_id, after=rec.position - 1, limit=1)
        if not found or found[0].position != rec.position:
            continue
        if found[0].type == rec.type and bytes(found[0].data) == rec.data:
            return "committed"
        taken.append((rec.stream_id, rec.position))
    if taken:
        raise ConcurrencyConflict(taken)
    return "absent"


@dataclass(slots=True)
class _Pending:
    records: list[NewRecord]
    future: asyncio.Future[None]


class GroupCommitter:
    """Commits the records of concurrent callers in as few transactions as it can.

    Up to ``writers`` appends are in flight at once (the store's
    :attr:`~engine.store.EventStore.writers`: 1 unless it runs several
    appends at once). A caller who finds nothing in flight writes at once;
    the others queue, and the slot that frees takes what has queued (up to
    ``max_batch`` records) as one append. A further slot opens only while a
    full group (``max_batch`` records) waits: callers that each await their
    own commit go no faster when what queued during one flight is split over
    several transactions, so extra slots serve only a backlog.

    Args:
        store: Where records are appended.
        max_batch: Most records one group commit writes.
        writers: Most appends in flight at once (default: the store's).
    """

    def __init__(
        self, store: EventStore, *, max_batch: int = 1_000, writers: int | None = None
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.writers = max(1, writers if writers is not None else store.writers)
        self.commits = 0
        """Transactions written (for monitoring)."""
        self._pending: list[_Pending] = []
        self._queued_records = 0
        self._flights: set[asyncio.Future[None]] = set()
        self._owned: set[asyncio.Future[None]] = set()

    @property
    def queued(self) -> int:
        """Callers waiting for the next group commit."""
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Group commits being written now."""
        return len(self._flights)

    @property
    def busy(self) -> bool:
        """A write is in flight or queued."""
        return bool(self._flights) or bool(self._pending) or bool(self._owned)

    def append(
        self,
        records: Sequence[NewRecord],
        *,
        tracking: Tracking | None = None,
        dead_letters: Sequence[DeadLetter] = (),
    ) -> None:
        """One append of its own (blocking), in-doubt commits resolved; counted."""
        append_resolving(
            self.store, records, tracking=tracking, dead_letters=dead_letters
        )
        self.commits += 1

    async def write(
        self,
        records: Sequence[NewRecord],
        *,
        tracking: Tracking | None = None,
        dead_letters: Sequence[DeadLetter] = (),
    ) -> None:
        """One append of its own, as a task the committer owns.

        A caller cancelled meanwhile does not stop it; :meth:`close` waits for
        it. Raises what :meth:`append` raises.
        """
        task = asyncio.ensure_future(
            asyncio.to_thread(
                self.append, records, tracking=tracking, dead_letters=dead_letters
            )
        )
        self._owned.add(task)
        task.add_done_callback(self._owned_done)
        await asyncio.shield(task)

    def _owned_done(self, task: asyncio.Future[None]) -> None:
        self._owned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a cancelled caller never reads it

    async def commit(self, records: list[NewRecord]) -> None:
        """Commit ``records`` (one caller's decision), alone or with others.

        Raises:
            ConcurrencyConflict: another writer took one of its positions.
            StoreUnavailable: the store failed (see :func:`append_resolving`).
        """
        pending = _Pending(records, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        self._queued_records += len(records)
        # With a free slot and nobody ahead, this caller's write starts now;
        # whoever comes meanwhile queues for the next group commit. A write is
        # a task the committer owns: cancelling its caller does not stop it.
        self._fly()
        try:
            await pending.future
        except asyncio.CancelledError:
            if pending in self._pending:  # not taken yet: it is never written
                self._pending.remove(pending)
                self._queued_records -= len(pending.records)
            raise

    async def close(self) -> None:
        """Wait for every write in flight or queued (cancel-safe: they go on)."""
        while self._flights or self._owned or self._pending:
            waiting = [*self._flights, *self._owned]
            if waiting:
                await asyncio.wait(waiting)
            await asyncio.sleep(0)  # let done callbacks start the next writes

    def _fly(self) -> None:
        """Start group commits while a slot is free and callers are queued.

        The first slot takes whatever queued; another opens only for a full
        group.
        """
        while self._pending and len(self._flights) < self.writers:
            if self._flights and self._queued_records < self.max_batch:
                return
            batch: list[_Pending] = []
            size = 0
            while self._pending and (not batch or size < self.max_batch):
                p = self._pending.pop(0)
                batch.append(p)
                size += len(p.records)
            self._queued_records -= size
            flight = asyncio.ensure_future(self._write(batch))
            self._flights.add(flight)
            flight.add_done_callback(self._landed)

    def _landed(self, flight: asyncio.Future[None]) -> None:
        self._flights.discard(flight)
        if not flight.cancelled():
            flight.exception()  # _write resolves every caller itself
        self._fly()

    async def _write(self, batch: list[_Pending]) -> None:
        while batch:
            records = [r for p in batch for r in p.records]
            try:
                await asyncio.to_thread(append_resolving, self.store, records)
            except ConcurrencyConflict as exc:
                lost = {sid for sid, _ in exc.conflicts}
                failed = [p for p in batch if p.records[0].stream_id in lost]
                if not failed or len(batch) == 1:
                    failed = batch if len(batch) == 1 else []
                if not failed:
                    # Cannot tell who lost: commit one by one.
                    for p in batch:
                        await self._write([p])
                    return
                for p in failed:
                    _resolve(p.future, exc)
                batch = [p for p in batch if p not in failed]
                continue
            except Exception as exc:  # the store is down: every caller hears it
                for p in batch:
                    _resolve(p.future, exc)
                return
            except BaseException:  # cancelled (the loop is closing)
                for p in batch:
                    p.future.cancel()
                raise
            self.commits += 1
            for p in batch:
                _resolve(p.future, None)
            return


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
