"""Batched reads: cold loads from concurrent tasks grouped into one store read.

The read side of group commit. Each task that needs an instance the cache does
not hold calls :meth:`ReadBatcher.load` and waits on a future; one flusher
coroutine collects the ids asked for during one loop tick (or until
``max_batch`` are waiting), loads them all with one batched read
(:meth:`~engine.store.EventStore.iter_streams`, one query per 1,000 streams on
PostgreSQL and SQLite) in a worker thread, and answers every waiter. The
batched read takes the head of each stream (256 events) and reads on only the
longer streams, from their snapshots when they have them, so a long stream is
never held whole.

Cancellation: a cancelled waiter removes its own future; the flusher answers
only futures still pending, and a batch read whose waiters all left is
skipped. If the flusher itself is cancelled it cancels the futures it holds,
so no caller waits forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.core.errors import NonstopError, UnknownInstance
from engine.core.replay import Instance, InstanceInfo

__all__ = ["InstancePage", "LoadResults", "ReadBatcher"]

log = logging.getLogger("nonstop.runtime")

LoadResults = dict[str, Instance | NonstopError]
"""What a batched load returns: each id's instance, or why it cannot be read
(a stream with no events is left out)."""


@dataclass(frozen=True, slots=True)
class InstancePage:
    """One page of an instance listing (see :meth:`Engine.instances_page`)."""

    instances: list[InstanceInfo]
    """The instances of the page, in start order."""
    cursor: int | None
    """Pass it as ``after`` to read the next page; None after the last page."""


class ReadBatcher:
    """Groups concurrent cold loads into batched store reads.

    Args:
        read: Loads many instances at once (blocking; run in a worker thread).
        max_batch: Most ids one read asks for; more waiting start a read at once.
    """

    def __init__(
        self,
        read: Callable[[Sequence[str]], LoadResults],
        *,
        max_batch: int = 1_000,
    ) -> None:
        self._read = read
        self.max_batch = max_batch
        self.reads = 0
        """Batched reads issued (for monitoring and tests)."""
        self._waiting: dict[str, list[asyncio.Future[Instance]]] = {}
        self._flusher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Ids with a caller waiting for the next read."""
        return len(self._waiting)

    async def load(self, instance_id: str) -> Instance:
        """The instance folded from the store, read in a batch with others.

        Raises:
            UnknownInstance: no such instance.
            CorruptStream: its stream has a gap or no start.
            EventDecodeError: an event of it cannot be decoded.
            UnknownWorkflow: it is pinned to a version not registered here.
        """
        fut: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(instance_id, []).append(fut)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        try:
            return await fut
        finally:
            if not fut.done() or fut.cancelled():
                self._leave(instance_id, fut)

    async def close(self) -> None:
        """Wait for the read in flight, if any."""
        flusher = self._flusher
        if flusher is not None:
            await asyncio.gather(flusher, return_exceptions=True)

    def _leave(self, instance_id: str, fut: asyncio.Future[Instance]) -> None:
        futs = self._waiting.get(instance_id)
        if futs is not None and fut in futs:
            futs.remove(fut)
            if not futs:
                del self._waiting[instance_id]

    async def _flush(self) -> None:
        batch: dict[str, list[asyncio.Future[Instance]]] = {}
        try:
            while self._waiting:
                if len(self._waiting) < self.max_batch:
                    # One loop tick: the callers scheduled with this one join in.
                    await asyncio.sleep(0)
                batch = self._take()
                if batch:
                    await self._answer(batch)
                batch = {}
        finally:
            self._flusher = None
            for futs in batch.values():
                for f in futs:
                    f.cancel()
            if self._waiting:  # cancelled meanwhile: nobody may wait forever
                for futs in self._waiting.values():
                    for f in futs:
                        f.cancel()
                self._waiting.clear()

    def _take(self) -> dict[str, list[asyncio.Future[Instance]]]:
        ids = list(self._waiting)[: self.max_batch]
        return {i: self._waiting.pop(i) for i in ids}

    async def _answer(self, batch: dict[str, list[asyncio.Future[Instance]]]) -> None:
        ids = [i for i, futs in batch.items() if any(not f.done() for f in futs)]
        if not ids:
            return
        self.reads += 1
        try:
            found = await asyncio.to_thread(self._read, ids)
        except Exception as exc:  # StoreUnavailable and the like: every waiter
            for futs in batch.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
            return
        for iid, futs in batch.items():
            got = found.get(iid)
            for f in futs:
                if f.done():
                    continue
                if got is None:
                    f.set_exception(UnknownInstance(iid))
                elif isinstance(got, NonstopError):
                    f.set_exception(got)
                else:
                    f.set_result(got)
