"""Durable timers: fire when due, once, after restarts; cancelled ones never."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from engine import Engine, EventStore, open_store
from engine.core.effects import timer_command_id
from engine.runtime.effects import TimerService
from engine.runtime.handlers import ManualClock

from . import flows


async def _expired(engine: Engine, iid: str) -> int:
    return sum(isinstance(e.event, flows.Expired) for e in await engine.history(iid))


async def test_a_timer_fires_when_due_and_once(
    engine: Engine, timers: TimerService, clock: ManualClock
) -> None:
    await engine.start("sales", flows.Buy(5), instance_id="a")
    clock.advance(flows.UNPAID_AFTER - timedelta(minutes=1))
    assert await timers.run_once() == 0
    clock.advance(timedelta(minutes=2))
    assert await timers.run_once() == 1
    assert await timers.run_once() == 0
    info = await engine.get("a")
    assert info.status == "failed" and await _expired(engine, "a") == 1
    [fired] = [
        e for e in await engine.history("a") if isinstance(e.event, flows.Expired)
    ]
    assert fired.command_id == timer_command_id("a#timer:unpaid")


async def test_timers_fire_once_across_restarts(
    store_url: str, clock: ManualClock
) -> None:
    store = open_store(store_url)
    engine = Engine(store, flows.registry(), deployments=False)
    for i in range(5):
        await engine.start("sales", flows.Buy(i), instance_id=f"i{i}")
    clock.advance(flows.UNPAID_AFTER + timedelta(seconds=1))
    # A first service claims and fires but dies before it records the outcome.
    box = store.outbox()
    claimed = box.claim("timer", now=clock.now(), lease=1_000_000, limit=2)
    await TimerService(engine, clock=clock)._deliver(claimed)
    await engine.close()
    # Nothing survives a memory store's process: that one is reused.
    memory = store_url.startswith("memory")
    restarted = store if memory else open_store(store_url)
    engine = Engine(restarted, flows.registry(), deployments=False)
    clock.advance(timedelta(seconds=2))  # the dead service's lease runs out
    service = TimerService(engine, clock=clock)
    assert await service.run_once() == 5
    assert await service.run_once() == 0
    for i in range(5):
        assert await _expired(engine, f"i{i}") == 1
    assert {e.status for e in restarted.outbox().entries(kind="timer")} == {"done"}
    await engine.close()


async def test_a_timer_cancelled_by_a_command_never_fires(
    engine: Engine, timers: TimerService, clock: ManualClock
) -> None:
    await engine.start("sales", flows.Buy(5), instance_id="a")
    await engine.send("a", flows.Drop())
    clock.advance(flows.UNPAID_AFTER * 10)
    assert await timers.run_once() == 0
    assert (await engine.get("a")).status == "running"
    assert await _expired(engine, "a") == 0


async def test_timers_are_cancelled_when_the_instance_ends(
    engine: Engine, store: EventStore, clock: ManualClock
) -> None:
    await engine.start("sales", flows.Buy(5), instance_id="a")
    await engine.start("sales", flows.Buy(5), instance_id="b")
    await engine.cancel("b", reason="test", by="tests")
    from .test_runner import EffectRunner  # the effect completes "a"

    await EffectRunner(engine, flows.handlers(flows.Gateway()), clock=clock).run_once()
    assert (await engine.get("a")).status == "completed"
    statuses = {e.id: e.status for e in store.outbox().entries(kind="timer")}
    assert statuses == {"a#timer:unpaid": "cancelled", "b#timer:unpaid": "cancelled"}
    clock.advance(flows.UNPAID_AFTER * 2)
    assert await TimerService(engine, clock=clock).run_once() == 0


@pytest.mark.postgres
async def test_two_timer_services_on_postgres_never_fire_the_same_timer(
    pg_url: str,
) -> None:
    clock = ManualClock()
    engines = [
        Engine(open_store(pg_url), flows.registry(), deployments=False)
        for _ in range(2)
    ]
    n = 200
    await asyncio.gather(
        *(
            engines[0].start("sales", flows.Buy(i), instance_id=f"i{i}")
            for i in range(n)
        )
    )
    clock.advance(flows.UNPAID_AFTER + timedelta(seconds=1))
    services = [TimerService(e, clock=clock) for e in engines]
    claimed: list[list[str]] = [[], []]
    for k, s in enumerate(services):
        box = s._outbox
        original = box.claim

        def spy(*a: object, _o=original, _k=k, **kw: object):  # type: ignore[no-untyped-def]
            got = _o(*a, **kw)
            claimed[_k].extend(e.id for e in got)
            return got

        box.claim = spy  # type: ignore[method-assign]
    # Small batches so that both services race over the same rows.
    for s in services:
        s.settings = type(s.settings)(batch=7, lease=600.0, poll=0.01)

    async def drain(s: TimerService) -> None:
        while await s.run_once():
            pass

    await asyncio.gather(*(drain(s) for s in services))
    both = claimed[0] + claimed[1]
    assert len(both) == len(set(both)) == n
    assert claimed[0] and claimed[1]
    for i in range(n):
        assert await _expired(engines[1], f"i{i}") == 1
    for e in engines:
        await e.close()
