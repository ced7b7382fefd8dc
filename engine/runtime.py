"""The runtime: start, send and get workflow instances, with group commit.

Concurrent calls do not each pay for a transaction. Every call decides under its
instance's lock, then hands its records to one writer task; the writer commits
whatever has queued up while the previous commit was in flight, in one
transaction. A lone caller never waits for a window to close: with nothing
queued and nothing in flight, it appends itself, without the handoff.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import dropwhile, groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from engine.errors import (
    CommandRejected,
    ConcurrencyConflict,
    ConflictRetriesExhausted,
    EventDecodeError,
    InstanceExists,
    MigrationError,
    NonstopError,
    StoreUnavailable,
    UnknownInstance,
    UnknownWorkflow,
    WorkflowCodeError,
)
from engine.events import (
    RESERVED_STREAM_PREFIX,
    SYSTEM_TYPES,
    EventCodec,
    Metadata,
    Migrated,
    RecordedEvent,
    Started,
    is_reserved_stream,
    now_micros,
)
from engine.health import Health, engine_health
from engine.snapshots import snapshot_state, state_schemas, usable
from engine.store import (
    DeadLetter,
    EventStore,
    NewRecord,
    Record,
    RecordRow,
    Snapshot,
    Tracking,
    open_store,
)
from engine.workflow import Context, Status, Workflow, WorkflowRegistry

if TYPE_CHECKING:  # upcasters imports engine.errors: no import cycle at run time
    from upcasters import UpcasterRegistry

__all__ = [
    "Engine",
    "InstanceInfo",
    "Router",
    "Send",
    "Start",
]

log = logging.getLogger("nonstop.runtime")
_STARTED = "nonstop.Started"
_MIGRATED = "nonstop.Migrated"
_FIRST_PAGE = 256
_encoder = msgspec.msgpack.Encoder()


# msgspec structs rather than frozen dataclasses: a batch makes one request
# and one result per message, and a frozen dataclass costs ten times as much
# to construct.
class InstanceInfo(msgspec.Struct, frozen=True):
    """Where one instance stands."""

    instance_id: str
    """Instance id (its stream id)."""
    workflow: str
    """Workflow name."""
    version: int
    """The version it is pinned to."""
    state: Any
    """Current state."""
    position: int
    """Position of its last event."""
    status: Status
    """running, completed or failed."""
    applied: bool = True
    """False when a repeated command id was answered without applying it again."""


class Start(msgspec.Struct, frozen=True):
    """A start request, for :meth:`Engine.handle_batch`."""

    workflow: str
    """Workflow name."""
    input: Any
    """The start input, passed to ``decide`` as the first command."""
    instance_id: str | None = None
    """Id to give the instance (a new UUID when omitted)."""
    version: int | None = None
    """Pin this version instead of the current one."""
    command_id: str | None = None
    """Makes the start idempotent."""
    routing_key: str | None = None
    """Business key for routing."""
    correlation_id: str | None = None
    """Correlation id."""


class Send(msgspec.Struct, frozen=True):
    """A command for an existing instance, for :meth:`Engine.handle_batch`."""

    instance_id: str
    """Target instance."""
    command: Any
    """The command, passed to ``decide``."""
    command_id: str | None = None
    """Makes the command idempotent: a repeat is answered, not applied."""
    correlation_id: str | None = None
    """Correlation id."""
    causation_id: str | None = None
    """Causation id."""


class Router(Protocol):
    """Picks the version of new instances and evaluates feature flags.

    :mod:`engine.deploy` implements it from the deployments registry in the
    store; an engine without a router uses ``WorkflowRegistry.current_version``.
    """

    def attach(self, registry: WorkflowRegistry) -> None:
        """Bind the engine's workflow registry (new deployments load into it)."""

    def refresh_due(self) -> bool:
        """True when the in-memory routing may be stale and should be re-read."""

    def refresh(self) -> object:
        """Re-read routing and flags from the store (blocking; thread-safe)."""

    def route(self, workflow: str, key: str) -> int | None:
        """The version a new instance with routing key ``key`` gets, if routed."""

    def evaluate(self, kind: str, name: str, key: str, default: Any) -> Any:
        """Value of flag ``name`` (kind ``flag`` or ``variant``) for ``key``."""


@dataclass(slots=True)
class _Instance:
    """A cached, fully folded instance."""

    workflow: Workflow[Any]
    state: Any
    position: int
    commands: dict[str, int] = field(default_factory=dict)
    key: str | None = None
    """The routing key given at start (flags bucket on it, else on the id)."""
    flags: dict[str, Any] | None = None
    """Flag values evaluated so far, pinned for the instance's life."""

    def info(self, instance_id: str, *, applied: bool = True) -> InstanceInfo:
        wf = self.workflow
        return InstanceInfo(
            instance_id,
            wf.name,
            wf.version,
            self.state,
            self.position,
            wf.status(self.state),
            applied,
        )


class _SnapshotBody(msgspec.Struct, array_like=True):
    state: msgspec.Raw
    commands: dict[str, int]
    flags: dict[str, Any] = {}


@dataclass(slots=True)
class _Pending:
    records: list[NewRecord]
    future: asyncio.Future[None]


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
        router: Chooses versions of new instances and evaluates flags (see
            :mod:`engine.deploy`); ``WorkflowRegistry.current_version`` when
            omitted.
        health: Count commands and instances per version and flush the counts
            to the store (``True``, or a :class:`~engine.health.Health`).
        metrics: Also expose the counts to Prometheus (``nonstop[metrics]``);
            implies ``health``.
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
        health: Health | bool | None = None,
        metrics: bool = False,
    ) -> None:
        self.store = open_store(store) if isinstance(store, str) else store
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
        self.cache_size = cache_size
        self.max_batch = max_batch
        self.max_attempts = max_attempts
        self._cache: OrderedDict[str, _Instance] = OrderedDict()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._inline: asyncio.Future[list[int]] | None = None  # a lone write
        self._background: set[asyncio.Task[None]] = set()
        self.commits = 0
        """Transactions written by the group committer (for monitoring)."""

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
        """
        async with self._lock(instance_id):
            inst = self._cache.get(instance_id)
            if inst is not None:
                inst = await asyncio.to_thread(self._catch_up, instance_id, inst)
                self._remember(instance_id, inst)
            else:
                inst = await self._load(instance_id)
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
        inst = self._cache.get(instance_id)
        if inst is None:
            inst = await asyncio.to_thread(self._load_sync, instance_id)
        if not inst.workflow.snapshot_every or inst.position <= after:
            return None
        await asyncio.to_thread(self._snapshot, instance_id, inst, replace=replace)
        return inst.position

    async def history(self, instance_id: str) -> list[RecordedEvent]:
        """Every event of an instance with its metadata, decoded (and upcast).

        Raises:
            UnknownInstance: no such instance.
        """
        return await asyncio.to_thread(self._history, instance_id)

    async def instances(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: Status | None = None,
    ) -> list[InstanceInfo]:
        """Instances in start order, filtered by workflow, version and status."""
        return await asyncio.to_thread(self._instances, workflow, version, status)

    async def handle_batch(
        self,
        items: Sequence[Start | Send],
        *,
        tracking: Tracking | None = None,
        dead_letters: Callable[
            [list[InstanceInfo | NonstopError]], Sequence[DeadLetter]
        ]
        | None = None,
    ) -> list[InstanceInfo | NonstopError]:
        """Decide many requests and commit them all in one transaction.

        Requests for one instance apply in order. A request that fails (rejected,
        unknown instance...) yields its error in the result list and writes
        nothing; the others commit together, with ``tracking`` if given, and with
        the dead letters ``dead_letters(results)`` returns (a Kafka worker's
        record of the requests that failed). ``StoreUnavailable`` is raised,
        never listed.
        """
        began = time.perf_counter()
        await self._refresh_routing()
        ids = sorted({self._target(i) for i in items})
        for attempt in range(1, self.max_attempts + 1):
            locks = [self._lock(i) for i in ids]
            for lk in locks:
                await lk.__aenter__()
            try:
                results, records, touched = await self._decide_batch(items)
                letters = dead_letters(results) if dead_letters is not None else ()
                try:
                    await asyncio.to_thread(
                        self.store.append,
                        records,
                        tracking=tracking,
                        dead_letters=letters,
                    )
                    self.commits += 1
                except ConcurrencyConflict:
                    for i in ids:
                        self._cache.pop(i, None)
                    if attempt == self.max_attempts:
                        raise
                    continue
                for iid, inst in touched.items():
                    self._remember(iid, inst)
                if self.health is not None:
                    _count_batch(self.health, items, results, began)
                return results
            finally:
                for lk in reversed(locks):
                    await lk.__aexit__(None, None, None)
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
        """
        for _ in range(self.max_attempts):
            async with self._lock(instance_id):
                inst = self._cache.get(instance_id)
                if inst is not None:
                    inst = await asyncio.to_thread(self._catch_up, instance_id, inst)
                else:
                    inst = await self._load(instance_id)
                new, record = self._decide_migration(
                    instance_id, inst, version, mapper, by, reason
                )
                if dry_run:
                    return new.info(instance_id, applied=False)
                try:
                    await self._commit([record])
                except ConcurrencyConflict:
                    self._cache.pop(instance_id, None)
                    continue
                self._remember(instance_id, new)
                return new.info(instance_id)
        raise ConflictRetriesExhausted(instance_id, self.max_attempts)

    async def close(self) -> None:
        """Finish pending writes and background snapshots, then close the store."""
        while self._inline is not None or self._writing():
            if self._inline is not None:
                await asyncio.wait([self._inline])
            if self._writer is not None and not self._writer.done():
                await asyncio.shield(self._writer)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.health is not None:
            await asyncio.to_thread(self.health.close)
        await asyncio.to_thread(self.store.close)

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------- deciding

    @staticmethod
    def _target(item: Start | Send) -> str:
        assert item.instance_id is not None
        return item.instance_id

    async def _refresh_routing(self) -> None:
        """Re-read routing when due; concurrent callers share one refresh."""
        router = self.router
        if router is None or not router.refresh_due():
            return
        task = self._refreshing
        if task is None or task.done():
            task = asyncio.create_task(_call_in_thread(router.refresh))
            self._refreshing = task
        await asyncio.shield(task)

    async def _run(self, req: Start | Send) -> InstanceInfo:
        iid = self._target(req)
        began = time.perf_counter()
        await self._refresh_routing()
        async with self._lock(iid):
            for _ in range(self.max_attempts):
                if isinstance(req, Start):
                    outcome = self._decide_start(req)
                else:
                    inst = self._cache.get(iid)
                    if inst is None:
                        inst = await self._load(iid)
                    outcome = self._decide_send(inst, req)
                if isinstance(outcome, InstanceInfo):
                    return outcome
                new, records = outcome
                try:
                    if records:
                        await self._commit(records)
                except ConcurrencyConflict:
                    self._cache.pop(iid, None)
                    if isinstance(req, Start):
                        return await self._existing_start(req)
                    continue
                self._remember(iid, new)
                if self.health is not None:
                    wf = new.workflow
                    self.health.accepted(
                        wf.name,
                        wf.version,
                        start=isinstance(req, Start),
                        status=wf.status(new.state),
                        seconds=time.perf_counter() - began,
                        flags=new.flags,
                    )
                return new.info(iid)
        raise ConflictRetriesExhausted(iid, self.max_attempts)

    async def _existing_start(self, req: Start) -> InstanceInfo:
        iid = self._target(req)
        inst = await self._load(iid)
        if req.command_id is not None and req.command_id in inst.commands:
            return inst.info(iid, applied=False)
        raise InstanceExists(iid)

    async def _decide_batch(
        self, items: Sequence[Start | Send]
    ) -> tuple[
        list[InstanceInfo | NonstopError], list[NewRecord], dict[str, _Instance]
    ]:
        results: list[InstanceInfo | NonstopError] = []
        records: list[NewRecord] = []
        touched: dict[str, _Instance] = {}
        owned: set[str] = set()  # instances whose commands dict this batch made
        for item in items:
            iid = self._target(item)
            try:
                if isinstance(item, Start):
                    if iid in touched or await self._exists(iid):
                        results.append(await self._start_again(item, touched))
                        continue
                    outcome = self._decide_start(item)
                    before = None
                else:
                    inst = touched.get(iid) or self._cache.get(iid)
                    if inst is None:
                        inst = await self._load(iid)
                    outcome = self._decide_send(inst, item, owned=iid in owned)
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
        self, req: Start, touched: dict[str, _Instance]
    ) -> InstanceInfo | NonstopError:
        """A batch's start of an existing instance: a repeat, or a taken id."""
        iid = self._target(req)
        if req.command_id is None:
            return InstanceExists(iid)
        inst = touched.get(iid) or self._cache.get(iid) or await self._load(iid)
        if req.command_id in inst.commands:
            return inst.info(iid, applied=False)
        return InstanceExists(iid)

    async def _exists(self, instance_id: str) -> bool:
        if instance_id in self._cache:
            return True
        return await asyncio.to_thread(self.store.stream_position, instance_id) > 0

    def _decide_start(
        self, req: Start
    ) -> tuple[_Instance, list[NewRecord]] | InstanceInfo:
        iid = self._target(req)
        if is_reserved_stream(iid):
            raise CommandRejected(
                f"instance id {iid!r} starts with {RESERVED_STREAM_PREFIX!r}, which "
                "is reserved for the engine's own streams; choose another id"
            )
        version = req.version
        if version is None and self.router is not None:
            version = self.router.route(req.workflow, req.routing_key or iid)
        wf = self.registry.get(req.workflow, version)
        inst = _Instance(wf, wf.initial(), 0, key=req.routing_key)
        started = Started(
            workflow=wf.name,
            version=wf.version,
            input_type=type(req.input).__name__,
            input=_encode_input(req.input),
            routing_key=req.routing_key,
        )
        meta = Metadata(wf.ref, req.command_id, req.correlation_id or req.command_id)
        outcome = self._decide(iid, inst, req.input, meta, first=[started])
        return outcome

    def _decide_send(
        self, inst: _Instance, req: Send, *, owned: bool = False
    ) -> tuple[_Instance, list[NewRecord]] | InstanceInfo:
        iid = req.instance_id
        if req.command_id is not None and req.command_id in inst.commands:
            return inst.info(iid, applied=False)
        wf = inst.workflow
        status = wf.status(inst.state)
        if status != "running":
            raise CommandRejected(
                f"the instance is {status}; it takes no more commands",
                instance_id=iid,
                command=req.command,
            )
        meta = Metadata(wf.ref, req.command_id, req.correlation_id, req.causation_id)
        return self._decide(iid, inst, req.command, meta, owned=owned)

    def _decide(
        self,
        iid: str,
        inst: _Instance,
        command: Any,
        meta: Metadata,
        *,
        first: Sequence[Any] = (),
        owned: bool = False,
    ) -> tuple[_Instance, list[NewRecord]]:
        """Decide and encode one command.

        ``owned``: ``inst.commands`` belongs to the caller's uncommitted batch
        (no cached instance holds it), so a new command id is added in place
        rather than into a copy: copying grows with the instance's history.
        """
        wf = inst.workflow
        ctx = Context(iid, meta.workflow, flags=self._flag_reader(inst.key or iid))
        if inst.flags:
            ctx.pinned.update(inst.flags)
        try:
            events = list(wf.decide(inst.state, command, ctx))
        except CommandRejected as exc:
            if self.health is not None:
                self.health.rejected(wf.name, wf.version, ctx.pinned)
            raise CommandRejected(
                exc.reason, instance_id=iid, command=command
            ) from None
        except NonstopError:
            raise
        except Exception as exc:
            if self.health is not None:
                self.health.crashed(wf.name, wf.version, ctx.pinned)
            raise WorkflowCodeError(wf.ref, iid, "decide", exc) from exc
        state = inst.state
        try:
            for e in events:
                state = wf.evolve(state, e)
        except Exception as exc:
            if self.health is not None:
                self.health.crashed(wf.name, wf.version, ctx.pinned)
            raise WorkflowCodeError(wf.ref, iid, "evolve", exc) from exc
        now = now_micros()
        encode = self.codec.encode
        records: list[NewRecord] = []
        position = inst.position
        for e in first:
            position += 1
            name, data = encode(e, meta, recorded_at=now)
            records.append(NewRecord(iid, position, name, data))
        recorded = ctx.recorded or None  # stored with the decision's first event
        for e in events:
            position += 1
            name, data = encode(e, meta, recorded_at=now, ctx=recorded)
            recorded = None
            records.append(NewRecord(iid, position, name, data))
        commands = inst.commands
        if meta.command_id is not None and records:
            if owned:
                commands[meta.command_id] = position
            else:
                commands = {**commands, meta.command_id: position}
        flags = inst.flags
        if records and len(ctx.pinned) != len(flags or ()):
            flags = ctx.pinned
        new = _Instance(wf, state, position, commands, inst.key, flags)
        return new, records

    def _flag_reader(self, key: str) -> Callable[[str, str, Any], Any] | None:
        router = self.router
        if router is None:
            return None
        return lambda kind, name, default: router.evaluate(kind, name, key, default)

    def _decide_migration(
        self,
        iid: str,
        inst: _Instance,
        version: int,
        mapper: Callable[[Any], Any],
        by: str,
        reason: str,
    ) -> tuple[_Instance, NewRecord]:
        old = inst.workflow
        new_wf = self.registry.get(old.name, version)
        status = old.status(inst.state)
        if status != "running":
            raise MigrationError(iid, new_wf.ref, f"the instance is {status}")
        if version == old.version:
            raise MigrationError(iid, new_wf.ref, "it already runs that version")
        try:
            mapped = mapper(inst.state)
            data = _encoder.encode(mapped)
            state = msgspec.msgpack.decode(data, type=new_wf.state_type)
            new_status = new_wf.status(state)
        except Exception as exc:  # the mapper is user code
            raise MigrationError(
                iid, new_wf.ref, f"the mapper failed: {exc!r}"
            ) from exc
        if new_status != "running":
            raise MigrationError(
                iid, new_wf.ref, f"the mapped state would be {new_status}"
            )
        event = Migrated(old.name, old.version, version, data, by, reason)
        meta = Metadata(new_wf.ref)
        name, body = self.codec.encode(event, meta, recorded_at=now_micros())
        position = inst.position + 1
        new = _Instance(new_wf, state, position, inst.commands, inst.key, inst.flags)
        return new, NewRecord(iid, position, name, body)

    # ---------------------------------------------------------- group commit

    async def _commit(self, records: list[NewRecord]) -> None:
        loop = asyncio.get_running_loop()
        if self._inline is None and not self._pending and not self._writing():
            # A lone caller writes itself, without the handoff to the writer
            # task; whoever comes meanwhile queues for the next group commit.
            write = loop.run_in_executor(None, self.store.append, records)
            self._inline = write
            try:
                await asyncio.shield(write)
            finally:
                self._inline = None
                if self._pending and not self._writing():
                    self._writer = asyncio.create_task(self._write_loop())
            self.commits += 1
            return
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append(_Pending(records, fut))
        if self._inline is None and not self._writing():
            self._writer = asyncio.create_task(self._write_loop())
        await fut

    def _writing(self) -> bool:
        return self._writer is not None and not self._writer.done()

    async def _write_loop(self) -> None:
        while self._pending:
            batch: list[_Pending] = []
            size = 0
            while self._pending and (not batch or size < self.max_batch):
                p = self._pending.pop(0)
                batch.append(p)
                size += len(p.records)
            await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        while batch:
            records = [r for p in batch for r in p.records]
            try:
                await asyncio.to_thread(self.store.append, records)
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
            self.commits += 1
            for p in batch:
                _resolve(p.future, None)
            return

    # ------------------------------------------------------------ the cache

    def _lock(self, instance_id: str) -> _InstanceLock:
        return _InstanceLock(self._locks, instance_id)

    def _remember(self, instance_id: str, inst: _Instance) -> None:
        old = self._cache.get(instance_id)
        self._cache[instance_id] = inst
        self._cache.move_to_end(instance_id)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        every = inst.workflow.snapshot_every
        before = old.position if old is not None else 0
        if every and inst.position // every > before // every:
            job = asyncio.to_thread(self._snapshot, instance_id, inst)
            task = asyncio.create_task(job)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _snapshot(
        self, instance_id: str, inst: _Instance, *, replace: bool = False
    ) -> None:
        body = _SnapshotBody(
            msgspec.Raw(_encoder.encode(inst.state)), inst.commands, inst.flags or {}
        )
        try:
            self.store.save_snapshot(
                Snapshot(
                    instance_id,
                    inst.position,
                    inst.workflow.state_key,
                    _encoder.encode(body),
                ),
                replace=replace,
            )
        except Exception:  # a snapshot is an optimisation, never a failure
            log.exception("snapshot of %s at %s failed", instance_id, inst.position)

    async def _load(self, instance_id: str) -> _Instance:
        try:
            inst = await asyncio.to_thread(self._load_sync, instance_id)
        except UnknownWorkflow:
            if self.router is None:
                raise
            # Pinned to a version deployed elsewhere: load it, then try again.
            await asyncio.to_thread(self.router.refresh)
            inst = await asyncio.to_thread(self._load_sync, instance_id)
        self._remember(instance_id, inst)
        return inst

    def _load_sync(self, instance_id: str) -> _Instance:
        # One round trip for a short stream: its head page has Started and the rest.
        head = self.store.read_stream(instance_id, limit=_FIRST_PAGE)
        return self._load_from(instance_id, head, complete=len(head) < _FIRST_PAGE)

    def _load_many_sync(self, instance_ids: Sequence[str]) -> dict[str, _Instance]:
        """Load many instances from a few queries; ids with no events are left out."""
        # A batch allocates a few objects per row and frees them together; with
        # the collector running it re-scans the young ones many times over (a
        # third of the CPU time of a batch), so it is paused for the batch.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            out: dict[str, _Instance] = {}
            load = self._load_stream
            # Straight from the store's chunks: each stream's records lie
            # together, so one pass splits them (no per-stream lists).
            for rows in self.store.iter_streams(instance_ids):
                for iid, records in groupby(rows, _stream_of):
                    out[iid] = load(iid, records)
            return out
        finally:
            if was_enabled:
                gc.enable()

    def _load_from(
        self, instance_id: str, head: list[Record], *, complete: bool
    ) -> _Instance:
        """Fold a stream whose first records are ``head`` (all of it if complete)."""
        if not head:
            raise UnknownInstance(instance_id)
        inst = self._load_stream(instance_id, iter(head))
        if complete:
            return inst
        return self._catch_up(instance_id, inst)

    def _load_stream(self, instance_id: str, records: Iterator[RecordRow]) -> _Instance:
        """Fold the records of a stream from its first one (which must be there)."""
        _, first, _, name, data = next(records)
        if name != _STARTED:
            raise EventDecodeError(
                instance_id,
                first,
                name,
                "the stream does not begin with nonstop.Started",
            )
        payloads, command_id = self.codec.decode_payloads(
            instance_id, first, name, data
        )
        started: Started = payloads[0]
        wf = self.registry.get(started.workflow, started.version)
        inst = self._from_snapshot(instance_id, wf) if wf.snapshot_every else None
        if inst is None:
            commands = {command_id: 1} if command_id is not None else {}
            inst = _Instance(wf, wf.initial(), 1, commands, started.routing_key)
        else:  # skip the events the snapshot includes
            inst.key = started.routing_key
            done = inst.position
            records = dropwhile(lambda r: r[1] <= done, records)
        return self._fold(instance_id, inst, records)

    def _from_snapshot(self, instance_id: str, wf: Workflow[Any]) -> _Instance | None:
        if not wf.snapshot_every:
            return None
        snap = self.store.load_snapshot(instance_id)
        if snap is None or not usable(wf, snap.key, self.upcasters):
            return None
        try:
            body = msgspec.msgpack.decode(snap.data, type=_SnapshotBody)
            state = snapshot_state(wf, snap.key, body.state, self.upcasters)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("ignoring unreadable snapshot of %s", instance_id)
            return None
        except Exception:  # a state upcaster is user code; events still hold it all
            log.exception("state upcaster failed on the snapshot of %s", instance_id)
            return None
        flags = dict(body.flags) if body.flags else None
        return _Instance(wf, state, snap.position, dict(body.commands), flags=flags)

    def _catch_up(self, instance_id: str, inst: _Instance) -> _Instance:
        records = self.store.iter_stream(instance_id, after=inst.position)
        return self._fold(instance_id, inst, records)

    def _fold(
        self, instance_id: str, inst: _Instance, records: Iterable[RecordRow]
    ) -> _Instance:
        wf = inst.workflow
        evolve = wf.evolve
        types = self.codec.types._by_name.get
        decode = self.codec.decode_old
        decode_error = msgspec.DecodeError
        system = SYSTEM_TYPES
        state = inst.state
        position = inst.position
        # New ids go to a fresh dict: the cached instance must not see ids of
        # events past its own position (a repeat would be answered stale).
        found: dict[str, int] = {}
        flags = inst.flags
        try:
            for _, position, _, name, data in records:
                if name in system:
                    if name == _MIGRATED:
                        wf, state = self._migrated(instance_id, position, data)
                        evolve = wf.evolve
                    continue
                # Fast path: the current schema decodes in one typed pass. The
                # test of stored_schema(data) == et.schema, inlined (hot loop).
                et = types(name)
                if (
                    et is not None
                    and len(data) > 1
                    and data[0] & 0xF0 == 0x90
                    and data[1] == et.schema < 0x80
                ):
                    try:
                        env = et.decoder.decode(data)
                    except decode_error:
                        pass  # decode_old below reports it with its coordinates
                    else:
                        state = evolve(state, env.data)
                        if env.command_id is not None:
                            found[env.command_id] = position
                        if env.ctx is not None:
                            flags = _pinned_flags(flags, env.ctx)
                        continue
                payloads, command_id, recorded = decode(
                    instance_id, position, name, data
                )
                if recorded:
                    flags = _pinned_flags(flags, recorded)
                for p in payloads:
                    state = evolve(state, p)
                if command_id is not None:
                    found[command_id] = position
        except NonstopError:
            raise
        except Exception as exc:  # evolve is user code
            raise WorkflowCodeError(
                wf.ref, instance_id, f"evolve (replaying position {position})", exc
            ) from exc
        if position == inst.position:
            return inst
        commands = {**inst.commands, **found} if found else inst.commands
        # _Instance(...) rather than replace(): replace() is slow here.
        return _Instance(wf, state, position, commands, inst.key, flags)

    def _migrated(
        self, instance_id: str, position: int, data: bytes
    ) -> tuple[Workflow[Any], Any]:
        """The version and state a ``nonstop.Migrated`` event switches to."""
        payloads, _ = self.codec.decode_payloads(instance_id, position, _MIGRATED, data)
        m: Migrated = payloads[0]
        wf = self.registry.get(m.workflow, m.to_version)
        try:
            state = msgspec.msgpack.decode(m.state, type=wf.state_type)
        except msgspec.DecodeError as exc:
            raise EventDecodeError(
                instance_id, position, _MIGRATED, f"state does not fit {wf.ref}: {exc}"
            ) from None
        return wf, state

    def _history(self, instance_id: str) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        for rec in self.store.iter_stream(instance_id):
            out.extend(
                self.codec.decode(
                    instance_id, rec.position, rec.global_position, rec.type, rec.data
                )
            )
        if not out:
            raise UnknownInstance(instance_id)
        return out

    def _instances(
        self, workflow: str | None, version: int | None, status: Status | None
    ) -> list[InstanceInfo]:
        out: list[InstanceInfo] = []
        for rec in self.store.iter_all(types=[_STARTED]):
            iid = rec.stream_id
            inst = self._cache.get(iid)
            inst = self._catch_up(iid, inst) if inst else self._load_sync(iid)
            info = inst.info(iid)
            if workflow is not None and info.workflow != workflow:
                continue
            if version is not None and info.version != version:
                continue
            if status is not None and info.status != status:
                continue
            out.append(info)
        return out


def _count_batch(
    health: Health,
    items: Sequence[Start | Send],
    results: Sequence[InstanceInfo | NonstopError],
    began: float,
) -> None:
    """Count the requests a batch committed (repeats answered are not)."""
    seconds = time.perf_counter() - began
    for item, res in zip(items, results, strict=True):
        if isinstance(res, InstanceInfo) and res.applied:
            start = isinstance(item, Start)
            health.accepted(
                res.workflow,
                res.version,
                start=start,
                status=res.status,
                seconds=seconds,
            )


async def _call_in_thread(fn: Callable[[], object]) -> None:
    await asyncio.to_thread(fn)


_stream_of = itemgetter(0)


def _pinned_flags(
    flags: dict[str, Any] | None, recorded: list[Any]
) -> dict[str, Any] | None:
    """``flags`` plus the first flag evaluations found in a recorded context."""
    for item in recorded:
        if item[0] == "flag" and (flags is None or item[1][0] not in flags):
            flags = {**(flags or {}), item[1][0]: item[1][1]}
    return flags


def _encode_input(value: Any) -> bytes:
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise CommandRejected(
            f"the start input {type(value).__name__} cannot be stored ({exc}); "
            "use a msgspec.Struct, dataclass or plain data"
        ) from None


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


class _InstanceLock:
    """A per-instance asyncio lock that frees its entry when nobody holds it."""

    __slots__ = ("_iid", "_locks")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], iid: str) -> None:
        self._locks = locks
        self._iid = iid

    async def __aenter__(self) -> None:
        lock, users = self._locks.get(self._iid, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[self._iid] = (lock, users + 1)
        await lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        lock, users = self._locks[self._iid]
        lock.release()
        if users <= 1:
            del self._locks[self._iid]
        else:
            self._locks[self._iid] = (lock, users - 1)
