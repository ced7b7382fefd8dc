"""A lease with expiry in a reserved stream: one active controller per store.

Taking or renewing the lease appends a ``LeaseTaken`` at the next position of
``nonstop.lease:rollout``; the store's optimistic concurrency lets exactly one
of two racing processes win a position. A holder acts only while its own
clock says the lease has ``margin`` seconds left, and a process that dies
stops renewing, so another takes over once the lease expires (within one
``ttl``). It works the same on SQLite and PostgreSQL, through the store port.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from engine.core.codec import EventCodec
from engine.core.errors import ConcurrencyConflict
from engine.core.events import Metadata, now_micros
from engine.health.events import LEASE_STREAM, LeaseTaken
from engine.store import EventStore, NewRecord

__all__ = ["Lease"]


class Lease:
    """The controller lease as seen by one process.

    Args:
        store: The event store.
        holder: This process's name (host:pid).
        ttl: Seconds a lease lasts after each renewal.
        clock: Seconds since the epoch.
        stream: The lease's stream.
    """

    def __init__(
        self,
        store: EventStore,
        holder: str,
        *,
        ttl: float,
        clock: Callable[[], float] = time.time,
        stream: str = LEASE_STREAM,
        codec: EventCodec | None = None,
    ) -> None:
        self.store = store
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self.stream = stream
        self.codec = codec if codec is not None else EventCodec()
        self.expires = 0.0
        """When this process's lease ends (0 when it holds none)."""

    def current(self) -> tuple[int, LeaseTaken | None]:
        """The stream's last position and the last lease taken, if any."""
        pos = self.store.stream_position(self.stream)
        if pos == 0:
            return 0, None
        for r in self.store.read_stream(self.stream, after=pos - 1):
            for e in self.codec.decode(
                self.stream, r.position, r.global_position, r.type, r.data
            ):
                if isinstance(e.event, LeaseTaken):
                    return r.position, e.event
        return pos, None

    def acquire(self) -> bool:
        """Take the lease if free or expired, renew it if held; True if held."""
        now = self.clock()
        pos, last = self.current()
        if last is not None and last.holder != self.holder and last.expires > now:
            self.expires = 0.0
            return False
        expires = now + self.ttl
        event = LeaseTaken(self.holder, now, expires)
        name, data = self.codec.encode(
            event, Metadata(self.stream), recorded_at=now_micros()
        )
        try:
            self.store.append([NewRecord(self.stream, pos + 1, name, data)])
        except ConcurrencyConflict:
            self.expires = 0.0
            return False
        self.expires = expires
        return True

    def held(self, margin: float = 0.0) -> bool:
        """True while this process holds the lease with ``margin`` seconds left."""
        return self.clock() + margin < self.expires

    def release(self) -> None:
        """Give the lease up now (another process may take it at once)."""
        if not self.held():
            return
        pos, last = self.current()
        if last is None or last.holder != self.holder:
            return
        now = self.clock()
        event = LeaseTaken(self.holder, now, now)
        name, data = self.codec.encode(
            event, Metadata(self.stream), recorded_at=now_micros()
        )
        with contextlib.suppress(ConcurrencyConflict):  # taken over meanwhile
            self.store.append([NewRecord(self.stream, pos + 1, name, data)])
        self.expires = 0.0
