"""The runner: catch up in batches, follow live, switch builds, record failures.

Each batch is one read-model transaction: the handlers' writes and the build's
new position commit together, and the position moves only from the value read
(compare and set), so a crash, a retry or a second runner never applies an
event twice.

It is longer than most modules: catch-up, read-ahead, live follow,
build switches and failure records share the runner's per-build state;
the SQL lives in :mod:`projections._meta`, the operator actions in
:mod:`projections._ops`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine.core.codec import EventCodec
from engine.core.errors import (
    EventDecodeError,
    ProjectionDefinitionError,
    ProjectionStateError,
    ReadModelUnavailable,
    StoreUnavailable,
    UnknownProjection,
)
from engine.core.events import now_micros
from engine.store import EventStore, Record, open_store
from engine.store.retry import Backoff, until_stopped
from projections import _meta
from projections._api import Projection
from projections._db import Database, Tx, open_database, pg_conninfo
from projections._decode import tolerant, undecodable
from projections._meta import BUILDS, SERVING, Build
from projections._ops import new_build_id

__all__ = ["CHANNEL", "Runner", "default_codec"]

log = logging.getLogger("nonstop.projections")

CHANNEL = "nonstop_events"
"""The PostgreSQL channel the event store notifies on every append."""


def default_codec() -> EventCodec:
    """The codec the engine uses: the default event types and upcaster chains."""
    from upcasters import default_upcasters

    codec = EventCodec()
    codec.use_upcasters(default_upcasters())
    return codec


class _HandlerFailed(Exception):
    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.error = error


class _BatchFailed(Exception):
    """A batch handler raised; the batch is retried one event at a time."""


class _Lost(Exception):
    """Another runner moved the build, or an operator failed or retired it."""


class Runner:
    """Runs projections: catch-up (sync) and live follow (async).

    Args:
        store: The event store, or its URL.
        projections: The projections to run, at most one version per name.
        db: The read-model database or its URL (default: the event store's own
            database, which needs ``store`` as a URL).
        codec: Decodes and upcasts events (default: the engine's codec, with the
            default upcaster chains).
        batch_size: Events per transaction.
        listen: A ``postgresql://`` URL to LISTEN on for appends (default: the
            store URL when it is PostgreSQL); without it the runner polls.
    """

    def __init__(
        self,
        store: EventStore | str,
        projections: Sequence[Projection],
        *,
        db: Database | str | None = None,
        codec: EventCodec | None = None,
        batch_size: int = 1000,
        listen: str | None = None,
    ) -> None:
        names = [p.name for p in projections]
        if len(set(names)) != len(names):
            raise ProjectionDefinitionError(
                f"projection names must be unique in one runner, got {names}"
            )
        for p in projections:
            p.check()
        if batch_size < 1:
            raise ProjectionDefinitionError(f"batch_size {batch_size} must be >= 1")
        if db is None and not isinstance(store, str):
            raise ProjectionDefinitionError(
                "pass db= (a Database or URL) when the store is given as an object"
            )
        self._own_store = isinstance(store, str)
        self.store = open_store(store) if isinstance(store, str) else store
        self._own_db = not isinstance(db, Database)
        target = db if db is not None else store
        assert isinstance(target, (str, Database))
        self.db = open_database(target) if isinstance(target, str) else target
        self.codec = codec if codec is not None else default_codec()
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        if listen is None and isinstance(store, str) and _is_pg(store):
            listen = store
        self.listen = listen
        self._prepared = False
        # Read-ahead of the next batch, per build (threads start on first use).
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="nonstop-read")
        self._ahead: dict[str, tuple[int, Future[tuple[int, list[Record]]]]] = {}
        self._wakes: list[asyncio.Event] = []
        self._progress = asyncio.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.positions: dict[str, int] = {}
        """The position of each projection's serving (else newest) build."""
        self.behind: dict[str, int] = {}
        """The position of each projection's furthest-behind active build (a
        rebuild's new build while it catches up)."""

    # ------------------------------------------------------------- catch-up

    def prepare(self) -> None:
        """Create the bookkeeping tables and the builds the code needs."""
        _meta.ensure(self.db)
        for p in self.projections.values():
            with self.db.transaction() as tx:
                self._builds(tx, p)
        self._prepared = True

    def catch_up(
        self,
        names: Sequence[str] | None = None,
        *,
        progress: Callable[[str, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Apply every stored event to the projections (all, or ``names``).

        Builds that catch up are switched to. A failing handler stops its
        projection (see :func:`status`); the others go on.

        Args:
            names: The projections to catch up (all when omitted).
            progress: Called with a projection's name and the position of its
                furthest-behind build (see :attr:`behind`) after each batch.
            stop: When set (from a signal handler, say), the batch in flight
                commits and catch-up returns early; the positions reached are
                in :attr:`positions`.

        Returns:
            The number of events applied.
        """
        if not self._prepared:
            self.prepare()
        chosen = self._chosen(names)
        total = 0
        for p in chosen:
            while stop is None or not stop.is_set():
                n, again = self._round(p)
                total += n
                if progress is not None:
                    progress(p.name, self.behind.get(p.name, 0))
                if not again:
                    break
        return total

    def _chosen(self, names: Sequence[str] | None) -> list[Projection]:
        if names is None:
            return list(self.projections.values())
        missing = [n for n in names if n not in self.projections]
        if missing:
            raise UnknownProjection(missing[0], sorted(self.projections))
        return [self.projections[n] for n in names]

    def _builds(self, tx: Tx, p: Projection) -> list[Build]:
        """The active builds of ``p``'s version, created and set up as needed."""
        builds = _meta.load_builds(tx, p.name)
        if not all(b.ready for b in builds if b.version == p.version) or not any(
            b.version == p.version for b in builds
        ):
            # Creating tables: one runner at a time (SQLite: BEGIN IMMEDIATE).
            _meta.lock(tx, p.name)
            builds = _meta.load_builds(tx, p.name)
        newer = [b for b in builds if b.state == "serving" and b.version > p.version]
        if newer:
            raise ProjectionStateError(
                f"projection {p.name!r}: version {newer[0].version} serves reads but "
                f"this code has version {p.version}; run the newer code, or rebuild "
                "with a higher version"
            )
        active = [
            b
            for b in builds
            if b.version == p.version and b.state in ("building", "serving")
        ]
        if not active:
            taken = {b.build for b in builds}
            build = new_build_id(p.name, p.version, taken)
            _meta.insert_build(tx, p.name, build, p.version, keep=p.keep)
            active = [b for b in _meta.load_builds(tx, p.name) if b.build == build]
        out: list[Build] = []
        for b in active:
            if not b.ready:
                p.create(tx.bound(b.build))
                tx.execute(
                    f"UPDATE {BUILDS} SET ready = 1, tables = ? "
                    "WHERE name = ? AND build = ?",
                    (",".join(p.tables), p.name, b.build),
                )
                b = dataclasses.replace(b, ready=True, tables=p.tables)
            out.append(b)
        return out

    def _round(self, p: Projection) -> tuple[int, bool]:
        """One batch for each active build of ``p``.

        Returns:
            Events applied, and whether another round has work to do (a full
            batch, or a position another runner moved meanwhile).
        """
        with self.db.transaction() as tx:
            builds = self._builds(tx, p)
        done = 0
        again = False
        for b in builds:
            if b.failure is not None:
                continue
            n, caught_up = self._step(p, b)
            done += n
            if caught_up and b.state == "building":
                self._switch(p, b.build)
            again = again or not caught_up
        with self.db.transaction() as tx:
            after = _meta.load_builds(tx, p.name)
        live = [b for b in after if b.state in ("building", "serving")]
        shown = [b for b in live if b.state == "serving"] or live
        if shown:
            self.positions[p.name] = shown[0].position
        if live:
            self.behind[p.name] = min(b.position for b in live)
        return done, again

    def _read(self, p: Projection, after: int) -> tuple[int, list[Record]]:
        """The store's head, then the batch after ``after`` (in that order)."""
        head = self.store.last_global_position()
        return head, self.store.read_all(
            after=after, limit=self.batch_size, types=p.types
        )

    def _fetch(self, p: Projection, b: Build) -> tuple[int, list[Record]]:
        """The next batch of ``b``, read ahead while the previous one was applied."""
        ahead = self._ahead.pop(b.build, None)
        if ahead is not None and ahead[0] == b.position:
            return ahead[1].result()
        return self._read(p, b.position)

    def _read_ahead(self, p: Projection, b: Build, after: int) -> None:
        self._ahead[b.build] = (after, self._pool.submit(self._read, p, after))

    def _step(self, p: Projection, b: Build) -> tuple[int, bool]:
        """Apply one batch to build ``b``; returns (events applied, caught up)."""
        head, records = self._fetch(p, b)
        full = len(records) == self.batch_size
        if full:
            target = records[-1].global_position
            self._read_ahead(p, b, target)  # overlaps the decoding and commit
        else:
            # Every event up to ``head`` was committed before the read, so a
            # short batch means nothing older is left: skip to head.
            target = max(head, records[-1].global_position if records else 0)
        if target <= b.position:
            return 0, True
        failure: tuple[int, BaseException] | None = None
        try:
            self._commit(p, b, b.position, target, records, per=p.per_event)
            return len(records), not full
        except _HandlerFailed as exc:
            failure = (exc.index, exc.error)
        except _BatchFailed:
            # Rolled back; find the failing event one event at a time.
            try:
                self._commit(p, b, b.position, target, records, per=True)
                return len(records), not full
            except _HandlerFailed as exc:
                failure = (exc.index, exc.error)
            except _Lost:
                return 0, False
        except _Lost:
            return 0, False
        index, error = failure
        applied = 0
        if index > 0:
            upto = records[index - 1].global_position
            try:
                self._commit(p, b, b.position, upto, records[:index], per=True)
                applied = index
            except _HandlerFailed as exc:  # not deterministic: fail there instead
                index, error = exc.index, exc.error
            except _Lost:
                return 0, False
        self._fail(b, records[index], error)
        return applied, True  # nothing more to do for this build until resumed

    def _commit(
        self,
        p: Projection,
        b: Build,
        old: int,
        new: int,
        records: Sequence[Record],
        *,
        per: bool,
    ) -> None:
        """Apply ``records`` and move the position from ``old`` to ``new``, atomically.

        Raises:
            _Lost: the position is no longer ``old`` (nothing written).
            _HandlerFailed: ``per``: the event at that index failed to decode or
                apply (nothing written).
            _BatchFailed: not ``per``: the batch handler raised (nothing written).
        """
        decode = self.codec.decode
        with self.db.transaction() as tx:
            moved = tx.execute(
                f"UPDATE {BUILDS} SET position = ?, updated_us = ? "
                "WHERE name = ? AND build = ? AND position = ? "
                "AND failed_global IS NULL AND state <> 'retired'",
                (new, now_micros(), b.name, b.build, old),
            )
            if moved != 1:
                raise _Lost
            btx = tx.bound(b.build)
            if per:
                for i, r in enumerate(records):
                    try:
                        try:
                            events = decode(
                                r.stream_id,
                                r.position,
                                r.global_position,
                                r.type,
                                r.data,
                            )
                        except EventDecodeError as exc:
                            if not p.undecodable:
                                raise
                            events = [undecodable(r, exc)]
                        p.apply(btx, events)
                    except Exception as exc:  # handlers are user code
                        _raise_if_unavailable(self.db, exc)
                        raise _HandlerFailed(i, exc) from exc
                return
            try:
                # Decoded while the handler iterates: nothing piles up.
                many = self.codec.decode_many
                p.apply(
                    btx,
                    tolerant(many, records) if p.undecodable else many(records),
                )
            except Exception as exc:  # handlers are user code
                _raise_if_unavailable(self.db, exc)
                raise _BatchFailed from exc

    def _fail(self, b: Build, r: Record, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}"
        log.error(
            "projection %s (build %s) stopped at %s #%d (stream %r position %d): %s",
            b.name,
            b.build,
            r.type,
            r.global_position,
            r.stream_id,
            r.position,
            text,
        )
        with self.db.transaction() as tx:
            tx.execute(
                f"UPDATE {BUILDS} SET failed_global = ?, failed_stream = ?, "
                "failed_stream_position = ?, failed_type = ?, failed_error = ?, "
                "failed_us = ?, updated_us = ? WHERE name = ? AND build = ?",
                (
                    r.global_position,
                    r.stream_id,
                    r.position,
                    r.type,
                    text[:2000],
                    now_micros(),
                    now_micros(),
                    b.name,
                    b.build,
                ),
            )

    def _switch(self, p: Projection, build: str) -> None:
        """Point reads at ``build``: pointer row and views in one transaction."""
        with self.db.transaction() as tx:
            _meta.lock(tx, p.name)
            builds = {b.build: b for b in _meta.load_builds(tx, p.name)}
            new = builds.get(build)
            if new is None or new.state != "building" or new.failure is not None:
                return
            old_id = _meta.serving(tx, p.name)
            old = builds.get(old_id) if old_id else None
            now = now_micros()
            if old is not None:
                tx.execute(
                    f"UPDATE {BUILDS} SET state = 'retired', updated_us = ? "
                    "WHERE name = ? AND build = ?",
                    (now, p.name, old.build),
                )
            tx.execute(
                f"UPDATE {BUILDS} SET state = 'serving', updated_us = ? "
                "WHERE name = ? AND build = ?",
                (now, p.name, build),
            )
            tx.execute(f"DELETE FROM {SERVING} WHERE name = ?", (p.name,))
            tx.execute(
                f"INSERT INTO {SERVING} (name, build, version, switched_us) "
                "VALUES (?, ?, ?, ?)",
                (p.name, build, new.version, now),
            )
            for t in sorted({*new.tables, *(old.tables if old else ())}):
                tx.execute(f"DROP VIEW IF EXISTS {p.name}_{t}")
            for t in new.tables:
                tx.execute(f"CREATE VIEW {p.name}_{t} AS SELECT * FROM {new.table(t)}")
            if old is not None and not (new.keep or p.keep):
                for t in old.tables:
                    tx.execute(f"DROP TABLE IF EXISTS {old.table(t)}")
        log.info("projection %s: reads now served by %s", p.name, build)

    # ---------------------------------------------------------- live follow

    def notify(self) -> None:
        """Wake every follower now (an in-process hint that events were appended)."""
        loop = self._loop
        if loop is None:
            return
        for ev in self._wakes:
            loop.call_soon_threadsafe(ev.set)

    async def run(
        self,
        stop: asyncio.Event | None = None,
        *,
        min_poll: float = 0.005,
        max_poll: float = 0.5,
    ) -> None:
        """Catch up, then follow the store until ``stop`` is set.

        On PostgreSQL a LISTEN connection wakes the followers on every append
        (and they still poll every ``max_poll`` seconds in case a notification
        is lost); elsewhere they poll, from ``min_poll`` seconds doubling up to
        ``max_poll`` while nothing arrives.
        """
        stop = stop if stop is not None else asyncio.Event()
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.prepare)
        self._wakes = [asyncio.Event() for _ in self.projections]
        followers = [
            asyncio.create_task(self._follow(p, w, stop, min_poll, max_poll))
            for p, w in zip(self.projections.values(), self._wakes, strict=True)
        ]
        others: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if self.listen is not None:
            others.append(asyncio.create_task(self._listen(self.listen, stop)))
        try:
            done, _ = await asyncio.wait(
                [*followers, *others], return_when=asyncio.FIRST_COMPLETED
            )
            for t in done:
                error = t.exception() if t in followers else None
                if error is not None:
                    raise error
        finally:
            # Followers finish their round (a thread cannot be interrupted, and
            # the store must outlive it); only waiting is cut short.
            stop.set()
            for ev in self._wakes:
                ev.set()
            for t in others:
                t.cancel()
            await asyncio.gather(*followers, *others, return_exceptions=True)
            self._wakes = []

    async def wait_for(self, name: str, position: int, timeout: float = 10.0) -> None:
        """Wait until projection ``name`` has applied global ``position``.

        Progress is reported by :meth:`run`, which must be running.

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
        """
        cond = self._progress
        async with cond:
            await asyncio.wait_for(
                cond.wait_for(lambda: self.positions.get(name, 0) >= position),
                timeout,
            )

    async def _follow(
        self,
        p: Projection,
        wake: asyncio.Event,
        stop: asyncio.Event,
        min_poll: float,
        max_poll: float,
    ) -> None:
        delay = min_poll
        listening = self.listen is not None
        # A database down: retried by the store's retry layer (this follower
        # only; the others keep going), waiting up to max_poll between tries.
        backoff = Backoff(first=max(min_poll, 0.05), longest=max(max_poll, 0.05))
        while not stop.is_set():
            done = await until_stopped(
                functools.partial(asyncio.to_thread, self._round, p),
                transient=(StoreUnavailable, ReadModelUnavailable),
                what=f"projection {p.name}",
                stop=stop,
                backoff=backoff,
            )
            if done is None:
                return  # stopped while the database was down
            n, again = done
            async with self._progress:
                self._progress.notify_all()
            if n or again:
                delay = min_poll
                continue
            try:
                await asyncio.wait_for(
                    wake.wait(), timeout=max_poll if listening else delay
                )
            except TimeoutError:
                delay = min(delay * 2, max_poll)
            else:
                delay = min_poll
            wake.clear()

    async def _listen(self, url: str, stop: asyncio.Event) -> None:
        import psycopg  # a PostgreSQL store: nonstop[postgres] is installed

        conninfo, _ = pg_conninfo(url)

        async def session() -> None:
            conn = await psycopg.AsyncConnection.connect(**conninfo, autocommit=True)
            async with conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                self.notify()  # appends made before LISTEN took effect
                async for _ in conn.notifies():
                    for ev in self._wakes:
                        ev.set()
            raise psycopg.OperationalError("the LISTEN connection ended")

        # Followers poll meanwhile (every max_poll seconds).
        await until_stopped(
            session,
            transient=(psycopg.Error,),
            what=f"LISTEN {CHANNEL}",
            stop=stop,
            backoff=Backoff(first=0.5, longest=2.0),
        )

    def close(self) -> None:
        """Close the store and database this runner opened."""
        self._pool.shutdown(wait=True)
        if self._own_store:
            self.store.close()
        if self._own_db:
            self.db.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _raise_if_unavailable(db: Database, exc: Exception) -> None:
    """Raise ReadModelUnavailable if ``exc`` is the database failing, not a handler.

    A lost connection or a lock timeout is no fault of the event: the batch is
    retried later instead of stopping the projection.
    """
    # psycopg is loaded only for a PostgreSQL read model; without it, no
    # exception can be one of its errors.
    psycopg = sys.modules.get("psycopg")
    if (psycopg is not None and isinstance(exc, psycopg.OperationalError)) or (
        isinstance(exc, sqlite3.OperationalError)
        and ("locked" in str(exc) or "busy" in str(exc))
    ):
        raise ReadModelUnavailable(db.url, str(exc).strip()) from exc


def _is_pg(url: str) -> bool:
    return url.partition("://")[0].lower() in ("postgresql", "postgres")
