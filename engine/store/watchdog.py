"""Stalled connections: break a connection whose call outlives its deadline.

A network path that holds bytes without resetting (a frozen switch, a paused
VM, a proxy that stops forwarding) is invisible to TCP keepalives and to the
server's statement timeout, and a synchronous driver call on it waits for
ever. The watchdog shuts down the socket of a connection still busy after
``limit`` seconds; the blocked call then fails at once with a connection error
(which the adapter reports as ``StoreUnavailable``, or ``CommitInDoubt`` for an
append in flight).

One thread per store, started on first use; watching a call costs a lock and
a dict entry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any

__all__ = ["Watchdog"]

log = logging.getLogger("nonstop.store")


class Watchdog:
    """Breaks connections busy for longer than ``limit`` seconds.

    Args:
        limit: Seconds a call may hold a connection; 0 disables the watchdog.
        tick: Seconds between checks.
    """

    def __init__(self, limit: float, *, tick: float = 0.25) -> None:
        self.limit = limit
        self._tick = tick
        self._lock = threading.Lock()
        self._busy: dict[int, tuple[float, Any]] = {}
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def begin(self, conn: Any) -> None:
        """Watch ``conn``: break it unless :meth:`end` comes within the limit."""
        if self.limit <= 0:
            return
        with self._lock:
            self._busy[id(conn)] = (monotonic() + self.limit, conn)
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="nonstop-store-watchdog", daemon=True
                )
                self._thread.start()

    def end(self, conn: Any) -> None:
        """Stop watching ``conn``."""
        if self.limit > 0:
            with self._lock:
                self._busy.pop(id(conn), None)

    @contextmanager
    def watch(self, conn: Any) -> Iterator[None]:
        """Break ``conn`` if the block still runs after the limit."""
        self.begin(conn)
        try:
            yield
        finally:
            self.end(conn)

    def close(self) -> None:
        """Stop the thread."""
        self._closed.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)

    def _run(self) -> None:
        while not self._closed.wait(self._tick):
            now = monotonic()
            with self._lock:
                overdue = [
                    k for k, (deadline, _) in self._busy.items() if deadline <= now
                ]
                stalled = [self._busy.pop(k)[1] for k in overdue]
            for conn in stalled:
                log.warning(
                    "a store connection was busy for over %.1f s: breaking it "
                    "(the network path stalls)",
                    self.limit,
                )
                _shut_down(conn)


def _shut_down(conn: Any) -> None:
    """Shut the socket of ``conn`` down: its blocked reads return at once."""
    with contextlib.suppress(Exception):
        fd = os.dup(conn.fileno())
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
