"""Scenario "memory": peak RSS of replay, in a fresh interpreter per measurement.

Each measurement runs in a child process (``python -m bench.memory --child
KIND``) so that its peak resident set (``VmHWM`` from ``/proc/self/status``;
``ru_maxrss`` where that is missing, which after a vfork-and-exec would start
from the parent's peak) is its own: the child imports what it needs, notes its
peak RSS (the interpreter plus imports), replays, checks the rebuilt state and
reports both peaks. The data is generated once per run by the server
(``bench.bulk``).

- one instance of many events: nonstop ``Engine.get`` (the stream is read and
  folded in pages, never loaded whole) against ``eventsourcing``'s
  ``Application.repository.get`` of the same counter as an aggregate;
- many instances of 10 events: nonstop loads them 1,000 per call
  (``Engine.get_many``), ``eventsourcing`` one ``repository.get`` each;
  both keep every rebuilt state (a dict of all instances).

In a full run ``eventsourcing`` replays a tenth of the long stream
(``ES_SCALE``): it loads the whole stream at once, which at full size takes
about a gigabyte and a minute and only proves the same point at greater cost.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import BenchContext, Figure, Target, pg_schema, store_url

__all__ = ["DESCRIPTION", "run"]

DESCRIPTION = """\
- **memory** (`python -m bench --only memory`): peak resident memory (RSS, MB)
  of a fresh Python process that replays from PostgreSQL: one instance of
  1,000,000 events (nonstop `Engine.get`, which reads and folds the stream in pages
  of 10,000, against `eventsourcing`'s `Application.repository.get` of the same
  counter as an aggregate), and 100,000 instances of 10 events each, all rebuilt
  states kept (nonstop `Engine.get_many`, 1,000 ids per call; `eventsourcing` calls
  `repository.get` per instance). `eventsourcing` replays a tenth of the long
  stream (100,000 events; it loads a stream whole, so a smaller stream only
  flatters it). Each measurement is its own child process
  (its peak RSS, `VmHWM`), interleaved, 3 repetitions (medians), except
  `eventsourcing`'s rebuild of the 100,000 instances, which takes minutes and is
  measured once; the figures give the whole peak and the peak above the child's
  RSS after its imports, before replaying."""

ROOT = Path(__file__).resolve().parent.parent
LONG_ID = "long-stream"
STREAM_LEN = 10
BATCH = 1_000
NONSTOP_LONG = "nonstop Engine.get, streamed in pages"
NONSTOP_MANY = f"nonstop Engine.get_many, {BATCH:,} ids a call"
ES = "eventsourcing Application.repository.get"
ES_SCALE = 10
"""eventsourcing replays 1/ES_SCALE of the long stream in a full run."""


@dataclass(frozen=True)
class Peak:
    """What one child measured."""

    before_mb: float
    """Peak RSS after the imports, before replaying."""
    peak_mb: float
    """Peak RSS at the end."""
    events: int
    """Events replayed."""
    seconds: float
    """Time the replay took."""

    @property
    def above_mb(self) -> float:
        """What replaying added to the peak."""
        return self.peak_mb - self.before_mb


def _rss_mb() -> float:
    """This process's peak RSS so far, in MiB."""
    # ru_maxrss survives exec: a child spawned with vfork (as subprocess does)
    # starts with its parent's peak. VmHWM is the peak of this process's own
    # address space, so it is used where the kernel reports it.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------ child


def _nonstop_long(schema: str, length: int) -> int:
    from bench.counter import registry
    from engine import Engine

    async def go() -> int:
        async with Engine(store_url(schema), registry()) as engine:
            info = await engine.get(LONG_ID)
        if info.position != length or info.state.value != length - 1:
            raise AssertionError(f"replayed {info.position} events: {info.state}")
        return info.position

    return asyncio.run(go())


def _nonstop_many(schema: str, count: int) -> int:
    from bench.counter import registry
    from engine import Engine

    ids = [f"i{n:07d}" for n in range(count)]
    states: dict[str, Any] = {}

    async def go() -> int:
        events = 0
        async with Engine(store_url(schema), registry()) as engine:
            for i in range(0, count, BATCH):
                for iid, info in (await engine.get_many(ids[i : i + BATCH])).items():
                    states[iid] = info.state
                    events += info.position
        return events

    events = asyncio.run(go())
    if len(states) != count or states[ids[-1]].value != STREAM_LEN - 1:
        raise AssertionError(f"rebuilt {len(states)} of {count} instances")
    return events


def _es_long(schema: str, length: int) -> int:
    from bench.bulk import es_application, es_ids

    app = es_application(schema=schema)
    try:
        counter = app.repository.get(es_ids(1, seed=1)[0])
    finally:
        app.close()
    if counter.version != length or counter.value != length - 1:
        raise AssertionError(f"replayed {counter.version} events: {counter.value}")
    return int(counter.version)


def _es_many(schema: str, count: int) -> int:
    from bench.bulk import es_application, es_ids

    app = es_application(schema=schema)
    ids = es_ids(count)
    states: dict[Any, Any] = {}
    events = 0
    try:
        for oid in ids:
            counter = app.repository.get(oid)
            states[oid] = counter
            events += counter.version
    finally:
        app.close()
    if len(states) != count or states[ids[-1]].value != STREAM_LEN - 1:
        raise AssertionError(f"rebuilt {len(states)} of {count} instances")
    return events


_KINDS = {
    "nonstop-long": _nonstop_long,
    "nonstop-many": _nonstop_many,
    "es-long": _es_long,
    "es-many": _es_many,
}


def _child(kind: str, schema: str, size: int) -> None:
    # Import everything the replay needs before noting the baseline.
    needs = (
        ("bench.counter", "engine") if kind.startswith("nonstop") else ("bench.bulk",)
    )
    for module in needs:
        importlib.import_module(module)
    before = _rss_mb()
    t0 = time.perf_counter()
    events = _KINDS[kind](schema, size)
    seconds = time.perf_counter() - t0
    peak = _rss_mb()
    print(json.dumps({"before": before, "peak": peak, "events": events, "s": seconds}))


def _measure(kind: str, schema: str, size: int) -> Peak:
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", kind, schema, str(size)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child {kind} failed:\n{done.stderr[-3000:]}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return Peak(got["before"], got["peak"], got["events"], got["s"])


# --------------------------------------------------------------- scenario


def _populate(schema: str, long_len: int, many: int, es_scale: int = 1) -> None:
    from bench.bulk import es_application, es_ids, fill_es, fill_nonstop
    from engine import open_store

    open_store(store_url(schema)).close()  # creates the tables
    fill_nonstop(schema, [LONG_ID], long_len)
    fill_nonstop(schema, [f"i{n:07d}" for n in range(many)], STREAM_LEN)
    app = es_application(schema=schema)
    try:
        fill_es(app, schema, es_ids(1, seed=1), long_len // es_scale)
        fill_es(app, schema, es_ids(many), STREAM_LEN)
    finally:
        app.close()


def run(ctx: BenchContext) -> list[Figure]:
    """Populate once, then measure children interleaved, ``ctx.reps`` times.

    The ``eventsourcing`` rebuild of the many small instances takes minutes (one
    ``repository.get`` per instance), so that one child runs once per run.
    """
    long_len, many = (5_000, 500) if ctx.quick else (1_000_000, 100_000)
    es_scale = 1 if ctx.quick else ES_SCALE
    with pg_schema(prefix=ctx.schema) as schema:  # its own ids, its own tables
        t0 = time.perf_counter()
        _populate(schema, long_len, many, es_scale)
        print(f"  populated in {time.perf_counter() - t0:.1f} s")
        peaks = _measure_all(schema, long_len, many, es_scale, ctx.reps)
    return _figures(peaks, long_len, many, es_scale)


def _measure_all(
    schema: str, long_len: int, many: int, es_scale: int, reps: int = 1
) -> dict[str, list[Peak]]:
    plan = [
        ("nonstop-long", long_len),
        ("es-long", long_len // es_scale),
        ("nonstop-many", many),
        ("es-many", many),
    ]
    peaks: dict[str, list[Peak]] = {kind: [] for kind, _ in plan}
    for rep in range(reps):
        for kind, size in plan:
            if kind == "es-many" and rep:
                continue  # minutes per run: once (see run)
            p = _measure(kind, schema, size)
            peaks[kind].append(p)
            print(
                f"  [{rep + 1}/{reps}] {kind:<13} peak {p.peak_mb:7.1f} MB "
                f"(imports {p.before_mb:5.1f} MB), {p.events:,} events in "
                f"{p.seconds:.1f} s"
            )
    return peaks


def _figures(
    peaks: dict[str, list[Peak]], long_len: int, many: int, es_scale: int = 1
) -> list[Figure]:
    figs: list[Figure] = []
    scaled = ES if es_scale == 1 else f"{ES}, {long_len // es_scale:,} events"
    cases = (
        ("long", f"one instance of {long_len:,} events", NONSTOP_LONG),
        ("many", f"{many:,} instances x {STREAM_LEN} events", NONSTOP_MANY),
    )
    for case, what, subject in cases:
        ours, theirs = peaks[f"nonstop-{case}"], peaks[f"es-{case}"]
        es = scaled if case == "long" else ES
        figs.append(
            Figure(
                f"memory-{case}",
                f"PostgreSQL: peak RSS replaying {what}",
                "MB",
                f"peak resident memory of a fresh process that replays {what} "
                "(interpreter and imports included); lower is better",
                subject,
                [p.peak_mb for p in ours],
                {
                    es: [p.peak_mb for p in theirs],
                    "the same nonstop process before replaying": [
                        p.before_mb for p in ours
                    ],
                },
                target=Target(150, "<=") if case == "long" else None,
            )
        )
        figs.append(
            Figure(
                f"memory-{case}-above-imports",
                f"PostgreSQL: RSS added by replaying {what}",
                "MB",
                "peak RSS minus the same process's peak after its imports, before "
                "replaying; lower is better",
                subject,
                [p.above_mb for p in ours],
                {es: [p.above_mb for p in theirs]},
            )
        )
    return figs


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.memory")
    ap.add_argument("--child", nargs=3, metavar=("KIND", "SCHEMA", "SIZE"))
    args = ap.parse_args(argv)
    if args.child is None:
        ap.error("run it through python -m bench --only memory")
    kind, schema, size = args.child
    if kind not in _KINDS:
        ap.error(f"KIND must be one of {', '.join(_KINDS)}, got {kind!r}")
    _child(kind, schema, int(size))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
