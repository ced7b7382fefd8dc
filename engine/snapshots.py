"""Snapshot keys, snapshot state evolution, and the background migration.

A snapshot's key is ``name@version#fingerprint#state_schema`` (see
:attr:`Workflow.state_key`). When the engine loads an instance it uses the
newest snapshot if the key is the current one; if the snapshot was saved at an
older state schema of the same workflow version and state upcasters cover the
way up, the saved state is upcast; otherwise the snapshot is ignored and the
state rebuilt from events (which always hold everything).

:func:`migrate_snapshots` re-snapshots instances whose snapshot is not current,
in batches, in the global order of their start events. After each batch it
records how far it got as a tracking position in the store, so a migration
that stops (a crash, Ctrl-C) resumes where it was. It takes no instance locks
(a snapshot of positions 1..N stays true whatever is appended after N) and
keeps out of the engine's cache, so traffic is never blocked; ``rate`` bounds
the instances per second.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from engine.core.errors import ConcurrencyConflict, NonstopError, SnapshotMigrationError
from engine.core.workflow import Workflow, WorkflowRegistry, parse_ref
from engine.store import Tracking

if TYPE_CHECKING:  # upcasters imports engine.core.errors: no import cycle at run time
    from engine.store import EventStore
    from upcasters.chain import UpcasterRegistry

__all__ = [
    "MigrationProgress",
    "SnapshotHost",
    "classify",
    "migrate_snapshots",
    "migration_name",
    "parse_key",
    "snapshot_state",
    "state_schemas",
    "usable",
]


class SnapshotHost(Protocol):
    """What :func:`migrate_snapshots` needs of an engine (``Engine`` is one)."""

    @property
    def store(self) -> EventStore:
        """The event store."""

    @property
    def registry(self) -> WorkflowRegistry:
        """The workflow versions."""

    @property
    def upcasters(self) -> UpcasterRegistry:
        """The snapshot-state upcasters."""

    async def write_snapshot(
        self, instance_id: str, *, after: int = 0, replace: bool = False
    ) -> int | None:
        """Save a snapshot of an instance now."""


log = logging.getLogger("nonstop.snapshots")
Verdict = Literal["current", "upcast", "stale"]
_STARTED = "nonstop.Started"


def parse_key(key: str) -> tuple[str, str, int]:
    """Split a snapshot key into ``(name@version, fingerprint, state schema)``.

    Keys written before state schemas existed (``name@version#fingerprint``)
    read as state schema 1.
    """
    ref, _, rest = key.partition("#")
    digest, _, schema = rest.partition("#")
    return ref, digest, int(schema) if schema.isdigit() else 1


def state_schemas(registry: WorkflowRegistry) -> dict[str, int]:
    """``name@version`` -> ``state_schema`` for every registered version."""
    out: dict[str, int] = {}
    for ref in registry.refs():
        name, version = parse_ref(ref)
        out[ref] = registry.get(name, version).state_schema
    return out


def classify(wf: Workflow[Any], key: str, upcasters: UpcasterRegistry) -> Verdict:
    """Whether a snapshot with ``key`` is current for ``wf``, upcast, or stale."""
    if key == wf.state_key:
        return "current"
    ref, digest, schema = parse_key(key)
    if ref != wf.ref:
        return "stale"
    head = wf.state_schema
    if schema == head:
        # An old-format key of the same shape is current; another shape at the
        # same schema (changed without a bump) cannot be trusted.
        return "current" if digest == parse_key(wf.state_key)[1] else "stale"
    if schema < head and upcasters.can_upcast_state(ref, schema, head):
        return "upcast"
    return "stale"


def usable(wf: Workflow[Any], key: str, upcasters: UpcasterRegistry) -> bool:
    """True when a snapshot with ``key`` can give ``wf``'s state."""
    return classify(wf, key, upcasters) != "stale"


def snapshot_state(
    wf: Workflow[Any], key: str, data: bytes, upcasters: UpcasterRegistry
) -> Any:
    """The state saved in a snapshot (msgpack ``data``), at ``wf``'s state schema.

    Call it for a :func:`usable` key only.

    Raises:
        msgspec.DecodeError: the bytes do not fit the state type.
        msgspec.ValidationError: an upcast state does not fit the state type.
        UpcastChainError: a state upcaster returned something other than a dict;
            any error a state upcaster raises is passed on.
    """
    if classify(wf, key, upcasters) == "current":
        return msgspec.msgpack.decode(data, type=wf.state_type)
    _, _, schema = parse_key(key)
    plain = msgspec.msgpack.decode(data)
    upcast = upcasters.upcast_state(wf.ref, schema, plain, wf.state_schema)
    return msgspec.convert(upcast, wf.state_type)


def migration_name(registry: WorkflowRegistry) -> str:
    """The tracking name of a migration to the current state schemas.

    It changes whenever a state key of a snapshotting version changes, so a new
    release's migration starts from the beginning, and a stopped one resumes.
    """
    keys = []
    for ref in registry.refs():
        name, version = parse_ref(ref)
        wf = registry.get(name, version)
        if wf.snapshot_every:
            keys.append(wf.state_key)
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    return f"nonstop.snapshots.migrate.{digest}"


@dataclass(frozen=True, slots=True)
class MigrationProgress:
    """Where a snapshot migration stands (after a batch, and at the end)."""

    scanned: int = 0
    """Instances looked at by this run."""
    written: int = 0
    """New snapshots written at the current state schema."""
    current: int = 0
    """Instances whose snapshot was already current."""
    skipped: int = 0
    """Instances of versions that take no snapshots, or without a snapshot yet."""
    failed: int = 0
    """Instances that could not be loaded (logged; left as they were)."""
    position: int = 0
    """Global position of the last start event processed (the tracking position)."""
    end: int = 0
    """The store's last global position when the run began."""
    resumed_from: int = 0
    """Tracking position this run started after (0: from the beginning)."""
    done: bool = False
    """True once every instance has been looked at."""

    @property
    def fraction(self) -> float:
        """Share of the global order covered, 0..1."""
        if self.done or self.end <= self.resumed_from:
            return 1.0
        span = self.end - self.resumed_from
        return min(1.0, (self.position - self.resumed_from) / span)


async def migrate_snapshots(
    engine: SnapshotHost,
    *,
    batch: int = 100,
    rate: float | None = None,
    on_progress: Callable[[MigrationProgress], None] | None = None,
    name: str | None = None,
) -> MigrationProgress:
    """Re-snapshot every instance whose snapshot is not current, in batches.

    Args:
        engine: The engine (store, workflows and upcasters) to migrate for.
        batch: Instances per batch; the tracking position is saved after each.
        rate: Most instances per second (``None``: as fast as the store goes).
        on_progress: Called after each batch with the totals so far.
        name: Tracking name (default :func:`migration_name` of the registry).

    Raises:
        SnapshotMigrationError: ``batch`` < 1 or ``rate`` <= 0, or another
            migration of the same name is ahead of this one.
        StoreUnavailable: the store went away (run again to resume).
    """
    if batch < 1:
        raise SnapshotMigrationError(f"batch={batch} must be >= 1")
    if rate is not None and rate <= 0:
        raise SnapshotMigrationError(
            f"rate={rate} must be > 0 instances per second (omit it for no limit)"
        )
    store = engine.store
    track = name if name is not None else migration_name(engine.registry)
    after = await asyncio.to_thread(store.tracking_position, track) or 0
    end = await asyncio.to_thread(store.last_global_position)
    progress = MigrationProgress(position=after, end=end, resumed_from=after)
    began = time.monotonic()
    while True:
        starts = await asyncio.to_thread(
            store.read_all, after=progress.position, limit=batch, types=[_STARTED]
        )
        if not starts:
            break
        for rec in starts:
            progress = _count(progress, await _one(engine, rec.stream_id))
        last = starts[-1].global_position
        try:
            await asyncio.to_thread(store.append, [], tracking=Tracking(track, last))
        except ConcurrencyConflict:
            raise SnapshotMigrationError(
                f"another migration ({track}) got past global position {last} "
                "first; run one migration at a time"
            ) from None
        progress = replace(progress, position=last)
        if on_progress is not None:
            on_progress(progress)
        if len(starts) < batch:
            break
        if rate is not None:
            ahead = progress.scanned / rate - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)  # throttle, not synchronisation
    progress = replace(progress, done=True)
    if on_progress is not None:
        on_progress(progress)
    return progress


_Outcome = Literal["written", "current", "skipped", "failed"]


async def _one(engine: SnapshotHost, instance_id: str) -> _Outcome:
    def check() -> _Outcome | None:
        snap = engine.store.load_snapshot(instance_id)
        if snap is None:
            return "skipped"
        ref, _, _ = parse_key(snap.key)
        name, version = parse_ref(ref)
        wf = engine.registry.get(name, version)
        if not wf.snapshot_every:
            return "skipped"
        if classify(wf, snap.key, engine.upcasters) == "current":
            return "current"
        return None

    try:
        verdict = await asyncio.to_thread(check)
        if verdict is not None:
            return verdict
        # Replace: an instance with no event since its old snapshot gets the new
        # one at the same position.
        written = await engine.write_snapshot(instance_id, replace=True)
    except NonstopError as exc:
        log.warning("cannot migrate the snapshot of %s: %s", instance_id, exc)
        return "failed"
    return "skipped" if written is None else "written"


def _count(p: MigrationProgress, outcome: _Outcome) -> MigrationProgress:
    return replace(
        p,
        scanned=p.scanned + 1,
        written=p.written + (outcome == "written"),
        current=p.current + (outcome == "current"),
        skipped=p.skipped + (outcome == "skipped"),
        failed=p.failed + (outcome == "failed"),
    )
