"""Guarded rollouts: cost of health counting, time to roll back, safety.

Three measurements on PostgreSQL, 64 asyncio callers starting counter
instances and sending each three commands:

1. throughput with health counters and Prometheus metrics on, against the
   same load with them off (interleaved runs, fresh schema each);
2. two engines (each with its own router) take load while a controller in
   the same process guards a rollout of a candidate that rejects a quarter of
   its commands: the time from the end of the candidate's first bad interval to
   the moment both engines route no new instance to it;
3. failed commands (anything but the candidate's own rejections) while a
   healthy candidate is promoted step by step to 100 % under load.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

from bench.counter import Begin, Counter, Increment, registry, workflow
from bench.harness import BenchContext, Figure, Target, pg_schema, store_url
from engine import CommandRejected, Context, Workflow, open_store
from engine.deploy import Deployments, open_engine
from engine.health import Health
from engine.health.controller import RolloutController, Rollouts
from engine.health.rollout import RolloutPlan
from engine.runtime import Engine

__all__ = ["DESCRIPTION", "run", "v2", "v3"]

DESCRIPTION = (
    "- **rollout**: commands/s of 64 callers with health counters and "
    "Prometheus metrics on against off; time from a faulty candidate's first "
    "bad interval to rollback on two engines; failed commands while a healthy "
    "candidate is promoted to 100 % by a plan (PostgreSQL)."
)

CALLERS = 64
INTERVAL = 1.0
_NAME = workflow.name


def _picky(state: Counter, cmd: Any, ctx: Context) -> list[Any]:
    if isinstance(cmd, Increment) and state.value == 2:
        raise CommandRejected("v3 refuses an instance's third increment")
    return workflow.decide(state, cmd, ctx)


v2: Workflow[Counter] = dataclasses.replace(workflow, version=2)
"""A healthy candidate."""
v3: Workflow[Counter] = dataclasses.replace(workflow, version=3, decide=_picky)
"""A candidate that rejects a quarter of the commands the load sends."""


def _registry() -> Any:
    reg = registry()
    reg.register(v2, v3)
    return reg


class _Load:
    def __init__(self) -> None:
        self.done = 0
        self.errors = 0
        self.rejected = 0
        self.seconds = 0.0


async def _drive(engines: list[Engine], until: Any, out: _Load, tag: str = "") -> None:
    async def caller(n: int) -> None:
        engine = engines[n % len(engines)]
        i = 0
        while not until():
            iid = f"{tag}c{n}-{i}"
            i += 1
            for k in range(4):
                try:
                    if k == 0:
                        await engine.start(_NAME, Begin(), instance_id=iid)
                    else:
                        await engine.send(iid, Increment(1))
                    out.done += 1
                except CommandRejected:
                    out.rejected += 1
                except Exception:
                    out.errors += 1
                    break

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(CALLERS)))
    out.seconds = time.perf_counter() - t0


def _throughput(
    ctx: BenchContext, seconds: float, *, metrics: bool
) -> tuple[float, int]:
    out = _Load()
    with pg_schema(prefix=ctx.schema) as schema:
        store = open_store(store_url(schema))

        async def go() -> None:
            engine = Engine(store, registry(), metrics=metrics)
            end = time.perf_counter() + seconds
            await _drive([engine], lambda: time.perf_counter() > end, out)
            await engine.close()

        asyncio.run(go())
    return (out.done / out.seconds if out.seconds else 0.0), out.errors


def _guarded(
    ctx: BenchContext, version: int, timeout: float
) -> tuple[float, float, _Load]:
    """Run a plan for ``version`` under load on two engines.

    Returns:
        Seconds from the end of the first interval to the moment both engines
        stopped routing to the candidate and to the moment the rollback was
        recorded (0 for a completed plan), and the load.
    """
    out = _Load()
    with pg_schema(prefix=ctx.schema) as schema:
        url = store_url(schema)
        store = open_store(url)
        Deployments(store).deploy(_NAME, 1, "bench.counter:workflow", by="bench")
        rollouts = Rollouts(store, bucket_seconds=1, settle=0.5)
        plan = RolloutPlan(
            _NAME,
            version,
            steps=(10.0, 50.0, 100.0),
            interval=INTERVAL,
            min_sample=20,
            failure_limit=1,
            deadline=timeout,
        )
        controller = RolloutController(rollouts, ttl=INTERVAL, poll=0.1)
        stopped = threading.Event()
        marks: dict[str, float] = {}

        async def go() -> None:
            engines = []
            for _ in range(2):
                s = open_store(url)
                h = Health(s, flush_interval=0.2, bucket_seconds=1)
                engines.append(open_engine(s, _registry(), poll_interval=0.1, health=h))

            async def watch() -> None:
                while not stopped.is_set():
                    routes = [e.router.refresh() for e in engines]  # type: ignore[union-attr]
                    if "start" in marks and all(
                        v.workflow(_NAME).routing.canary != version  # type: ignore[union-attr]
                        and v.workflow(_NAME).routing.stable != version  # type: ignore[union-attr]
                        for v in routes
                    ):
                        marks["gone"] = time.time()
                        stopped.set()
                    r = rollouts.status(_NAME) if "start" in marks else None
                    if r is not None and r.status == "completed":
                        stopped.set()
                    if r is not None and r.status == "rolled_back":
                        marks.setdefault("decided", time.time())
                    await asyncio.sleep(0.02)

            async def operate() -> None:
                await asyncio.sleep(0.5)  # both engines take v1 load first
                await asyncio.to_thread(
                    rollouts.start, plan, source=f"bench.rollout:v{version}", by="bench"
                )
                marks["start"] = time.time()
                controller.start()

            end = time.monotonic() + timeout
            await asyncio.gather(
                _drive(
                    engines,
                    lambda: stopped.is_set() or time.monotonic() > end,
                    out,
                    "g",
                ),
                watch(),
                operate(),
            )
            await asyncio.to_thread(controller.stop)
            for e in engines:
                await e.close()

        asyncio.run(go())
    if "gone" not in marks:
        return 0.0, 0.0, out
    bad_end = marks["start"] + INTERVAL
    decided = marks.get("decided", marks["gone"])
    return marks["gone"] - bad_end, decided - bad_end, out


def run(ctx: BenchContext) -> list[Figure]:
    """Measure the three figures."""
    seconds = 0.5 if ctx.quick else 5.0
    on, off = "health + metrics on", "health + metrics off"
    rates: dict[str, list[float]] = {on: [], off: []}
    plain_errors: list[float] = []
    for rep in range(ctx.reps):
        # Alternate which goes first: the machine's drift hits both alike.
        for name in (on, off) if rep % 2 == 0 else (off, on):
            rate, errors = _throughput(ctx, seconds, metrics=name == on)
            rates[name].append(rate)
            if name == off:
                plain_errors.append(float(errors))
            print(
                f"  [{rep + 1}/{ctx.reps}] rollout: {name:<24} "
                f"{rates[name][-1]:>10,.0f} commands/s"
            )
    rollback: list[float] = []
    recorded: list[float] = []
    failed: list[float] = []
    for rep in range(ctx.reps):
        took, decided, _ = _guarded(ctx, 3, 30.0)
        rollback.append(took)
        recorded.append(decided)
        _, _, load = _guarded(ctx, 2, 30.0)
        failed.append(float(load.errors))
        print(
            f"  [{rep + 1}/{ctx.reps}] rollout: rollback {took:.2f} s after the "
            f"first bad interval; {load.errors} failed commands while promoting"
        )
    what = f"{CALLERS} callers start and drive counter instances (PostgreSQL)"
    return [
        Figure(
            "rollout",
            "throughput with health counters",
            "commands/s",
            what,
            on,
            rates[on],
            {off: rates[off]},
            Target(0.97, ">=", against=off),
        ),
        Figure(
            "rollout",
            "rollback after the first bad interval",
            "s",
            f"2 engines, interval {INTERVAL:g} s, failure limit 1",
            "faulty candidate (25 % rejected): rollback on both engines",
            rollback,
            {"rollback recorded by the controller": recorded},
            Target(INTERVAL + 1.0, "<="),
        ),
        Figure(
            "rollout",
            "failed commands while a plan promotes",
            "errors",
            what,
            "healthy candidate 10 -> 50 -> 100 %",
            failed,
            {"same load, no plan": plain_errors},
            Target(0.0, "<="),
        ),
    ]
