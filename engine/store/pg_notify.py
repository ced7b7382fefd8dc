"""The notification of a PostgreSQL store in the concurrent append mode.

A ``NOTIFY`` inside an append's transaction would serialise every commit on
the server's notification queue lock (it is held from before the commit record
is flushed until the transaction ends), which is what the concurrent mode
exists to avoid. So the append commits without it, and :class:`Notifier` sends
the notification afterwards from its own thread: one ``NOTIFY`` for however
many appends committed while the previous one was being sent (and at most one
per 5 ms), never on an append's path. A notification that fails is dropped:
listeners also poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Notifier"]

log = logging.getLogger("nonstop.store")


class Notifier:
    """Sends ``send()`` after appends commit, coalesced, from a thread of its own.

    Args:
        send: Sends one notification (blocking); its errors are logged and
            dropped.
        interval: Seconds between two notifications at least: appends that
            commit meanwhile share the next one (listeners wake at most this
            much later; under load, a few hundred notifications a second
            instead of one per append).
    """

    def __init__(self, send: Callable[[], None], *, interval: float = 0.005) -> None:
        self._send = send
        self._interval = interval
        self._wanted = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._dirty = False
        self.sent = 0
        """Notifications sent (for tests and monitoring)."""

    def poke(self) -> None:
        """An append has committed: notify soon (returns at once)."""
        if self._closed:
            return
        self._dirty = True
        self._wanted.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(
                        target=self._run, name="nonstop-notify", daemon=True
                    )
                    self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, then stop the thread (waits up to ``timeout``)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._dirty:
                self._dirty = False
                try:
                    self._send()
                    self.sent += 1
                except Exception as exc:  # listeners fall back on polling
                    log.debug("notification not sent: %s", exc)
            if self._closed:
                return
            time.sleep(self._interval)
