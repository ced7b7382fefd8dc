"""``nonstop verify``: replay stored instances under candidate code, compare digests.

The instances of ``workflow@version`` are found by one scan of the global
order for ``nonstop.Started`` and ``nonstop.Migrated`` events (those pinned to
or migrated to the version); their streams are then read in batches of whole
streams (:meth:`EventStore.iter_streams`), never the whole log at once, and
each is checked with :func:`engine.core.verify.check_stream` under a registry
where the candidate takes the place of ``workflow@version``. With ``jobs`` > 1
the batches are shared among worker processes (forked: they inherit the
loaded code) that each open the store again from its URL.

A mapper is checked the same way (:func:`verify_migration`): recorded
``nonstop.Migrated`` events are mapped again and compared with their digest,
and running instances of the source version are mapped as a dry run.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, Literal

import msgspec

from engine.core.codec import EventCodec
from engine.core.digest import state_digest
from engine.core.errors import NonstopError, VerifyError
from engine.core.replay import MIGRATED, STARTED, Instance, RecordRow, Replay
from engine.core.verify import Divergence, check_stream, recorded_digest
from engine.core.workflow import Workflow, WorkflowRegistry
from engine.store import EventStore, open_store

__all__ = [
    "Selection",
    "VerifyReport",
    "describe",
    "parse_selection",
    "select_instances",
    "verify_migration",
    "verify_version",
    "with_candidate",
]

Selection = Literal["running", "all"] | int
"""``running``, ``all``, or a sample of that many instances."""
_TASK = 1_000
"""Streams per batch (one query on PostgreSQL)."""


@dataclass
class VerifyReport:
    """What a verification found."""

    ref: str
    """``workflow@version`` verified (``A->B`` for a mapper)."""
    instances: int = 0
    """Instances checked."""
    events: int = 0
    """Stored events replayed."""
    digests: int = 0
    """Recorded digests that matched."""
    undigested: int = 0
    """Instances with no digest at all (written before digests existed)."""
    divergences: list[Divergence] = field(default_factory=list)
    """The first divergence of each divergent instance."""
    seconds: float = 0.0
    """Wall time."""

    @property
    def ok(self) -> bool:
        """True when no instance diverged."""
        return not self.divergences

    def add(self, other: VerifyReport) -> None:
        """Add the counts and divergences of a part of the run."""
        self.instances += other.instances
        self.events += other.events
        self.digests += other.digests
        self.undigested += other.undigested
        self.divergences.extend(other.divergences)


def parse_selection(text: str) -> Selection:
    """``running``, ``all`` or a positive sample size.

    Raises:
        VerifyError: anything else.
    """
    if text in ("running", "all"):
        return text  # type: ignore[return-value]
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise VerifyError(
        f"--instances {text!r}: expected running, all or a sample size N >= 1"
    )


def with_candidate(
    base: WorkflowRegistry | None, candidate: Workflow[Any]
) -> WorkflowRegistry:
    """A registry like ``base`` where ``candidate`` replaces its ``name@version``."""
    reg = WorkflowRegistry()
    if base is not None:
        for name in base.names():
            for v in base.versions(name):
                if (name, v) != (candidate.name, candidate.version):
                    reg.register(base.get(name, v))
    reg.register(candidate)
    return reg


def select_instances(
    store: EventStore,
    workflow: str,
    version: int,
    *,
    codec: EventCodec | None = None,
    sample: int | None = None,
) -> list[str]:
    """Ids of the instances started on or migrated to ``workflow@version``.

    One scan of the global order for the two system event types, in start
    order; ``sample`` keeps that many, drawn at random with a fixed seed.
    """
    codec = codec or EventCodec()
    found: dict[str, None] = {}
    for row in store.iter_all(types=(STARTED, MIGRATED), page=5_000):
        for e in codec.decode(*row):
            ev = e.event
            if ev.workflow != workflow:
                continue
            at = ev.version if e.type == STARTED else ev.to_version
            if at == version:
                found[e.stream_id] = None
    ids = list(found)
    if sample is not None and sample < len(ids):
        keep = set(random.Random(0).sample(ids, sample))
        ids = [i for i in ids if i in keep]
    return ids


@dataclass
class _Job:
    """What one process needs to check batches of streams."""

    store: EventStore | str
    candidate: Replay
    baseline: Replay | None
    running_only: bool

    def opened(self) -> EventStore:
        if isinstance(self.store, str):
            self.store = open_store(self.store)
        return self.store

    def check(self, ids: Sequence[str]) -> VerifyReport:
        out = VerifyReport("")
        for rows in self.opened().iter_streams(ids):
            for sid, group in groupby(rows, key=itemgetter(0)):
                self._one(out, sid, list(group))
        return out

    def _one(self, out: VerifyReport, sid: str, rows: list[RecordRow]) -> None:
        result = check_stream(self.candidate, sid, rows, baseline=self.baseline)
        out.events += len(rows)
        if isinstance(result, Divergence):
            out.instances += 1
            out.divergences.append(result)
            return
        inst, matched = result
        if self.running_only and inst.status != "running":
            return
        out.instances += 1
        out.digests += matched
        if not matched:
            out.undigested += 1


_WORKER: _Job | None = None
"""The job of a forked worker process (inherited from its parent)."""


def _work(ids: Sequence[str]) -> VerifyReport:
    assert _WORKER is not None
    return _WORKER.check(ids)


def _batches(ids: Sequence[str], size: int = _TASK) -> Iterator[Sequence[str]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def verify_version(
    store: EventStore | str,
    candidate: Workflow[Any],
    registry: WorkflowRegistry | None = None,
    *,
    codec: EventCodec | None = None,
    instances: Selection = "running",
    jobs: int = 1,
    batch: int = _TASK,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Replay the instances of ``candidate``'s version under it; compare digests.

    Args:
        store: The event store or its URL (a URL is needed for ``jobs`` > 1
            with a server or file store: each worker opens its own).
        candidate: The new code of ``workflow@version``.
        registry: The code that wrote the histories (other versions an
            instance migrated through, and the "old" side of each diff).
        codec: Decodes with the candidate's upcasters (default: the default
            event types and the process-wide upcasters).
        instances: ``running`` (a divergent instance is reported whatever its
            status), ``all``, or a sample size.
        jobs: Worker processes (used when there is more than one batch).
        batch: Streams read per query and handed to a worker at a time.
        progress: Called as ``progress(done, total)`` after each batch.

    Raises:
        VerifyError: ``jobs`` < 1.
    """
    if jobs < 1:
        raise VerifyError(f"--jobs {jobs}: expected a number of processes >= 1")
    t0 = time.perf_counter()
    if codec is None:
        from upcasters import default_upcasters

        codec = EventCodec()
        codec.use_upcasters(default_upcasters())
    owned = isinstance(store, str)
    opened = open_store(store) if isinstance(store, str) else store
    try:
        ids = select_instances(
            opened,
            candidate.name,
            candidate.version,
            codec=codec,
            sample=instances if isinstance(instances, int) else None,
        )
        new = Replay(codec, with_candidate(registry, candidate).get)
        old = Replay(codec, registry.get) if registry is not None else None
        report = VerifyReport(candidate.ref)
        job = _Job(opened, new, old, instances == "running")
        total = len(ids)
        if progress is not None:
            progress(0, total)
        done = 0
        if jobs == 1 or total <= batch:
            for part_ids in _batches(ids, batch):
                report.add(job.check(part_ids))
                done += len(part_ids)
                if progress is not None:
                    progress(done, total)
        else:
            if owned:  # no pool threads while forking; workers open their own
                opened.close()
                owned = False
            for part, n in _in_processes(job, store, ids, jobs, batch):
                report.add(part)
                done += n
                if progress is not None:
                    progress(done, total)
    finally:
        if owned:
            opened.close()
    order = {iid: n for n, iid in enumerate(ids)}
    report.divergences.sort(key=lambda d: order.get(d.instance_id, 0))
    report.seconds = time.perf_counter() - t0
    return report


def _in_processes(
    job: _Job, store: EventStore | str, ids: list[str], jobs: int, size: int
) -> Iterator[tuple[VerifyReport, int]]:
    global _WORKER
    from engine.store.memory import MemoryStore

    if not isinstance(store, (str, MemoryStore)):
        raise VerifyError(
            "--jobs > 1 needs the store's URL (each worker process opens its "
            "own connection); pass the URL rather than an open store"
        )
    _WORKER = _Job(store, job.candidate, job.baseline, job.running_only)
    try:
        ctx = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            batches = list(_batches(ids, size))
            futures = {pool.submit(_work, b): len(b) for b in batches}
            for fut in concurrent.futures.as_completed(futures):
                yield fut.result(), futures[fut]
    finally:
        _WORKER = None


def verify_migration(
    store: EventStore | str,
    registry: WorkflowRegistry,
    workflow: str,
    from_version: int,
    to_version: int,
    mapper: Callable[[Any], Any],
    *,
    codec: EventCodec | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check ``mapper`` against the stored instances, as :func:`verify_version`.

    Each recorded ``nonstop.Migrated`` from ``from_version`` to ``to_version``
    is mapped again from the state before it and compared with its digest;
    each instance still running ``from_version`` is mapped as a dry run (the
    mapped state must fit the target's state type and be running there).
    """
    t0 = time.perf_counter()
    codec = codec or EventCodec()
    rule = Replay(codec, registry.get)
    target = registry.get(workflow, to_version)
    registry.get(workflow, from_version)
    report = VerifyReport(f"{workflow}@{from_version}->{to_version}")
    opened = open_store(store) if isinstance(store, str) else store
    try:
        ids = select_instances(opened, workflow, from_version, codec=codec)
        total = len(ids)
        for n, batch in enumerate(_batches(ids)):
            for rows in opened.iter_streams(batch):
                for sid, group in groupby(rows, key=itemgetter(0)):
                    _check_mapper(report, rule, target, mapper, sid, list(group))
            if progress is not None:
                progress(min((n + 1) * _TASK, total), total)
    finally:
        if isinstance(store, str):
            opened.close()
    report.seconds = time.perf_counter() - t0
    return report


def _check_mapper(
    report: VerifyReport,
    rule: Replay,
    target: Workflow[Any],
    mapper: Callable[[Any], Any],
    sid: str,
    rows: list[RecordRow],
) -> None:
    report.instances += 1
    report.events += len(rows)
    try:
        inst = rule.replay(sid, rows[:1])
        for i, row in enumerate(rows[1:], 1):
            if row[3] == MIGRATED and inst.workflow.version != target.version:
                _recorded_migration(report, inst, target, mapper, sid, row)
            inst = rule.fold(sid, inst, rows[i : i + 1])
    except NonstopError as exc:
        report.divergences.append(
            Divergence(sid, int(getattr(exc, "position", 0)), "", None, None, str(exc))
        )
        return
    if inst.workflow.version != target.version and inst.status == "running":
        _, problem = _mapped(target, mapper, inst)
        if problem:
            report.divergences.append(
                Divergence(sid, inst.position, "(dry run)", None, None, problem)
            )


def _recorded_migration(
    report: VerifyReport,
    inst: Instance,
    target: Workflow[Any],
    mapper: Callable[[Any], Any],
    sid: str,
    row: RecordRow,
) -> None:
    digest = recorded_digest(row[4])
    if digest is None:
        return
    state, problem = _mapped(target, mapper, inst)
    got = None if problem else state_digest(state)
    if got == digest:
        report.digests += 1
        return
    report.divergences.append(
        Divergence(sid, row[1], row[3], digest, got, problem or "mapped state differs")
    )


def _mapped(
    target: Workflow[Any], mapper: Callable[[Any], Any], inst: Instance
) -> tuple[Any, str]:
    """The mapped state decoded as the target's type, or the problem."""
    try:
        data = msgspec.msgpack.encode(mapper(inst.state))
        state = msgspec.msgpack.decode(data, type=target.state_type)
    except Exception as exc:  # the mapper is user code
        return None, f"the mapper failed: {exc!r}"
    try:
        status = target.status(state)
    except Exception as exc:  # user code
        return None, f"{target.ref} status() failed on the mapped state: {exc!r}"
    if status != "running":
        return None, f"the mapped state would be {status} under {target.ref}"
    return state, ""


def describe(d: Divergence) -> str:
    """One line: instance, position, event type and the state diff."""
    what = d.diff or (
        f"state digest {d.replayed:016x} != recorded {d.recorded:016x}"
        if d.replayed is not None and d.recorded is not None
        else "state differs"
    )
    return f"{d.instance_id} at position {d.position} ({d.event_type}): {what}"
