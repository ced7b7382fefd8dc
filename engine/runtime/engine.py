"""The ``Engine`` facade: start, send and get workflow instances.

It composes the runtime's parts: :class:`~engine.runtime.locks.InstanceLocks`
(commands to one instance are serial), the
:class:`~engine.runtime.loader.InstanceLoader` (cache, replay, snapshots), the
:class:`~engine.runtime.decider.Decider` (decide and encode) and the
:class:`~engine.runtime.committer.GroupCommitter` (group commit, commits in
doubt). The facade holds the retry loops: a conflict with another writer drops
the cached instance, reloads it and decides again, up to ``max_attempts``.

Cancellation: locks are taken in ``async with`` blocks (several on one
``AsyncExitStack``); appends are tasks the committer owns, shielded from the
caller's cancel and awaited by :meth:`Engine.close`.

The module is over 500 lines because it carries the public API's docstrings
(start, send, get, cancel, migrate, handle_batch, ...); the logic is the retry
loops, the batch assembly and the health counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from engine.core.codec import EventCodec
from engine.core.errors import (
    ConcurrencyConflict,
    ConflictRetriesExhausted,
    InstanceExists,
    InvalidPage,
    NonstopError,
    StoreUnavailable,
    UnknownWorkflow,
)
from engine.core.events import RecordedEvent
from engine.core.replay import Instance, InstanceInfo
from engine.core.workflow import ListingStatus, WorkflowRegistry
from engine.health import Health, engine_health
from engine.runtime.committer import GroupCommitter
from engine.runtime.decider import Decided, Decider
from engine.runtime.effects import Effects
from engine.runtime.loader import InstanceLoader
from engine.runtime.locks import InstanceLocks
from engine.runtime.reads import InstancePage
from engine.runtime.requests import Router, Send, Start
from engine.snapshots import state_schemas
from engine.store import DeadLetter, EventStore, NewRecord, Tracking, open_store

if TYPE_CHECKING:  # upcasters imports engine.core: no import cycle at run time
    from upcasters import UpcasterRegistry

__all__ = ["Engine"]

log = logging.getLogger("nonstop.runtime")

DeadLetterMaker = Callable[[list[InstanceInfo | NonstopError]], Sequence[DeadLetter]]
"""Builds the dead letters of a batch from its results."""


class Engine:
    """Runs workflow instances on an event store.

    Args:
        store: An open :class:`EventStore` or a store URL.
        registry: The workflow definitions this engine can run.
        codec: Event codec (the default registry of event types when omitted).
        upcasters: Upcaster chains, checked against the codec's event types and
            applied to every older event read (the process-wide default when
            omitted).
        cache_size: Instances kept folded in memory.
        max_batch: Most records one group commit writes.
        max_attempts: Tries of one command against concurrent writers.
        router: Chooses versions of new instances and evaluates flags. When
            omitted, the deployments registry in the store does
            (:class:`~engine.deploy.Deployments`): ``nonstop deploy``,
            ``promote``, ``rollback`` and flag changes take effect in this
            engine without a restart, and a workflow with no deployment routes
            to ``WorkflowRegistry.current_version``.
        deployments: ``False`` opts out of the store's deployments (routing by
            ``WorkflowRegistry.current_version`` alone, flags at their
            defaults); a warning is logged if the store holds deployments.
        health: Count commands and instances per version and flush the counts
            to the store (``True``, or a :class:`~engine.health.Health`).
        metrics: Also expose the counts to Prometheus (``nonstop[metrics]``);
            implies ``health``.
        effects: Run the effect runner and the timer service in this process
            (started with the first command, stopped by :meth:`close`), with
            the ``@effect_handler`` registry; see :mod:`engine.runtime.effects`.
    """

    def __init__(
        self,
        store: EventStore | str,
        registry: WorkflowRegistry,
        *,
        codec: EventCodec | None = None,
        upcasters: UpcasterRegistry | None = None,
        cache_size: int = 10_000,
        max_batch: int = 1_000,
        max_attempts: int = 8,
        router: Router | None = None,
        deployments: bool = True,
        health: Health | bool | None = None,
        metrics: bool = False,
        effects: bool = False,
    ) -> None:
        self.store = open_store(store) if isinstance(store, str) else store
        if router is None and deployments:
            from engine.deploy.registry import Deployments

            router = Deployments(self.store)
        elif router is None:
            _warn_if_routed(self.store)
        self.health = engine_health(self.store, health, metrics)
        """Health counters per version (None unless asked for)."""
        self.registry = registry
        self.router = router
        if router is not None:
            router.attach(registry)
        self._refreshing: asyncio.Task[None] | None = None
        self.codec = codec if codec is not None else EventCodec()
        from upcasters import default_upcasters

        self.upcasters = upcasters if upcasters is not None else default_upcasters()
        """Event and snapshot-state upcaster chains (checked here)."""
        self.codec.use_upcasters(self.upcasters)
        self.upcasters.check_states(state_schemas(registry))
        self.max_attempts = max_attempts
        self.locks = InstanceLocks()
        """Per-instance locks."""
        self.loader = InstanceLoader(
            self.store,
            registry,
            self.codec,
            self.upcasters,
            router=router,
            cache_size=cache_size,
        )
        """Cache, replay and snapshots."""
        self.decider = Decider(registry, self.codec, router, self.health)
        """Decides commands."""
        self.committer = GroupCommitter(self.store, max_batch=max_batch)
        """Group commit and commits in doubt."""
        self.effects = Effects(self) if effects else None
        """The in-process effect runner and timer service (``effects=True``)."""

    @property
    def commits(self) -> int:
        """Transactions written (for monitoring)."""
        return self.committer.commits

    # ----------------------------------------------------------------- public

    async def start(
        self,
        workflow: str,
        input: Any,
        *,
        instance_id: str | None = None,
        version: int | None = None,
        command_id: str | None = None,
        routing_key: str | None = None,
        correlation_id: str | None = None,
    ) -> InstanceInfo:
        """Start an instance pinned to ``version`` (the current one by default).

        Raises:
            UnknownWorkflow: no such workflow or version is registered.
            InstanceExists: ``instance_id`` is taken (by another start command).
            CommandRejected: the decider refused the input; nothing was written.
        """
        req = Start(
            workflow,
            input,
            instance_id or uuid.uuid4().hex,
            version,
            command_id,
            routing_key,
            correlation_id,
        )
        return await self._run(req)

    async def send(
        self,
        instance_id: str,
        command: Any,
        *,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> InstanceInfo:
        """Decide ``command`` under the instance's pinned version and append.

        A command id already applied to this instance is answered with the
        current state and ``applied=False``; it is not applied twice.

        Raises:
            UnknownInstance: no such instance.
            CommandRejected: the decider refused it; nothing was written.
            ConflictRetriesExhausted: other writers kept winning the race.
        """
        return await self._run(
            Send(instance_id, command, command_id, correlation_id, causation_id)
        )

    async def get(self, instance_id: str) -> InstanceInfo:
        """Current state of an instance, caught up with the store.

        Raises:
            UnknownInstance: no such instance.
            CorruptStream: its stream has a gap or no start.
        """
        async with self.locks.hold(instance_id):
            inst = await self.loader.current(instance_id)
            return inst.info(instance_id)

    async def write_snapshot(
        self, instance_id: str, *, after: int = 0, replace: bool = False
    ) -> int | None:
        """Save a snapshot of an instance at its last position, now.

        Used to migrate snapshots to the current state schema. It takes no lock
        and leaves the cache alone: a snapshot of positions 1..N stays true
        whatever is appended after N.

        Args:
            instance_id: the instance.
            after: write nothing unless the instance has an event past this
                position.
            replace: overwrite a snapshot already stored at that position (an
                old-schema snapshot of an instance with no event since).

        Returns:
            The position saved, or None when the workflow takes no snapshots or
            the instance has no event past ``after``.

        Raises:
            UnknownInstance: no such instance.
        """
        inst = self.loader.cached(instance_id)
        if inst is None:
            inst = await asyncio.to_thread(self.loader.load_sync, instance_id)
        if not inst.workflow.snapshot_every or inst.position <= after:
            return None
        await asyncio.to_thread(
            self.loader.snapshot, instance_id, inst, replace=replace
        )
        return inst.position

    async def history(self, instance_id: str) -> list[RecordedEvent]:
        """Every event of an instance with its metadata, decoded (and upcast).

        Raises:
            UnknownInstance: no such instance.
            CorruptStream: its stream has a gap or no start.
        """
        return await asyncio.to_thread(self.loader.history_sync, instance_id)

    async def instances(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: ListingStatus | None = None,
    ) -> list[InstanceInfo]:
        """Instances in start order, filtered by workflow, version and status.

        It reads every start (see :meth:`instances_page` for the cost of a
        page); prefer :meth:`iter_instances` or pages for large stores.
        """
        out: list[InstanceInfo] = []
        async for page in self.iter_instances(
            workflow=workflow, version=version, status=status
        ):
            out.extend(page)
        return out

    async def instances_page(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: ListingStatus | None = None,
        after: int = 0,
        limit: int = 50,
    ) -> InstancePage:
        """One page of :meth:`instances`: at most ``limit``, after cursor ``after``.

        Each page's instances are folded from one batched read. Its cost is
        the rows from ``after`` to the page's last start, not the whole log.
        """
        if limit < 1:
            raise InvalidPage(f"limit must be >= 1, got {limit}; ask for 1 or more")
        if after < 0:
            raise InvalidPage(f"after must be a cursor >= 0, got {after}")
        return await asyncio.to_thread(
            self.loader.instances_page_sync,
            workflow,
            version,
            status,
            after=after,
            limit=limit,
        )

    async def iter_instances(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: ListingStatus | None = None,
        page: int = 500,
    ) -> AsyncIterator[list[InstanceInfo]]:
        """Every matching instance in start order, yielded a page at a time."""
        after: int | None = 0
        while after is not None:
            got = await self.instances_page(
                workflow=workflow,
                version=version,
                status=status,
                after=after,
                limit=page,
            )
            if got.instances:
                yield got.instances
            after = got.cursor

    async def get_many(self, instance_ids: Iterable[str]) -> dict[str, InstanceInfo]:
        """Current state of many instances, from batched reads of the store.

        Each instance equals what :meth:`get` returns for it. Ids with no
        events are left out of the result (check ``len`` or membership); the
        cache is neither read nor filled.

        Raises:
            CorruptStream: an instance's stream has a gap or no start.
            EventDecodeError: an event of an instance cannot be decoded.
            UnknownWorkflow: an instance is pinned to a version not registered.
        """
        ids = list(dict.fromkeys(instance_ids))
        found = await asyncio.to_thread(self.loader.load_many_results, ids)
        if self.router is not None and any(
            isinstance(v, UnknownWorkflow) for v in found.values()
        ):  # pinned to a version deployed elsewhere: load it, then read again
            await asyncio.to_thread(self.router.refresh)
            found = await asyncio.to_thread(self.loader.load_many_results, ids)
        out: dict[str, InstanceInfo] = {}
        for iid in ids:
            got = found.get(iid)
            if isinstance(got, NonstopError):
                raise got
            if got is not None:
                out[iid] = got.info(iid)
        return out

    async def handle_batch(
        self,
        items: Sequence[Start | Send],
        *,
        tracking: Tracking | None = None,
        dead_letters: DeadLetterMaker | None = None,
    ) -> list[InstanceInfo | NonstopError]:
        """Decide many requests and commit them all in one transaction.

        Requests for one instance apply in order. A request that fails (rejected,
        unknown instance...) yields its error in the result list and writes
        nothing; the others commit together, with ``tracking`` if given, and with
        the dead letters ``dead_letters(results)`` returns (a Kafka worker's
        record of the requests that failed). ``StoreUnavailable`` is raised,
        never listed.

        Raises:
            ConflictRetriesExhausted: other writers kept winning the race.
            StoreUnavailable: the store failed.
        """
        began = time.perf_counter()
        await self._refresh_routing()
        ids = {_target(i) for i in items}
        for attempt in range(1, self.max_attempts + 1):
            async with self.locks.hold_all(ids):
                results, records, touched = await self._decide_batch(items)
                letters = dead_letters(results) if dead_letters is not None else ()
                try:
                    await self.committer.write(
                        records, tracking=tracking, dead_letters=letters
                    )
                except ConcurrencyConflict as exc:
                    for i in ids:
                        self.loader.forget(i)
                    if attempt == self.max_attempts:
                        raise ConflictRetriesExhausted(
                            exc.conflicts[0][0]
                            if exc.conflicts
                            else ",".join(sorted(ids)),
                            attempt,
                        ) from exc
                    continue
                for iid, inst in touched.items():
                    self.loader.remember(iid, inst)
                if self.health is not None:
                    _count_batch(self.health, items, results, touched, began)
                return results
        raise AssertionError("unreachable")  # pragma: no cover

    async def migrate(
        self,
        instance_id: str,
        version: int,
        mapper: Callable[[Any], Any],
        *,
        dry_run: bool = False,
        by: str = "",
        reason: str = "",
    ) -> InstanceInfo:
        """Move a running instance to another version of its workflow.

        ``mapper(old_state)`` returns the state under ``version``. One
        ``nonstop.Migrated`` event holding it is appended at the next stream
        position; replay folds with the old reducer up to it and the new one
        after it. A dry run writes nothing and answers what the instance would
        become (with ``applied=False``).

        Raises:
            UnknownInstance: no such instance.
            UnknownWorkflow: ``version`` is not registered.
            MigrationError: the instance is not running, already on ``version``,
                or the mapper failed or returned a state that does not fit.
            ConflictRetriesExhausted: other writers kept winning the race.
        """
        for _ in range(self.max_attempts):
            async with self.locks.hold(instance_id):
                inst = await self.loader.current(instance_id)
                new, record = self.decider.migration(
                    instance_id, inst, version, mapper, by, reason
                )
                if dry_run:
                    return new.info(instance_id, applied=False)
                try:
                    await self.committer.commit([record])
                except ConcurrencyConflict:
                    self.loader.forget(instance_id)
                    continue
                self.loader.remember(instance_id, new)
                return new.info(instance_id)
        raise ConflictRetriesExhausted(instance_id, self.max_attempts)

    async def cancel(
        self,
        instance_id: str,
        *,
        reason: str,
        by: str = "",
        command_id: str | None = None,
    ) -> InstanceInfo:
        """Cancel a running instance: it ends as ``cancelled``, audited.

        Appends ``nonstop.Cancelled`` (who, why); when the workflow has an
        ``on_cancel`` handler, the events it decides come first. Replay folds
        the event into the status ``cancelled``; the instance takes no more
        commands. A command id already applied is answered with
        ``applied=False`` and writes nothing.

        Raises:
            UnknownInstance: no such instance.
            CommandRejected: the instance is not running (already cancelled,
                completed or failed), ``reason`` is empty, or ``on_cancel``
                refused; nothing was written.
            WorkflowCodeError: ``on_cancel`` or ``evolve`` raised.
            ConflictRetriesExhausted: other writers kept winning the race.
        """
        async with self.locks.hold(instance_id):
            for _ in range(self.max_attempts):
                inst = self.loader.cached(instance_id) or await self.loader.load(
                    instance_id
                )
                outcome = self.decider.cancel(instance_id, inst, reason, by, command_id)
                if isinstance(outcome, InstanceInfo):
                    return outcome
                new, records = outcome
                try:
                    await self.committer.commit(records)
                except ConcurrencyConflict:
                    self.loader.forget(instance_id)
                    continue
                self.loader.remember(instance_id, new)
                return new.info(instance_id)
        raise ConflictRetriesExhausted(instance_id, self.max_attempts)

    async def close(self) -> None:
        """Finish pending writes and background snapshots, then close the store.

        Cancelling it leaves the writes running; a later ``close`` waits again.
        """
        if self.effects is not None:
            await self.effects.stop()  # handlers in flight finish and record
        await self.committer.close()
        await self.loader.close()
        if self.health is not None:
            await asyncio.to_thread(self.health.close)
        await asyncio.to_thread(self.store.close)

    async def __aenter__(self) -> Engine:
        if self.effects is not None:
            self.effects.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------- internals

    async def _refresh_routing(self) -> None:
        """Re-read routing when due; concurrent callers share one refresh."""
        if self.effects is not None and not self.effects.running:
            self.effects.start()
        router = self.router
        if router is None or not router.refresh_due():
            return
        task = self._refreshing
        if task is None or task.done():
            task = asyncio.create_task(_call_in_thread(router.refresh))
            self._refreshing = task
        await asyncio.shield(task)

    async def _run(self, req: Start | Send) -> InstanceInfo:
        iid = _target(req)
        began = time.perf_counter()
        await self._refresh_routing()
        async with self.locks.hold(iid):
            for _ in range(self.max_attempts):
                outcome: Decided | InstanceInfo
                if isinstance(req, Start):
                    outcome = self.decider.start(req)
                else:
                    inst = self.loader.cached(iid) or await self.loader.load(iid)
                    outcome = self.decider.send(inst, req)
                if isinstance(outcome, InstanceInfo):
                    return outcome
                new, records = outcome
                try:
                    if records:
                        await self.committer.commit(records)
                except ConcurrencyConflict:
                    self.loader.forget(iid)
                    if isinstance(req, Start):
                        return await self._existing_start(req)
                    continue
                self.loader.remember(iid, new)
                if self.health is not None:
                    wf = new.workflow
                    self.health.accepted(
                        wf.name,
                        wf.version,
                        start=isinstance(req, Start),
                        status=new.status,
                        seconds=time.perf_counter() - began,
                        flags=new.flags,
                    )
                return new.info(iid)
        raise ConflictRetriesExhausted(iid, self.max_attempts)

    async def _existing_start(self, req: Start) -> InstanceInfo:
        iid = _target(req)
        inst = await self.loader.load(iid)
        if req.command_id is not None and req.command_id in inst.commands:
            return inst.info(iid, applied=False)
        raise InstanceExists(iid)

    async def _decide_batch(
        self, items: Sequence[Start | Send]
    ) -> tuple[list[InstanceInfo | NonstopError], list[NewRecord], dict[str, Instance]]:
        results: list[InstanceInfo | NonstopError] = []
        records: list[NewRecord] = []
        touched: dict[str, Instance] = {}
        owned: set[str] = set()  # instances whose commands dict this batch made
        loader = self.loader
        for item in items:
            iid = _target(item)
            outcome: Decided | InstanceInfo | NonstopError
            try:
                if isinstance(item, Start):
                    if iid in touched or await self._exists(iid):
                        results.append(await self._start_again(item, touched))
                        continue
                    outcome = self.decider.start(item)
                    before = None
                else:
                    inst = touched.get(iid) or loader.cached(iid)
                    if inst is None:
                        inst = await loader.load(iid)
                    outcome = self.decider.send(inst, item, owned=iid in owned)
                    before = inst.commands
            except StoreUnavailable:
                raise  # transient: the whole batch fails, no request is refused
            except NonstopError as exc:
                results.append(exc)
                continue
            if isinstance(outcome, InstanceInfo):
                results.append(outcome)
                continue
            new, recs = outcome
            if new.commands is not before:  # a copy: this batch owns it now
                owned.add(iid)
            touched[iid] = new
            records.extend(recs)
            results.append(new.info(iid))
        return results, records, touched

    async def _start_again(
        self, req: Start, touched: dict[str, Instance]
    ) -> InstanceInfo | NonstopError:
        """A batch's start of an existing instance: a repeat, or a taken id."""
        iid = _target(req)
        if req.command_id is None:
            return InstanceExists(iid)
        inst = (
            touched.get(iid) or self.loader.cached(iid) or await self.loader.load(iid)
        )
        if req.command_id in inst.commands:
            return inst.info(iid, applied=False)
        return InstanceExists(iid)

    async def _exists(self, instance_id: str) -> bool:
        if self.loader.cached(instance_id) is not None:
            return True
        return await asyncio.to_thread(self.store.stream_position, instance_id) > 0


def _warn_if_routed(store: EventStore) -> None:
    """Log a warning when ``store`` holds deployments an engine will ignore."""
    from engine.deploy.events import INDEX_STREAM

    if store.read_stream(INDEX_STREAM, limit=1):
        log.warning(
            "the store %s holds deployments (nonstop deploy/promote/rollback) and "
            "flags that this engine ignores (deployments=False): new instances "
            "route by WorkflowRegistry.current_version, flags read their defaults",
            store.url,
        )


def _count_batch(
    health: Health,
    items: Sequence[Start | Send],
    results: Sequence[InstanceInfo | NonstopError],
    touched: dict[str, Instance],
    began: float,
) -> None:
    """Count the requests a batch committed (repeats answered are not).

    Flag and config values come from each instance as the batch left it (a
    value first read by a later command of the batch counts its earlier ones).
    """
    seconds = time.perf_counter() - began
    for item, res in zip(items, results, strict=True):
        if isinstance(res, InstanceInfo) and res.applied:
            inst = touched.get(res.instance_id)
            health.accepted(
                res.workflow,
                res.version,
                start=isinstance(item, Start),
                status=res.status,
                seconds=seconds,
                flags=inst.flags if inst is not None else None,
            )


def _target(item: Start | Send) -> str:
    assert item.instance_id is not None
    return item.instance_id


async def _call_in_thread(fn: Callable[[], object]) -> None:
    await asyncio.to_thread(fn)
