"""The instance loader: an LRU cache of folded instances, and how they are read.

It reads streams from the store and folds them with the core replay step
(:class:`engine.core.replay.Replay`), starting from a usable snapshot when the
workflow takes them, and writes snapshots in the background as instances
cross their ``snapshot_every`` marks. The blocking methods (``*_sync``) run in
a worker thread; the engine calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from itertools import dropwhile, groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import msgspec

from engine.core.codec import EventCodec
from engine.core.errors import NonstopError, UnknownInstance, UnknownWorkflow
from engine.core.events import RecordedEvent
from engine.core.replay import (
    STARTED,
    UNREADABLE,
    Instance,
    InstanceInfo,
    Replay,
    checked,
    unreadable_info,
)
from engine.core.workflow import ListingStatus, Workflow, WorkflowRegistry
from engine.runtime.reads import InstancePage, LoadResults, ReadBatcher
from engine.runtime.requests import Router
from engine.snapshots import snapshot_state, usable
from engine.store import EventStore, Record, RecordRow, Snapshot

if TYPE_CHECKING:  # upcasters imports engine.core: no import cycle at run time
    from upcasters import UpcasterRegistry

__all__ = ["InstanceLoader", "SnapshotBody"]

log = logging.getLogger("nonstop.runtime")
_FIRST_PAGE = 256
_encoder = msgspec.msgpack.Encoder()
_stream_of = itemgetter(0)


class SnapshotBody(msgspec.Struct, array_like=True):
    """What a snapshot stores besides its key: state, command ids, pinned flags."""

    state: msgspec.Raw
    commands: dict[str, int]
    flags: dict[str, Any] = {}
    cancelled: bool = False


class InstanceLoader:
    """Loads, caches and snapshots instances.

    Args:
        store: The event store.
        registry: The workflow versions instances are pinned to.
        codec: Decodes stored events.
        upcasters: Event and snapshot-state upcasters.
        router: Loads versions deployed elsewhere on demand (optional).
        cache_size: Instances kept folded in memory.
    """

    def __init__(
        self,
        store: EventStore,
        registry: WorkflowRegistry,
        codec: EventCodec,
        upcasters: UpcasterRegistry,
        *,
        router: Router | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self.store = store
        self.registry = registry
        self.codec = codec
        self.upcasters = upcasters
        self.router = router
        self.cache_size = cache_size
        self.replay = Replay(codec, registry.get)
        self.cache: OrderedDict[str, Instance] = OrderedDict()
        self.background: set[asyncio.Task[None]] = set()
        """Snapshot writes in flight."""
        self.batcher = ReadBatcher(self._load_batch)
        """Groups the cold loads of concurrent tasks into batched reads."""

    # ------------------------------------------------------------- the cache

    def cached(self, instance_id: str) -> Instance | None:
        """The cached instance, if any (it may lag the store)."""
        return self.cache.get(instance_id)

    def forget(self, instance_id: str) -> None:
        """Drop an instance from the cache (after a conflict)."""
        self.cache.pop(instance_id, None)

    def remember(self, instance_id: str, inst: Instance) -> None:
        """Cache ``inst``; snapshot it in the background when it crossed a mark."""
        cache = self.cache
        old = cache.get(instance_id)
        cache[instance_id] = inst
        cache.move_to_end(instance_id)
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
        every = inst.workflow.snapshot_every
        before = old.position if old is not None else 0
        if every and inst.position // every > before // every:
            job = asyncio.to_thread(self.snapshot, instance_id, inst)
            task = asyncio.create_task(job)
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def close(self) -> None:
        """Wait for the batched read in flight and the background snapshot writes."""
        await self.batcher.close()
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)

    # --------------------------------------------------------------- loading

    async def load(self, instance_id: str) -> Instance:
        """Load an instance from the store and cache it.

        Concurrent loads are grouped into one batched read (:class:`ReadBatcher`).

        Raises:
            UnknownInstance: no such instance.
            CorruptStream: a gap or a missing start.
        """
        try:
            inst = await self.batcher.load(instance_id)
        except UnknownWorkflow:
            if self.router is None:
                raise
            # Pinned to a version deployed elsewhere: load it, then try again.
            await asyncio.to_thread(self.router.refresh)
            inst = await asyncio.to_thread(self.load_sync, instance_id)
        self.remember(instance_id, inst)
        return inst

    async def current(self, instance_id: str) -> Instance:
        """The instance caught up with the store (cached, or loaded)."""
        inst = self.cache.get(instance_id)
        if inst is None:
            return await self.load(instance_id)
        inst = await asyncio.to_thread(self.catch_up, instance_id, inst)
        self.remember(instance_id, inst)
        return inst

    def load_sync(self, instance_id: str) -> Instance:
        """Fold an instance from the store (blocking; not cached)."""
        # One round trip for a short stream: its head page has Started and the rest.
        head = self.store.read_stream(instance_id, limit=_FIRST_PAGE)
        return self._load_from(instance_id, head, complete=len(head) < _FIRST_PAGE)

    def load_many_sync(self, instance_ids: Sequence[str]) -> dict[str, Instance]:
        """Load many instances from a few queries; ids with no events are left out."""
        # A batch allocates a few objects per row and frees them together; with
        # the collector running it re-scans the young ones many times over (a
        # third of the CPU time of a batch), so it is paused for the batch.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            out: dict[str, Instance] = {}
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

    def load_many_results(self, instance_ids: Sequence[str]) -> LoadResults:
        """Like :meth:`load_many_sync`, with each unreadable id's error as its value.

        It reads the head of each stream (its first 256 events) in one query
        per 1,000 streams and reads on, one stream at a time, only the streams
        longer than that (from their snapshot when they have one), so a long
        stream is never read whole here. Ids with no events are left out; an
        instance that cannot be folded (see :data:`~engine.core.replay.UNREADABLE`,
        or a version not registered here) maps to its error instead of failing
        the others.
        """
        was_enabled = gc.isenabled()
        gc.disable()  # see load_many_sync
        try:
            out: LoadResults = {}
            load = self._load_stream
            longer: list[str] = []
            for rows in self.store.iter_streams(instance_ids, upto=_FIRST_PAGE):
                for iid, records in groupby(rows, _stream_of):
                    try:
                        out[iid] = inst = load(iid, records)
                    except (*UNREADABLE, UnknownWorkflow) as exc:
                        out[iid] = exc
                        continue
                    if inst.position >= _FIRST_PAGE:  # the head may not be all
                        longer.append(iid)
        finally:
            if was_enabled:
                gc.enable()
        for iid in longer:
            head = out[iid]
            assert isinstance(head, Instance)
            try:
                out[iid] = self.catch_up(iid, head)
            except (*UNREADABLE, UnknownWorkflow) as exc:
                out[iid] = exc
        return out

    def _load_batch(self, instance_ids: Sequence[str]) -> LoadResults:
        """What the batcher reads: a lone id in pages, several in one query.

        A lone cold load takes the paged path (:meth:`load_sync`); several
        are read with one batched query of their heads
        (:meth:`load_many_results`).
        """
        if len(instance_ids) != 1:
            return self.load_many_results(instance_ids)
        (iid,) = instance_ids
        try:
            return {iid: self.load_sync(iid)}
        except UnknownInstance:
            return {}
        except (*UNREADABLE, UnknownWorkflow) as exc:
            return {iid: exc}

    def catch_up(self, instance_id: str, inst: Instance) -> Instance:
        """``inst`` with the events appended after its position (blocking)."""
        records = self.store.iter_stream(instance_id, after=inst.position)
        return self.replay.fold(instance_id, inst, records)

    def _load_from(
        self, instance_id: str, head: list[Record], *, complete: bool
    ) -> Instance:
        """Fold a stream whose first records are ``head`` (all of it if complete)."""
        if not head:
            raise UnknownInstance(instance_id)
        inst = self._load_stream(instance_id, iter(head))
        if complete:
            return inst
        return self.catch_up(instance_id, inst)

    def _load_stream(self, instance_id: str, records: Iterator[RecordRow]) -> Instance:
        """Fold the records of a stream from its first one (which must be there)."""
        started, command_id = self.replay.started(instance_id, next(records))
        wf = self.registry.get(started.workflow, started.version)
        inst = self._from_snapshot(instance_id, wf) if wf.snapshot_every else None
        if inst is None:
            inst = self.replay.begin(started, command_id)
        else:  # skip the events the snapshot includes
            inst.key = started.routing_key
            done = inst.position
            records = dropwhile(lambda r: r[1] <= done, records)
        return self.replay.fold(instance_id, inst, records)

    # ------------------------------------------------------------- snapshots

    def _from_snapshot(self, instance_id: str, wf: Workflow[Any]) -> Instance | None:
        snap = self.store.load_snapshot(instance_id)
        if snap is None or not usable(wf, snap.key, self.upcasters):
            return None
        try:
            body = msgspec.msgpack.decode(snap.data, type=SnapshotBody)
            state = snapshot_state(wf, snap.key, body.state, self.upcasters)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("ignoring unreadable snapshot of %s", instance_id)
            return None
        except Exception:  # a state upcaster is user code; events still hold it all
            log.exception("state upcaster failed on the snapshot of %s", instance_id)
            return None
        flags = dict(body.flags) if body.flags else None
        return Instance(
            wf,
            state,
            snap.position,
            dict(body.commands),
            flags=flags,
            cancelled=body.cancelled,
        )

    def snapshot(
        self, instance_id: str, inst: Instance, *, replace: bool = False
    ) -> None:
        """Save a snapshot of ``inst`` (blocking); a failure is only logged."""
        body = SnapshotBody(
            msgspec.Raw(_encoder.encode(inst.state)),
            inst.commands,
            inst.flags or {},
            inst.cancelled,
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

    # --------------------------------------------------------------- reading

    def history_sync(self, instance_id: str) -> list[RecordedEvent]:
        """Every event of an instance, decoded, the stream checked (blocking).

        Raises:
            UnknownInstance: no such instance.
            CorruptStream: a gap or a missing start.
        """
        out: list[RecordedEvent] = []
        for rec in checked(instance_id, self.store.iter_stream(instance_id)):
            out.extend(
                self.codec.decode(
                    instance_id, rec.position, rec.global_position, rec.type, rec.data
                )
            )
        if not out:
            raise UnknownInstance(instance_id)
        return out

    def instances_page_sync(
        self,
        workflow: str | None,
        version: int | None,
        status: ListingStatus | None,
        *,
        after: int = 0,
        limit: int = 50,
    ) -> InstancePage:
        """One page of instances in start order, filtered (blocking).

        It reads the starts after global position ``after`` in chunks of
        ``limit`` and folds each chunk's instances with one batched read. The
        store has no index on the event type, so a page costs the rows between
        ``after`` and its last start (about ``limit`` times the mean stream
        length when no filter drops instances), never the whole log; a filter
        that matches few instances reads further. The cursor is the global
        position of the last start read.

        An instance whose stored events cannot be replayed (a gap, an event
        that does not decode, one written by newer code) is listed with status
        ``unreadable`` and the error; the listing goes on with the others.
        """
        out: list[InstanceInfo] = []
        while True:
            starts = self.store.read_all(after=after, limit=limit, types=[STARTED])
            found = self.load_many_results([r.stream_id for r in starts])
            for rec in starts:
                iid = rec.stream_id
                got = found.get(iid)
                if isinstance(got, Instance):
                    info = got.info(iid)
                elif isinstance(got, UnknownWorkflow):
                    raise got
                else:
                    self.cache.pop(iid, None)
                    info = self._unreadable(rec, got or UnknownInstance(iid))
                after = rec.global_position
                if (
                    (workflow is None or info.workflow == workflow)
                    and (version is None or info.version == version)
                    and (status is None or info.status == status)
                ):
                    out.append(info)
                    if len(out) == limit:
                        return InstancePage(out, after)
            if len(starts) < limit:
                return InstancePage(out, None)

    def iter_instances_sync(
        self,
        workflow: str | None,
        version: int | None,
        status: ListingStatus | None,
        *,
        page: int = 500,
    ) -> Iterator[list[InstanceInfo]]:
        """Every matching instance in start order, a page at a time (blocking)."""
        after: int | None = 0
        while after is not None:
            got = self.instances_page_sync(
                workflow, version, status, after=after, limit=page
            )
            if got.instances:
                yield got.instances
            after = got.cursor

    def _unreadable(self, start: Record, exc: NonstopError) -> InstanceInfo:
        """The listing entry of an instance its error keeps from being folded."""
        name, version = "", 0
        try:  # the start may still name the workflow when a later event is bad
            started, _ = self.replay.started(start.stream_id, start)
            name, version = started.workflow, started.version
        except NonstopError:
            pass
        return unreadable_info(start.stream_id, name, version, exc)
