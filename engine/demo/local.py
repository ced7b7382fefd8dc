"""``nonstop demo``: two versions of the order workflow side by side, and a restart.

The demo starts orders while ``orders@1`` is current, makes ``orders@2`` current
mid-way (new orders get a fraud check; orders in flight stay on v1), closes the
engine, opens a new one on the same store, and drives every order to its end.
It then checks from the stored events that each order ran one version only.
"""

from __future__ import annotations

import asyncio
import random
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from engine.core.errors import NonstopError
from engine.demo import orders
from engine.demo.common import (
    CUSTOMERS,
    WORKFLOW,
    DemoRun,
    next_command,
    summary,
    verify,
)
from engine.demo.config_phase import config_phase
from engine.demo.effects_phase import run_effects_phase
from engine.demo.hotfix import hotfix_phase
from engine.runtime import Engine, InstanceInfo
from engine.store import redact

__all__ = ["DEFAULT_STORE", "run_demo"]

DEFAULT_STORE = "sqlite:///nonstop-demo.db"
"""Where ``nonstop demo`` writes unless told otherwise."""

T = TypeVar("T")


def run_demo(
    store_url: str = DEFAULT_STORE,
    *,
    instances: int = 300,
    seed: int | None = None,
    out: Console | None = None,
) -> int:
    """Run the demo on ``store_url``; returns 0 when every check passed, else 1.

    Raises:
        StoreUnavailable: the store cannot be opened.
    """
    console = out if out is not None else Console(highlight=False)
    return asyncio.run(_demo(store_url, instances, seed, console))


async def _demo(store_url: str, instances: int, seed: int | None, out: Console) -> int:
    rng = random.Random(seed)
    if seed is not None:
        # ctx.random() (the fraud score) draws from the module's generator.
        random.seed(seed)
    # A fresh run id even with a seed: runs share the file, never an id.
    run = DemoRun(run_id=uuid.uuid4().hex[:8])
    ids = [f"demo-{run.run_id}-{i:04d}" for i in range(instances)]
    first, second = ids[: (instances + 1) // 2], ids[(instances + 1) // 2 :]
    began = time.perf_counter()
    out.print(
        f"[bold]nonstop demo[/] run {run.run_id}: {instances} orders in "
        f"{redact(store_url)}"
    )

    old = orders.release1()  # OrderPlaced schema 1, orders@1 only
    engine = old.engine(store_url)
    try:
        # Phase 1: release 1, orders@1 is current.
        await _gather(
            [_start(engine, run, iid, rng, old.place_order, 1) for iid in first]
        )
        paid = rng.sample(first, len(first) // 3)
        await _gather([_step(engine, run, iid, "pay") for iid in paid])
        out.print(
            f"phase 1 ({old.name}): started {len(first)} orders on {WORKFLOW}@1 "
            f"(current), writing OrderPlaced schema 1; {len(paid)} of them paid"
        )
    finally:
        await engine.close()
    commits = engine.commits
    problem = await hotfix_phase(store_url, run.run_id, out)
    if problem is not None:
        run.fail(f"{WORKFLOW}@1", problem)

    # Deploy release 2: OrderPlaced schema 2 (+ currency, upcast for old events),
    # orders@2 current; the orders in flight stay pinned to orders@1.
    new = orders.release2()
    engine = new.engine(store_url)
    try:
        out.print(
            f"deploy {new.name}: OrderPlaced schema 2 adds a required currency, "
            "derived for schema 1 events by an upcaster on read"
        )
        out.print(
            f"{WORKFLOW}@2 is now current: new orders get a fraud check; the "
            f"{len(first)} orders in flight stay pinned to {WORKFLOW}@1"
        )

        # Phase 2: orders@2 is current.
        await _gather(
            [_start(engine, run, iid, rng, new.place_order, 2) for iid in second]
        )
        checked = rng.sample(second, len(second) // 3)
        await _gather([_step(engine, run, iid, "check") for iid in checked])
        out.print(
            f"phase 2: started {len(second)} orders on {WORKFLOW}@2; "
            f"{len(checked)} of them already fraud-checked"
        )
    finally:
        await engine.close()
    commits += engine.commits

    out.print(
        "restart: closed the engine and opened a new Engine on the same store; "
        "from here on every order is read back from its stored events"
    )
    engine = orders.release2().engine(store_url)
    try:
        await _drive(engine, run, ids, out)
        finals = await verify(engine, run, ids)
    finally:
        await engine.close()
    commits += engine.commits
    canary_commits, canary_table = await _canary(store_url, run, rng, out, instances)
    commits += canary_commits
    config_commits, config_table = await config_phase(store_url, run, rng, out)
    commits += config_commits
    commits += await run_effects_phase(store_url, run, rng, out)

    elapsed = time.perf_counter() - began
    out.print(summary(run, finals))
    out.print(canary_table)
    out.print(config_table)
    v1 = [i for i, v in run.expected.items() if v == 1 and i in finals]
    v1_done = sum(finals[i].status == "completed" for i in v1)
    out.print(
        f"schema change: {run.upcast} events stored by release 1 (OrderPlaced "
        f"schema 1) were upcast to schema 2 on read; {v1_done} of {len(v1)} "
        f"{WORKFLOW}@1 orders started on release 1 finished on release 2"
    )
    out.print(
        f"{run.commands} commands written in {commits} transactions "
        f"(group commit), {elapsed:.1f} s"
    )
    if run.errors:
        out.print(f"[bold red]demo FAILED[/]: {len(run.errors)} problem(s)")
        for iid, what in run.errors[:20]:
            out.print(Text(f"  - {iid}: {what}"))
        if len(run.errors) > 20:
            out.print(f"  ... and {len(run.errors) - 20} more")
        return 1
    sample = next((i for i in ids if finals[i].status == "failed"), ids[-1])
    out.print(
        "[bold green]demo OK[/]: every order ran on the version it started on "
        "(or the one the operator migrated it to); no order failed because of a "
        "deploy. Inspect it with:"
    )
    store = shlex.quote(redact(store_url))  # printed to be pasted in a shell
    out.print(Text(f"  nonstop --store {store} instances --status failed"))
    out.print(Text(f"  nonstop --store {store} show {sample}"))
    return 0


async def _gather(jobs: Sequence[Awaitable[T]]) -> list[T]:
    return list(await asyncio.gather(*jobs))


async def _start(
    engine: Engine,
    run: DemoRun,
    iid: str,
    rng: random.Random,
    place: Callable[..., Any],
    version: int,
) -> None:
    amount = rng.randint(5, 500)
    run.amounts[iid] = amount
    try:
        info = await engine.start(
            WORKFLOW,
            place(order_id=iid, amount=amount, customer=rng.choice(CUSTOMERS)),
            instance_id=iid,
            command_id=f"{iid}:place",
            # Pinned: these phases show a release's code deciding, whatever
            # the store's deployments (a store of an earlier run) route to.
            version=version,
        )
    except NonstopError as exc:
        run.fail(iid, f"start failed: {exc}")
        return
    run.commands += 1
    run.expected[iid] = info.version


async def _step(
    engine: Engine, run: DemoRun, iid: str, name: str
) -> InstanceInfo | None:
    command: Any
    if name == "pay":
        command = orders.Pay(run.amounts[iid])
    elif name == "check":
        command = orders.CheckFraud()
    elif name == "ship":
        command = orders.Ship("post")
    else:
        run.fail(iid, "running but the demo does not know what to send")
        return None
    try:
        info = await engine.send(iid, command, command_id=f"{iid}:{name}")
    except NonstopError as exc:
        run.fail(iid, f"{name} failed: {exc}")
        return None
    run.commands += 1
    return info


async def _drive(
    engine: Engine, run: DemoRun, ids: Sequence[str], out: Console
) -> None:
    """Run every instance to its end, all concurrently (so commits group)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=out,
    ) as progress:
        task = progress.add_task("driving orders to their end", total=len(ids))

        async def one(iid: str) -> None:
            try:
                info: InstanceInfo | None = await engine.get(iid)
            except NonstopError as exc:
                run.fail(iid, f"lost after the restart: {exc}")
                info = None
            while info is not None and info.status == "running":
                info = await _step(engine, run, iid, next_command(info))
            progress.advance(task)

        await _gather([one(iid) for iid in ids if iid in run.expected])


# ------------------------------------------------------------------ canary


@dataclass
class _Canary:
    """What the canary phase saw, per instance."""

    started: dict[str, int] = field(default_factory=dict)
    """Instance id -> version it was routed to."""
    migrated: set[str] = field(default_factory=set)
    misbehaved: set[str] = field(default_factory=set)
    """Instances whose command crashed in the faulty version."""
    steps: list[str] = field(default_factory=list)
    """What the operator did, in order."""


async def _canary(
    store_url: str, run: DemoRun, rng: random.Random, out: Console, n: int
) -> tuple[int, Table]:
    """Rollout plans: v2 is promoted by the guard, the faulty v3 rolled back by it.

    Returns the commits written and a summary. Problems go to ``run.errors``.
    """
    from engine.deploy import Deployments, Routing, migrate_instances, open_engine
    from engine.health import Health
    from engine.health.controller import RolloutController, Rollouts
    from engine.health.rollout import RolloutPlan
    from engine.store import open_store

    seen = _Canary()
    ops = Deployments(store_url)
    store = open_store(store_url)
    # Health counted per version, flushed often: the guard judges 1 s windows.
    health = Health(store, flush_interval=0.1, bucket_seconds=1)
    engine = open_engine(store, orders.registry(), poll_interval=0.05, health=health)
    rollouts = Rollouts(store, bucket_seconds=1, settle=0.3)
    controller = RolloutController(rollouts, ttl=2.0)
    by = "demo"

    async def guard(
        version: int, source: str, steps: tuple[float, ...], expect: str
    ) -> None:
        """Roll ``version`` out by a plan while orders flow; the guard decides."""
        if await asyncio.to_thread(lambda: rollouts.refresh().active(WORKFLOW)):
            await asyncio.to_thread(rollouts.abort, WORKFLOW, by=by, reason="reset")
        plan = RolloutPlan(
            WORKFLOW,
            version,
            steps=steps,
            interval=1.0,
            # Fraud-check failures (3 % of orders, under 1 % of commands) count
            # as errors and orders@1 has none: windows of at least 150 commands
            # keep a chance cluster of them under the 5 % limit (odds about
            # 1 in 10,000 per window), while orders@3 crashes on about 12 %.
            # A shared machine's latency is noisy: the latency limit is loose.
            min_sample=150,
            max_error_rate=0.05,
            max_latency_ratio=3.0,
            failure_limit=1,
            deadline=60.0,
        )
        r = await asyncio.to_thread(rollouts.start, plan, source=source, by=by)
        shares = ", ".join(f"{x:g} %" for x in steps)
        seen.steps.append(f"rollout orders@{version}: {shares}")
        out.print(
            Text(
                f"operator: rollout plan for orders@{version} ({shares}, 1 s "
                f"windows against orders@{r.baseline}); the guard takes over"
            )
        )
        while r.active:
            await asyncio.sleep(0.06)  # past the engine's poll interval
            await start(20)
            for d in await asyncio.to_thread(controller.step):
                out.print(
                    Text(
                        f"guard: {d.action} orders@{version} -> {d.share:g} % "
                        f"({d.reason})"
                    )
                )
            r = await asyncio.to_thread(rollouts.status, WORKFLOW)
        if r.status != expect:
            run.fail(f"rollout of orders@{version}", f"ended {r.status}")

    def change(what: str, fn: Callable[[], Any]) -> None:
        routing = fn()
        seen.steps.append(f"{what}: {routing.describe()}")
        out.print(Text(f"operator: {what} -> new orders go {routing.describe()}"))

    def deploy(version: int, source: str, pct: float) -> Any:
        wd = ops.refresh().workflow(WORKFLOW)
        if version in wd.deployments:  # an earlier run of the demo deployed it
            return ops.promote(WORKFLOW, version, percent=pct, by=by)
        return ops.deploy(WORKFLOW, version, source, canary=pct, by=by)

    async def start(count: int) -> None:
        base = len(seen.started)
        ids = [f"demo-{run.run_id}-c{base + i:03d}" for i in range(count)]
        await _gather([one(iid) for iid in ids])

    async def one(iid: str) -> None:
        amount = rng.randint(5, 500)
        run.amounts[iid] = amount
        try:
            info = await engine.start(
                WORKFLOW,
                orders.PlaceOrder(iid, amount, rng.choice(CUSTOMERS)),
                instance_id=iid,
            )
        except NonstopError as exc:
            run.fail(iid, f"canary start failed: {exc}")
            return
        run.commands += 1
        seen.started[iid] = info.version
        await drive(iid, info)

    async def drive(iid: str, info: InstanceInfo | None) -> None:
        while info is not None and info.status == "running":
            name = next_command(info)
            command: Any = {
                "check": orders.CheckFraud(),
                "pay": orders.Pay(run.amounts[iid]),
                "ship": orders.Ship("post"),
            }.get(name)
            try:
                info = await engine.send(iid, command)
                run.commands += 1
            except NonstopError as exc:
                if info.version == 3:
                    seen.misbehaved.add(iid)  # left running: migrated below
                else:
                    run.fail(iid, f"{name} failed: {exc}")
                return

    try:
        wd = (await asyncio.to_thread(ops.refresh)).workflow(WORKFLOW)
        if not wd.deployments:
            await asyncio.to_thread(
                change,
                "deploy orders@1",
                lambda: ops.deploy(WORKFLOW, 1, "engine.demo.orders:v1", by=by),
            )
        elif wd.routing != Routing(1):
            await asyncio.to_thread(
                change, "reset to orders@1", lambda: ops.promote(WORKFLOW, 1, by=by)
            )
        await guard(2, "engine.demo.orders:v2", (10.0, 50.0, 100.0), "completed")
        await guard(3, "engine.demo.orders_faulty:v3", (30.0, 100.0), "rolled_back")
        out.print(
            f"orders@3 misbehaved: {len(seen.misbehaved)} of its orders crashed in "
            "its fraud check (nothing was written for those commands)"
        )
        report = await migrate_instances(
            engine, WORKFLOW, 3, 2, by=by, reason="orders@3 rolled back"
        )
        seen.migrated = {
            r.instance_id for r in report.results if r.outcome == "migrated"
        }
        for r in report.results:
            if r.outcome == "failed":
                run.fail(r.instance_id, f"migration failed: {r.detail}")
        out.print(
            f"migrated {len(seen.migrated)} running orders@3 orders to orders@2; "
            "driving them to their end"
        )
        await _gather(
            [drive(iid, await engine.get(iid)) for iid in sorted(seen.migrated)]
        )
        await _check_canary(engine, run, seen)
    finally:
        await asyncio.to_thread(controller.lease.release)
        await engine.close()
        await asyncio.to_thread(ops.close)
    return engine.commits, _canary_summary(seen, run)


async def _check_canary(engine: Engine, run: DemoRun, seen: _Canary) -> None:
    """Every canary-phase order ran one version (or two, split by a migration)."""
    for iid, version in seen.started.items():
        info = await engine.get(iid)
        history = await engine.history(iid)
        refs = [e.workflow for e in history]
        first = f"{WORKFLOW}@{version}"
        if iid in seen.migrated:
            cut = next(i for i, e in enumerate(history) if e.type == "nonstop.Migrated")
            ok = set(refs[:cut]) == {first} and set(refs[cut:]) == {f"{WORKFLOW}@2"}
        else:
            ok = set(refs) == {first}
        if not ok:
            run.fail(iid, f"started on {first} but ran {sorted(set(refs))}")
        if info.status == "running":
            run.fail(iid, f"still running on {WORKFLOW}@{info.version}")
        elif info.status == "failed" and getattr(info.state, "stage", "") != "rejected":
            run.fail(iid, f"failed on {WORKFLOW}@{info.version}")


def _canary_summary(seen: _Canary, run: DemoRun) -> Table:
    table = Table(title=f"Run {run.run_id}: canary, promotion and rollback")
    table.add_column("version", no_wrap=True)
    table.add_column("started", justify="right")
    table.add_column("crashed in v3", justify="right")
    table.add_column("migrated to v2", justify="right")
    table.add_column("failed by a deploy", justify="right")
    bad = {iid for iid, _ in run.errors}
    for version in sorted(set(seen.started.values())):
        mine = [i for i, v in seen.started.items() if v == version]
        table.add_row(
            f"{WORKFLOW}@{version}",
            str(len(mine)),
            str(len([i for i in mine if i in seen.misbehaved])),
            str(len([i for i in mine if i in seen.migrated])),
            str(len([i for i in mine if i in bad])),
        )
    return table
