"""The cost of typed config: decisions that read it, and how fast a change lands.

1. Throughput of 16 tasks driving counter instances on a routed engine
   (SQLite) whose decider reads ``ctx.config`` (pinned) and
   ``ctx.config_latest`` at every command, against the same counter reading
   nothing; interleaved, a fresh store each.
2. Pick-up time: from ``set_config`` returning to a routed engine (poll
   interval 0.25 s) deciding with the new version, against the same for a
   flag change read live (``ctx.flag(live=True)``), the mechanism it shares.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import msgspec

from bench.counter import Begin, Counter, Increment, Incremented, registry, workflow
from bench.harness import BenchContext, Figure, Target
from engine import Context, Workflow, WorkflowRegistry
from engine.core.codec import EventCodec
from engine.core.events import Metadata
from engine.core.replay import Instance
from engine.deploy import Deployments, open_engine
from engine.deploy.configadmin import set_config
from engine.runtime.decider import Decider

__all__ = ["DESCRIPTION", "run"]

DESCRIPTION = (
    "- **config**: commands/s of counters whose decider reads `ctx.config` and "
    "`ctx.config_latest` at every command against counters reading nothing "
    "(routed engine, SQLite, interleaved); and the time until a routed engine "
    "(poll 0.25 s) decides with a new config version, against the same for a "
    "live flag change."
)

CALLERS = 16


class Step(msgspec.Struct, frozen=True):
    """The counter's config."""

    by: int = 1


def _decide(state: Counter, cmd: Any, ctx: Context) -> list[Any]:
    if isinstance(cmd, Increment):
        return [Incremented(ctx.config.by + ctx.config_latest.by + cmd.by - 2)]
    return []


def _flag_decide(state: Counter, cmd: Any, ctx: Context) -> list[Any]:
    if isinstance(cmd, Increment):
        return [Incremented(2 if ctx.flag("bench-live", live=True) else 1)]
    return []


configured: Workflow[Counter] = dataclasses.replace(
    workflow, decide=_decide, config=Step
)
flagged: Workflow[Counter] = dataclasses.replace(workflow, decide=_flag_decide)


def _registry(wf: Workflow[Counter]) -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(wf)
    return reg


def _throughput(url: str, reg: WorkflowRegistry, commands: int) -> float:
    async def go() -> float:
        engine = open_engine(url, reg)
        per = commands // CALLERS

        async def caller(n: int) -> None:
            iid = f"c{n}"
            await engine.start(workflow.name, Begin(), instance_id=iid)
            for _ in range(per):
                await engine.send(iid, Increment(1))

        t0 = time.perf_counter()
        await asyncio.gather(*(caller(n) for n in range(CALLERS)))
        seconds = time.perf_counter() - t0
        await engine.close()
        return per * CALLERS / seconds

    return asyncio.run(go())


def _decisions(url: str, wf: Workflow[Counter], n: int) -> float:
    """Decider steps per second (no I/O): ``wf`` deciding one command ``n`` times."""
    with Deployments(url) as ops:
        ops.refresh()
        decider = Decider(_registry(wf), EventCodec(), ops)
        inst = Instance(wf, Counter(), 1)
        meta = Metadata(wf.ref)
        t0 = time.perf_counter()
        for _ in range(n):
            inst = decider.decide("d", inst, Increment(1), meta)[0]
        return n / (time.perf_counter() - t0)


def _pick_up(url: str, *, config: bool) -> float:
    """Milliseconds from the change returning to a decision that uses it."""
    reg = _registry(configured if config else flagged)
    ops = Deployments(url)
    if config:
        set_config(ops, workflow.name, {"by": 1}, registry=reg)
    else:
        ops.set_flag("bench-live", "boolean", enabled=False)

    async def go() -> float:
        engine = open_engine(url, reg, poll_interval=0.25)
        await engine.start(workflow.name, Begin(), instance_id="p")
        await engine.send("p", Increment(1))
        if config:
            await asyncio.to_thread(
                set_config, ops, workflow.name, {"by": 2}, registry=reg
            )
        else:
            await asyncio.to_thread(ops.set_flag, "bench-live", "boolean", enabled=True)
        t0 = time.perf_counter()
        before = (await engine.get("p")).state.value
        while True:
            info = await engine.send("p", Increment(1))
            if info.state.value - before >= 2:
                break
            before = info.state.value
            await asyncio.sleep(0.005)
        took = (time.perf_counter() - t0) * 1000
        await engine.close()
        return took

    try:
        return asyncio.run(go())
    finally:
        ops.close()


def run(ctx: BenchContext) -> list[Figure]:
    """Measure both figures beside their baselines."""
    commands = 320 if ctx.quick else 6400
    subject, baseline = "reads ctx.config + config_latest", "reads nothing"
    rates: dict[str, list[float]] = {subject: [], baseline: []}
    steps: dict[str, list[float]] = {subject: [], baseline: []}
    config_ms: list[float] = []
    flag_ms: list[float] = []
    for rep in range(ctx.reps):
        for k, (name, reg) in enumerate(
            ((subject, _registry(configured)), (baseline, registry()))
        ):
            url = f"sqlite:///{ctx.work / f'config-{rep}-{k}.db'}"
            if name == subject:
                with Deployments(url) as ops:
                    set_config(ops, workflow.name, {"by": 1}, registry=reg)
            rates[name].append(_throughput(url, reg, commands))
            print(
                f"  [{rep + 1}/{ctx.reps}] config: {name:<34} "
                f"{rates[name][-1]:>9,.0f} commands/s"
            )
        url = f"sqlite:///{ctx.work / f'steps-{rep}.db'}"
        with Deployments(url) as ops:
            set_config(ops, workflow.name, {"by": 1}, registry=_registry(configured))
        n = 2_000 if ctx.quick else 50_000
        for name, wf in ((baseline, workflow), (subject, configured)):
            steps[name].append(_decisions(url, wf, n))
        print(
            f"  [{rep + 1}/{ctx.reps}] config: decider steps/s "
            f"{steps[subject][-1]:,.0f} reading config, "
            f"{steps[baseline][-1]:,.0f} reading nothing"
        )
        config_ms.append(
            _pick_up(f"sqlite:///{ctx.work / f'pick-c{rep}.db'}", config=True)
        )
        flag_ms.append(
            _pick_up(f"sqlite:///{ctx.work / f'pick-f{rep}.db'}", config=False)
        )
        print(
            f"  [{rep + 1}/{ctx.reps}] config: pick-up {config_ms[-1]:.0f} ms, "
            f"live flag {flag_ms[-1]:.0f} ms"
        )
    what = f"{CALLERS} tasks drive counter instances (routed engine, SQLite)"
    return [
        Figure(
            "config",
            "decider step reading typed config",
            "steps/s",
            "one counter command decided and encoded, no I/O (routed decider)",
            subject,
            steps[subject],
            {baseline: steps[baseline]},
            Target(0.7, ">=", against=baseline),
        ),
        Figure(
            "config",
            "throughput reading typed config",
            "commands/s",
            what,
            subject,
            rates[subject],
            {baseline: rates[baseline]},
            Target(0.9, ">=", against=baseline),
        ),
        Figure(
            "config",
            "config change pick-up",
            "ms",
            "from the change to the first decision using it (poll 0.25 s)",
            "config set",
            config_ms,
            {"live flag change": flag_ms},
            Target(1000.0, "<="),
        ),
    ]
