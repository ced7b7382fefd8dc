"""State digests on the commit path, and ``nonstop verify`` over a large store.

1. Digest cost: 64 asyncio tasks on one ``Engine`` (SQLite file, then in memory),
   ``Increment`` commands to its own counter, for a fixed time; the subject
   stores a state digest with every decision, the baseline the same load with
   ``Decider.digests = False``. Interleaved, fresh store each run.
2. Verify: 20,000 counter instances x 10 events on PostgreSQL (written through
   the decider, so every decision carries its digest), verified with
   ``verify_version(..., jobs=2)``; the baseline reads the same rows with the
   same batched queries (``iter_streams``, 1,000 streams per query) and
   replays nothing.
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

from bench.commit import drive_counters
from bench.counter import Begin, Increment, registry, workflow
from bench.harness import BenchContext, Contender, Figure, Target, measure, store_url
from engine import Engine, open_store
from engine.core.codec import EventCodec
from engine.core.events import Metadata
from engine.deploy.verify import select_instances, verify_version
from engine.runtime.decider import Decider
from engine.runtime.requests import Start
from engine.store import EventStore, NewRecord

__all__ = ["DESCRIPTION", "run"]

DESCRIPTION = """\
- **verify** (`python -m bench --only verify`): (1) committed transitions/s of 64
  tasks sending commands to their own counters on a SQLite file and in memory
  (where the digest's CPU cost weighs most), with a state digest stored on each
  decision against the same load with digests off (`Decider.digests = False`),
  six 2 s runs each in A B B A order; (2) `nonstop verify` (`jobs=2`) over
  20,000 counter instances x 10 events on PostgreSQL, events/s, against reading
  the same rows with the same batched queries without replaying them."""

CALLERS = 64


def _commit_contender(work: Path | None, seconds: float, *, digests: bool) -> Contender:
    """64 tasks sending to their own counters on a SQLite file (memory: None)."""
    runs = [0]

    async def go() -> tuple[int, float]:
        runs[0] += 1
        name = f"digest-{digests}-{runs[0]}.db"
        url = "memory://" if work is None else f"sqlite:///{work / name}"
        engine = Engine(open_store(url), registry(), deployments=False)
        engine.decider.digests = digests
        return await drive_counters(engine, [f"c{i}" for i in range(CALLERS)], seconds)

    name = "with state digests" if digests else "no digests"
    return Contender(name, lambda: asyncio.run(go()))


def _fill(store: EventStore, instances: int, events: int) -> None:
    """``instances`` counters of ``events`` events each (start + increments)."""
    decider = Decider(registry(), EventCodec(), None)
    batch: list[NewRecord] = []
    for n in range(instances):
        iid = f"v{n}"
        inst, records = decider.start(Start(workflow.name, Begin(), iid))
        batch += records
        for _ in range(events - len(records)):
            inst, records = decider.decide(
                iid, inst, Increment(1), Metadata(workflow.ref), owned=True
            )
            batch += records
        if len(batch) >= 20_000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)


def _verify_contenders(url: str, jobs: int) -> tuple[Contender, Contender]:
    def subject() -> tuple[int, float]:
        report = verify_version(url, workflow, registry(), jobs=jobs, instances="all")
        assert report.ok, report.divergences[:1]
        return report.events, report.seconds

    def baseline() -> tuple[int, float]:
        t0 = time.perf_counter()
        store = open_store(url)
        try:
            ids = select_instances(store, workflow.name, workflow.version)
            n = sum(len(rows) for rows in store.iter_streams(ids))
        finally:
            store.close()
        return n, time.perf_counter() - t0

    return (
        Contender(f"nonstop verify --jobs {jobs}", subject),
        Contender("the same SELECTs, no replay (1 process)", baseline),
    )


def _abba(
    name: str, what: str, subject: Contender, baseline: Contender, reps: int
) -> Figure:
    """``measure`` with the order of the pair swapped every other repetition."""
    rates: dict[str, list[float]] = {subject.name: [], baseline.name: []}
    for rep in range(reps):
        pair = (subject, baseline) if rep % 2 == 0 else (baseline, subject)
        for c in pair:
            gc.collect()
            n, secs = c.run()
            rates[c.name].append(n / secs if secs > 0 else 0.0)
            print(
                f"  [{rep + 1}/{reps}] {name}: {c.name:<24} "
                f"{rates[c.name][-1]:>12,.0f} transitions/s"
            )
    return Figure(
        "verify",
        name,
        "transitions/s",
        what,
        subject.name,
        rates[subject.name],
        {baseline.name: rates[baseline.name]},
        Target(0.95, ">=", against=baseline.name),
    )


def run(ctx: BenchContext) -> list[Figure]:
    """Measure digest cost (SQLite) and verify throughput (PostgreSQL)."""
    seconds = 0.3 if ctx.quick else 2.0
    # Short runs, more of them, in A B B A order: the commit path is the
    # noisiest figure here, and whichever run goes first in a pair is favoured.
    reps = ctx.reps if ctx.quick else max(ctx.reps, 6)
    figures = [
        _abba(
            f"commit throughput with state digests ({where})",
            f"{CALLERS} tasks, one Engine.send per transition ({where})",
            _commit_contender(work, seconds, digests=True),
            _commit_contender(work, seconds, digests=False),
            reps,
        )
        for where, work in (("SQLite file", ctx.work), ("in memory", None))
    ]
    instances = 500 if ctx.quick else 20_000
    url = store_url(ctx.schema)
    store = open_store(url)
    t0 = time.perf_counter()
    _fill(store, instances, 10)
    print(
        f"  verify: wrote {instances:,} x 10 events in {time.perf_counter() - t0:.1f} s"
    )
    store.close()
    subject, baseline = _verify_contenders(url, 2)
    figures.append(
        measure(
            "verify",
            "verify throughput",
            unit="events/s",
            what=f"{instances:,} instances x 10 events on PostgreSQL, jobs=2",
            subject=subject,
            baselines=[baseline],
            reps=ctx.reps,
            target=Target(100_000, ">="),
        )
    )
    return figures
