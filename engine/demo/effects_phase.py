"""The demo's effects phase: checkouts charged through a flaky gateway, and timers.

Each checkout of an order asks for a ``ChargePayment`` effect (card orders) or
waits for a bank transfer (invoice orders), and arms an ``unpaid`` timer. A
fake gateway fails 30 % of its calls; the runner retries them with the same
idempotency key. Invoice orders are never paid: their timer fires after a
demo-short wait and cancels them as unpaid. Half-way the engine is closed and
a new one opened on the same store: nothing requested is lost, no result is
recorded twice.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import msgspec
from rich.console import Console

from engine.core.effects import EffectCompleted, EffectFailed
from engine.core.events import event
from engine.core.workflow import Context, Status, Workflow, WorkflowRegistry
from engine.demo.common import DemoRun
from engine.runtime import Engine
from engine.runtime.effects import EffectRunner, Settings, TimerService
from engine.runtime.handlers import EffectHandlers, effect_handler
from engine.store.retry import Backoff

__all__ = ["CHECKOUT", "run_effects_phase"]

CHECKOUT = "checkout"
"""The workflow of this phase."""
UNPAID_AFTER = timedelta(milliseconds=300)
"""How long an invoice order may stay unpaid (demo-short)."""
CARD_UNPAID_AFTER = timedelta(minutes=10)
"""A card order's timer: cancelled when the charge is recorded."""
FAIL_RATE = 0.3
"""Share of gateway calls that fail."""


class Checkout(msgspec.Struct, frozen=True):
    """Start a checkout of ``order`` for ``amount``."""

    order: str
    amount: int
    card: bool = True


class ChargePayment(msgspec.Struct, frozen=True):
    """The effect: charge ``amount`` for ``order``."""

    order: str
    amount: int


class CancelUnpaid(msgspec.Struct, frozen=True):
    """The timer's command."""


@event("demo.CheckoutStarted")
class CheckoutStarted(msgspec.Struct, frozen=True):
    amount: int
    card: bool


@event("demo.Charged")
class Charged(msgspec.Struct, frozen=True):
    receipt: str


@event("demo.ChargeFailed")
class ChargeFailed(msgspec.Struct, frozen=True):
    error: str


@event("demo.CancelledUnpaid")
class CancelledUnpaid(msgspec.Struct, frozen=True):
    pass


class Till(msgspec.Struct, frozen=True):
    status: Status = "running"


def _decide(state: Till, cmd: object, ctx: Context) -> list[object]:
    if isinstance(cmd, Checkout):
        if cmd.card:
            ctx.request(ChargePayment(cmd.order, cmd.amount))
        wait = CARD_UNPAID_AFTER if cmd.card else UNPAID_AFTER
        ctx.after(wait, CancelUnpaid(), key="unpaid")
        return [CheckoutStarted(cmd.amount, cmd.card)]
    if isinstance(cmd, EffectCompleted):
        return [Charged(str(cmd.result))]
    if isinstance(cmd, EffectFailed):
        return [ChargeFailed(cmd.error)]
    if isinstance(cmd, CancelUnpaid):
        return [CancelledUnpaid()]
    return []


def _evolve(state: Till, e: object) -> Till:
    if isinstance(e, Charged):
        return Till("completed")
    if isinstance(e, (ChargeFailed, CancelledUnpaid)):
        return Till("failed")
    return state


checkout_v1: Workflow[Till] = Workflow(
    CHECKOUT, 1, Till, Till, _decide, _evolve, lambda s: s.status
)


@dataclass
class Gateway:
    """A fake payment gateway that fails 30 % of calls."""

    rng: random.Random
    calls: Counter[str] = field(default_factory=Counter)
    failures: int = 0

    def charge(self, req: ChargePayment, key: str) -> str:
        self.calls[key] += 1
        if self.rng.random() < FAIL_RATE:
            self.failures += 1
            raise ConnectionError("gateway timeout")
        return f"rcpt-{req.order}"


def _services(engine: Engine, gateway: Gateway) -> tuple[EffectRunner, TimerService]:
    handlers = EffectHandlers()
    effect_handler(
        "ChargePayment",
        max_attempts=10,
        backoff=Backoff(first=0.001, longest=0.01),
        registry=handlers,
    )(gateway.charge)
    settings = Settings(batch=500, lease=5.0, poll=0.02)
    return (
        EffectRunner(engine, handlers, settings=settings),
        TimerService(engine, settings=settings),
    )


async def run_effects_phase(
    store_url: str, run: DemoRun, rng: random.Random, out: Console, count: int = 40
) -> int:
    """Run the phase; returns the transactions written. Problems go to ``run``."""
    await asyncio.to_thread(_deploy, store_url)
    registry = WorkflowRegistry()
    registry.register(checkout_v1)
    gateway = Gateway(random.Random(rng.random()))
    ids = [f"checkout-{run.run_id}-{i:03d}" for i in range(count)]
    card = {iid: rng.random() < 0.8 for iid in ids}
    engine = Engine(store_url, registry)
    try:
        await asyncio.gather(
            *(
                engine.start(
                    CHECKOUT, Checkout(iid, 10 + i, card[iid]), instance_id=iid
                )
                for i, iid in enumerate(ids)
            )
        )
        runner, _ = _services(engine, gateway)
        runner.settings = Settings(batch=max(1, sum(card.values()) // 2))
        await runner.run_once()  # half the charges, then a restart
        first = runner.delivered
    finally:
        await engine.close()
    commits = engine.commits
    engine = Engine(store_url, registry)
    try:
        runner, timers = _services(engine, gateway)
        stop = asyncio.Event()
        loops = [asyncio.create_task(s.run(stop)) for s in (runner, timers)]
        try:
            async with asyncio.timeout(10):
                while await _running(engine, ids):
                    await asyncio.sleep(0.02)
        except TimeoutError:
            run.fail(CHECKOUT, "checkouts still running after 10 s")
        finally:
            stop.set()
            await asyncio.gather(*loops)
        fired = timers.delivered
        before = len(run.errors)
        await _check(engine, run, ids, card, gateway)
        checked = len(run.errors) == before
    finally:
        await engine.close()
    commits += engine.commits
    paid = sum(card.values())
    out.print(
        f"effects: {paid} card checkouts charged through a gateway failing "
        f"{FAIL_RATE:.0%} of calls ({sum(gateway.calls.values())} calls, "
        f"{gateway.failures} retried, {first} charged before a restart, "
        f"{runner.delivered} after); {fired} unpaid invoice checkouts cancelled "
        f"by their {UNPAID_AFTER.total_seconds():g} s timer; {paid} timers "
        "cancelled on payment"
        + ("; none lost or recorded twice" if checked else "; [red]see below[/]")
    )
    return commits


def _deploy(store_url: str) -> None:
    """Deploy ``checkout@1`` once per store: every engine and the CLI load it."""
    from engine.deploy import Deployments

    with Deployments(store_url) as ops:
        if not ops.refresh().workflow(CHECKOUT).deployments:
            ops.deploy(CHECKOUT, 1, f"{__name__}:checkout_v1", by="demo")


async def _running(engine: Engine, ids: list[str]) -> bool:
    infos = await asyncio.gather(*(engine.get(i) for i in ids))
    return any(i.status == "running" for i in infos)


async def _check(
    engine: Engine,
    run: DemoRun,
    ids: list[str],
    card: dict[str, bool],
    gateway: Gateway,
) -> None:
    box = engine.store.outbox()
    for iid in ids:
        history = await engine.history(iid)
        kinds = Counter(type(e.event).__name__ for e in history)
        want = "Charged" if card[iid] else "CancelledUnpaid"
        if kinds[want] != 1 or len(history) != 3:
            run.fail(iid, f"expected one {want} event, got {dict(kinds)}")
        timer = box.get(f"{iid}#timer:unpaid")
        expected = "cancelled" if card[iid] else "done"
        if timer is None or timer.status != expected:
            run.fail(iid, f"its unpaid timer is {timer and timer.status}")
    effects = {e.id for e in box.entries(kind="effect", limit=100_000)}
    mine = {k for k in effects if k.startswith(f"checkout-{run.run_id}-")}
    if set(gateway.calls) != mine:
        run.fail(CHECKOUT, "the gateway saw keys of no request, or missed one")
