"""Per-instance locks: commands to one instance run one at a time.

An entry lives only while someone holds or waits for the lock, so the table
stays as small as the number of instances being worked on. Taking and leaving
are cancellation-safe: a caller cancelled while it waits leaves no entry and no
user count behind, and several locks are taken in an ``AsyncExitStack`` (see
:meth:`InstanceLocks.hold_all`) so a cancel between two of them frees the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

__all__ = ["InstanceLocks"]


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class InstanceLocks:
    """A table of asyncio locks keyed by instance id."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """Instances whose lock is held or waited for."""
        return len(self._entries)

    def users(self, instance_id: str) -> int:
        """Holders and waiters of one instance's lock (0 when it has no entry)."""
        entry = self._entries.get(instance_id)
        return 0 if entry is None else entry.users

    async def acquire(self, instance_id: str) -> None:
        """Wait for the instance's lock; on cancel, leave no trace."""
        entry = self._entries.get(instance_id)
        if entry is None:
            entry = self._entries[instance_id] = _Entry()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:
            self._leave(instance_id, entry)
            raise

    def release(self, instance_id: str) -> None:
        """Release a lock taken with :meth:`acquire`."""
        entry = self._entries[instance_id]
        entry.lock.release()
        self._leave(instance_id, entry)

    def _leave(self, instance_id: str, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._entries[instance_id]

    @asynccontextmanager
    async def hold(self, instance_id: str) -> AsyncIterator[None]:
        """Hold one instance's lock for the ``async with`` block."""
        await self.acquire(instance_id)
        try:
            yield
        finally:
            self.release(instance_id)

    @asynccontextmanager
    async def hold_all(self, instance_ids: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of many instances, taken in sorted order (no deadlock).

        They are entered on one ``AsyncExitStack``: a cancel while waiting for
        one of them releases those already taken.
        """
        async with AsyncExitStack() as stack:
            for iid in sorted(set(instance_ids)):
                await stack.enter_async_context(self.hold(iid))
            yield
