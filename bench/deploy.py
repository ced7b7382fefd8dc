"""Throughput and latency while deploying, promoting and rolling back.

32 asyncio tasks on one routed engine (PostgreSQL) start counter instances and
send each three commands, for a fixed time. In the subject run an operator
thread changes the routing every second (canary, promote, promote to 100 %,
rollback, in a cycle); the baseline is the same load with no changes. The two
run interleaved, each in a fresh schema.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import threading
import time
from collections.abc import Callable

from bench.counter import Begin, Counter, Increment, registry, workflow
from bench.harness import BenchContext, Figure, Target, pg_schema, store_url
from engine import EventStore, Workflow, open_store
from engine.deploy import Deployments, open_engine

__all__ = ["DESCRIPTION", "run", "v2"]

DESCRIPTION = (
    "- **deploy**: commands/s, p99 latency and errors of 32 tasks starting and "
    "driving counter instances on PostgreSQL while an operator deploys, promotes "
    "and rolls back every second, against the same load with no changes "
    "(interleaved, fresh schema each)."
)

CALLERS = 32
v2: Workflow[Counter] = dataclasses.replace(workflow, version=2)
"""A second version of the counter, for the routing changes."""

_NAME = workflow.name
_V1 = "bench.counter:workflow"
_V2 = "bench.deploy:v2"


class _Result:
    def __init__(self) -> None:
        self.done = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.changes = 0
        self.seconds = 0.0


def _operator(
    store: EventStore, stop: threading.Event, every: float, out: _Result
) -> None:
    cycle: list[Callable[[Deployments], object]] = [
        lambda d: d.promote(_NAME, 2, percent=10, by="bench"),
        lambda d: d.promote(_NAME, 2, percent=50, by="bench"),
        lambda d: d.promote(_NAME, 2, by="bench"),
        lambda d: d.rollback(_NAME, by="bench"),
    ]
    with Deployments(store) as ops:
        i = 0
        while not stop.wait(every):
            cycle[i % len(cycle)](ops)
            out.changes += 1
            i += 1


def _one_run(ctx: BenchContext, seconds: float, *, changes: bool) -> _Result:
    reg = registry()
    reg.register(v2)
    out = _Result()
    with pg_schema(prefix=ctx.schema) as schema:
        # One store for the engine and the operator: the tables are created once.
        store = open_store(store_url(schema))
        ops = Deployments(store)
        ops.deploy(_NAME, 1, _V1, by="bench")
        ops.deploy(_NAME, 2, _V2, canary=10, by="bench")

        async def go() -> None:
            engine = open_engine(store, reg)
            deadline = time.perf_counter() + seconds

            async def caller(n: int) -> None:
                i = 0
                while time.perf_counter() < deadline:
                    iid = f"c{n}-{i}"
                    i += 1
                    for k in range(4):
                        t0 = time.perf_counter()
                        try:
                            if k == 0:
                                await engine.start(_NAME, Begin(), instance_id=iid)
                            else:
                                await engine.send(iid, Increment(1))
                        except Exception:
                            out.errors += 1
                            break
                        out.latencies.append(time.perf_counter() - t0)
                        out.done += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(caller(n) for n in range(CALLERS)))
            out.seconds = time.perf_counter() - t0
            stop.set()
            if changes:
                await asyncio.to_thread(op.join)
            await engine.close()

        stop = threading.Event()
        op = threading.Thread(
            target=_operator,
            args=(store, stop, seconds / 5 if ctx.quick else 1.0, out),
        )
        if changes:
            op.start()
        try:
            asyncio.run(go())
        finally:
            stop.set()
            if changes:
                op.join()
    return out


def _p99_ms(latencies: list[float]) -> float:
    if len(latencies) < 2:
        return latencies[0] * 1000 if latencies else 0.0
    return statistics.quantiles(latencies, n=100)[98] * 1000


def run(ctx: BenchContext) -> list[Figure]:
    """Measure the subject (changes every second) beside the baseline."""
    seconds = 0.5 if ctx.quick else 6.0
    subject, baseline = "deploy/promote/rollback every 1 s", "no changes"
    rates: dict[str, list[float]] = {subject: [], baseline: []}
    p99: dict[str, list[float]] = {subject: [], baseline: []}
    errors: dict[str, list[float]] = {subject: [], baseline: []}
    for rep in range(ctx.reps):
        for name in (subject, baseline):
            r = _one_run(ctx, seconds, changes=name == subject)
            rates[name].append(r.done / r.seconds if r.seconds else 0.0)
            p99[name].append(_p99_ms(r.latencies))
            errors[name].append(float(r.errors))
            print(
                f"  [{rep + 1}/{ctx.reps}] deploy: {name:<36} "
                f"{rates[name][-1]:>10,.0f} commands/s  p99 {p99[name][-1]:.1f} ms  "
                f"{r.errors} errors  {r.changes} routing changes"
            )
    what = f"{CALLERS} tasks start and drive counter instances (PostgreSQL)"
    return [
        Figure(
            "deploy",
            "throughput while deploying",
            "commands/s",
            what,
            subject,
            rates[subject],
            {baseline: rates[baseline]},
            Target(0.9, ">=", against=baseline),
        ),
        Figure(
            "deploy",
            "p99 latency while deploying",
            "ms",
            what,
            subject,
            p99[subject],
            {baseline: p99[baseline]},
            Target(2.0, "<=", against=baseline),
        ),
        Figure(
            "deploy",
            "errors while deploying",
            "errors",
            what,
            subject,
            errors[subject],
            {baseline: errors[baseline]},
            Target(0.0, "<="),
        ),
    ]
