"""Health counters of one engine, flushed to reserved streams of its store.

The counting methods are called on the commit path: each is a clock read, a
dict lookup and a few additions, with no lock. A background thread appends what
was counted every ``flush_interval`` seconds through ``EventStore.append``; if
the engine dies, at most that interval of counts is lost.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from engine.core.codec import EventCodec
from engine.core.config import CONFIG_KEY
from engine.core.errors import ConcurrencyConflict, NonstopError
from engine.core.events import Metadata, now_micros
from engine.health.analysis import LATENCY_BOUNDS, Counts
from engine.health.events import ROLLOUT_STREAM, HealthFlushed, health_stream
from engine.health.rollout import RolloutView, config_subject, flag_subject
from engine.store import EventStore, NewRecord

__all__ = ["DEFAULT_BUCKET_SECONDS", "Health"]

log = logging.getLogger("nonstop.health")

DEFAULT_BUCKET_SECONDS = 5
"""Width of a health bucket; every process on a store must use the same."""

# Slots of a counter row: the six counts, the latency sum, then the histogram.
_ACC, _REJ, _CRASH, _STARTED, _DONE, _FAILED, _SUM = range(7)
_HIST = 7
_WIDTH = _HIST + len(LATENCY_BOUNDS) + 1
_ATTEMPTS = 20


class Health:
    """Counts commands and instances per ``workflow@version`` and flushes them.

    The counting methods take no lock: each row has one writer, the engine's
    event loop (give each engine its own ``Health``), and the flusher only
    reads rows, appending what grew since its last flush. Rows only grow.

    Args:
        store: Where the counts are flushed (None: count only).
        flush_interval: Seconds between flushes.
        bucket_seconds: Width of a bucket (the same for every process).
        clock: Seconds since the epoch (``time.time``; tests pass their own).
        engine: Names this engine in flushed records (host:pid by default).
        codec: Encodes the flushed records.
    """

    def __init__(
        self,
        store: EventStore | None,
        *,
        flush_interval: float = 2.0,
        bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
        clock: Callable[[], float] = time.time,
        engine: str | None = None,
        codec: EventCodec | None = None,
    ) -> None:
        if flush_interval <= 0 or bucket_seconds < 1:
            raise NonstopError(
                f"flush_interval {flush_interval!r} must be > 0 and bucket_seconds "
                f"{bucket_seconds!r} >= 1"
            )
        self.store = store
        self.flush_interval = flush_interval
        self.bucket_seconds = bucket_seconds
        self.clock = clock
        self.engine = engine or f"{socket.gethostname()}:{os.getpid()}"
        self.codec = codec if codec is not None else EventCodec()
        self._rows: dict[tuple[str, int, int], list[float]] = {}
        self._flushed: dict[tuple[str, int, int], list[float]] = {}
        self._totals: dict[tuple[str, int], list[float]] = {}
        self._flush_lock = threading.Lock()
        self._positions: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.watch: frozenset[str] = frozenset()
        """Flags being ramped by a rollout: counted apart, on and off (kept
        up to date from the rollouts stream at each flush)."""
        self.watch_config: dict[str, tuple[int, int]] = {}
        """Workflows whose config is being ramped: (candidate, baseline)
        config versions, counted apart like flags."""
        self._rollouts = RolloutView()
        self.flushes = 0
        """Flush transactions written (for monitoring and tests)."""

    # ------------------------------------------------------------ counting

    def _row(self, workflow: str, version: int) -> list[float]:
        b = int(self.clock()) // self.bucket_seconds * self.bucket_seconds
        key = (workflow, version, b)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = [0.0] * _WIDTH
            if self._thread is None:
                self._start()
        return row

    def accepted(
        self,
        workflow: str,
        version: int,
        *,
        start: bool,
        status: str,
        seconds: float,
        flags: dict[str, Any] | None = None,
    ) -> None:
        """A command (a start when ``start``) was committed in ``seconds``.

        ``status`` is the instance's status after it (``completed`` and
        ``failed`` count an instance that finished); ``flags`` the flag
        values the instance has seen (counted apart for flags being ramped).
        """
        row = self._row(workflow, version)
        hist = _HIST + bisect_left(LATENCY_BOUNDS, seconds)
        watched = self.watch or self.watch_config
        rows = [row, *self._flag_rows(workflow, flags)] if watched else (row,)
        for row in rows:
            row[_ACC] += 1
            if start:
                row[_STARTED] += 1
            if status == "completed":
                row[_DONE] += 1
            elif status == "failed":
                row[_FAILED] += 1
            row[_SUM] += seconds
            row[hist] += 1

    def rejected(
        self, workflow: str, version: int, flags: dict[str, Any] | None = None
    ) -> None:
        """The decider refused a command (``CommandRejected``)."""
        self._row(workflow, version)[_REJ] += 1
        if self.watch or self.watch_config:
            for row in self._flag_rows(workflow, flags):
                row[_REJ] += 1

    def crashed(
        self, workflow: str, version: int, flags: dict[str, Any] | None = None
    ) -> None:
        """``decide`` or ``evolve`` raised on a command."""
        self._row(workflow, version)[_CRASH] += 1
        if self.watch or self.watch_config:
            for row in self._flag_rows(workflow, flags):
                row[_CRASH] += 1

    def _flag_rows(
        self, workflow: str, flags: dict[str, Any] | None
    ) -> list[list[float]]:
        """Rows of the watched ramps this instance is part of.

        A watched flag it has seen counts on (1) or off (0); a watched config
        ramp counts the candidate (1) or baseline (0) version it read.
        """
        if not flags:
            return []
        rows = [
            self._row(flag_subject(workflow, name), 1 if flags[name] else 0)
            for name in self.watch
            if name in flags
        ]
        ramp = self.watch_config.get(workflow)
        if ramp is not None and CONFIG_KEY in flags:
            read = flags[CONFIG_KEY]
            if read in ramp:
                side = 1 if read == ramp[0] else 0
                rows.append(self._row(config_subject(workflow), side))
        return rows

    def pending(self) -> dict[tuple[str, int, int], Counts]:
        """What was counted and not flushed yet, by (workflow, version, bucket)."""
        with self._flush_lock:
            out = {}
            for key, row in list(self._rows.items()):
                delta = _delta(row, self._flushed.get(key))
                if any(delta):
                    out[key] = _counts(delta)
            return out

    def totals(self) -> dict[tuple[str, int], Counts]:
        """Everything counted since this object was made, by (workflow, version)."""
        with self._flush_lock:
            sums = {k: list(v) for k, v in self._totals.items()}
            for key, row in list(self._rows.items()):
                delta = _delta(row, self._flushed.get(key))
                acc = sums.setdefault(key[:2], [0.0] * _WIDTH)
                for i, v in enumerate(delta):
                    acc[i] += v
            return {k: _counts(v) for k, v in sums.items()}

    # ------------------------------------------------------------- flushing

    def flush(self) -> int:
        """Append the counts not flushed yet; returns the records written.

        Appends race with other engines flushing into the same bucket: a
        conflict re-reads that stream's position and retries at the next one.
        If the store is down, the counts stay for the next flush.
        """
        with self._flush_lock:
            snap = {k: list(r) for k, r in list(self._rows.items())}
            deltas = {k: _delta(r, self._flushed.get(k)) for k, r in snap.items()}
            deltas = {k: d for k, d in deltas.items() if any(d)}
            written = 0
            if deltas and self.store is not None:
                # Only an engine that counts needs to know which flags to split.
                self._watch_flags()
                try:
                    written = self._append(deltas)
                except NonstopError as exc:
                    log.warning("health flush failed, kept for the next one: %s", exc)
                    return 0
            for key, d in deltas.items():
                acc = self._totals.setdefault(key[:2], [0.0] * _WIDTH)
                for i, v in enumerate(d):
                    acc[i] += v
                self._flushed[key] = snap[key]
            self._forget_old(snap)
            return written

    def _watch_flags(self) -> None:
        """Follow the rollouts stream: which flags are being ramped."""
        if self.store is None:
            return
        view = self._rollouts
        try:
            for r in self.store.iter_stream(ROLLOUT_STREAM, after=view.position):
                for e in self.codec.decode(
                    ROLLOUT_STREAM, r.position, r.global_position, r.type, r.data
                ):
                    view.apply(r.position, e.event)
        except NonstopError as exc:
            log.warning("cannot read the rollouts stream: %s", exc)
            return
        self.watch = frozenset(
            r.plan.flag for r in view.rollouts.values() if r.plan.flag and r.active
        )
        self.watch_config = {
            r.plan.workflow: (r.plan.version, r.baseline)
            for r in view.rollouts.values()
            if r.plan.config and r.active
        }

    def _append(self, rows: dict[tuple[str, int, int], list[float]]) -> int:
        assert self.store is not None
        now = now_micros()
        encoded = []
        for (workflow, version, start), row in rows.items():
            stream = health_stream(workflow, version, self.bucket_seconds, start)
            e = HealthFlushed(workflow, version, start, self.engine, _counts(row))
            name, data = self.codec.encode(e, Metadata(stream), recorded_at=now)
            encoded.append((stream, name, data))
        for _ in range(_ATTEMPTS):
            records = [
                NewRecord(s, self._positions.get(s, 0) + 1, n, d) for s, n, d in encoded
            ]
            try:
                self.store.append(records)
            except ConcurrencyConflict as exc:
                for sid, _pos in exc.conflicts:
                    self._positions[sid] = self.store.stream_position(sid)
                continue
            for r in records:
                self._positions[r.stream_id] = r.position
            self.flushes += 1
            return len(records)
        raise ConcurrencyConflict([(s, 0) for s, _, _ in encoded])

    def _forget_old(self, snap: dict[tuple[str, int, int], list[float]]) -> None:
        """Drop rows of buckets long past and flushed whole (memory stays flat)."""
        horizon = self.clock() - 2 * self.bucket_seconds - 2 * self.flush_interval
        for key, row in snap.items():
            if key[2] < horizon and self._rows.get(key) == row:
                del self._rows[key]
                self._flushed.pop(key, None)
                stream = health_stream(key[0], key[1], self.bucket_seconds, key[2])
                self._positions.pop(stream, None)

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name="nonstop-health-flush", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # never let the flusher die
                log.exception("health flush failed")

    def close(self) -> None:
        """Stop the flusher and flush what is left."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.flush()


def _delta(row: list[float], flushed: list[float] | None) -> list[float]:
    if flushed is None:
        return row
    return [a - b for a, b in zip(row, flushed, strict=True)]


def _counts(row: list[float]) -> Counts:
    return Counts(
        int(row[_ACC]),
        int(row[_REJ]),
        int(row[_CRASH]),
        int(row[_STARTED]),
        int(row[_DONE]),
        int(row[_FAILED]),
        tuple(int(v) for v in row[_HIST:]),
        row[_SUM],
    )
