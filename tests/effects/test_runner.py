"""The effect runner: handlers run after commit, results recorded once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from engine import Engine
from engine.core.effects import effect_command_id
from engine.runtime.effects import EffectRunner, Effects, Settings
from engine.runtime.handlers import EffectHandlers, ManualClock, effect_handler
from engine.store.retry import Backoff

from . import flows


async def test_a_result_is_recorded_as_a_command_once(
    engine: Engine, runner: EffectRunner, gateway: flows.Gateway
) -> None:
    await engine.start("sales", flows.Buy(5), instance_id="a")
    assert gateway.calls == {}  # nothing runs before a runner claims it
    assert await runner.run_once() == 1
    info = await engine.get("a")
    assert info.status == "completed" and info.state.paid == 5
    assert gateway.calls == {"a@2#1": 1}
    assert await runner.run_once() == 0
    [paid] = [e for e in await engine.history("a") if isinstance(e.event, flows.Paid)]
    assert paid.command_id == effect_command_id("a@2#1")
    entry = engine.store.outbox().get("a@2#1")
    assert entry is not None and (entry.status, entry.attempts) == ("done", 1)


async def test_failures_are_retried_with_the_same_key(
    engine: Engine, runner: EffectRunner, gateway: flows.Gateway
) -> None:
    gateway.fail_first = 2  # the third attempt succeeds (max_attempts=3)
    await engine.start("sales", flows.Buy(5), instance_id="a")
    await runner.run_once()
    assert gateway.calls == {"a@2#1": 3}
    assert (await engine.get("a")).status == "completed"
    entry = engine.store.outbox().get("a@2#1")
    assert entry is not None and entry.attempts == 3


async def test_a_handler_that_keeps_failing_fails_the_effect(
    engine: Engine, runner: EffectRunner, gateway: flows.Gateway
) -> None:
    gateway.fail_first = 3
    await engine.start("sales", flows.Buy(5), instance_id="a")
    await runner.run_once()
    info = await engine.get("a")
    assert info.status == "failed"
    [failed] = engine.store.outbox().entries(status="failed")
    assert failed.id == "a@2#1" and failed.attempts == 3
    assert failed.error is not None and "ConnectionError" in failed.error
    failure = [e for e in await engine.history("a") if e.type.endswith("Failed")]
    assert len(failure) == 1


async def test_a_retried_failed_effect_runs_again_and_its_result_is_not_recorded_twice(
    engine: Engine, runner: EffectRunner, gateway: flows.Gateway, clock: ManualClock
) -> None:
    gateway.fail_first = 3
    await engine.start("sales", flows.Buy(5), instance_id="a")
    await runner.run_once()
    box = engine.store.outbox()
    assert box.retry("a@2#1", clock.now())
    await runner.run_once()
    assert gateway.calls == {"a@2#1": 4}  # ran again, with the same key
    # The first outcome was already recorded under the effect's command id.
    outcomes = [e for e in await engine.history("a") if e.command_id == "effect:a@2#1"]
    assert len(outcomes) == 1


async def test_a_runner_that_died_before_finishing_leaves_it_to_the_next(
    engine: Engine, gateway: flows.Gateway, clock: ManualClock
) -> None:
    settings = Settings(lease=10.0)
    first = EffectRunner(
        engine, flows.handlers(gateway), clock=clock, settings=settings
    )
    await engine.start("sales", flows.Buy(5), instance_id="a")
    box = engine.store.outbox()
    claimed = box.claim("effect", now=clock.now(), lease=10_000_000, limit=10)
    outcomes = await first._deliver(claimed)  # ran and recorded, never finished
    assert [o[1] for o in outcomes] == ["done"]
    assert await first.run_once() == 0  # still leased
    clock.advance(timedelta(seconds=11))
    second = EffectRunner(engine, flows.handlers(gateway), clock=clock)
    assert await second.run_once() == 1
    assert gateway.calls == {"a@2#1": 2}
    paid = [e for e in await engine.history("a") if isinstance(e.event, flows.Paid)]
    assert len(paid) == 1
    entry = box.get("a@2#1")
    assert entry is not None and entry.status == "done"
    assert entry.error is None


async def test_an_effect_without_its_handler_stays_pending(
    engine: Engine, clock: ManualClock
) -> None:
    runner = EffectRunner(engine, EffectHandlers(), clock=clock)
    await engine.start("sales", flows.Buy(5), instance_id="a")
    assert await runner.run_once() == 0
    entry = engine.store.outbox().get("a@2#1")
    assert entry is not None and entry.status == "pending"
    assert (await engine.get("a")).status == "running"


async def test_async_handlers_time_out_per_attempt(
    engine: Engine, clock: ManualClock
) -> None:
    handlers = EffectHandlers()
    calls: list[str] = []
    never = asyncio.Event()

    @effect_handler(
        "Charge",
        timeout=0.01,
        max_attempts=2,
        backoff=Backoff(first=0.001, longest=0.001),
        registry=handlers,
    )
    async def hang(req: flows.Charge, key: str) -> int:
        calls.append(key)
        await never.wait()
        return 0

    runner = EffectRunner(engine, handlers, clock=clock)
    await engine.start("sales", flows.Buy(5), instance_id="a")
    await runner.run_once()
    assert calls == ["a@2#1", "a@2#1"]
    [failed] = engine.store.outbox().entries(status="failed")
    assert failed.error is not None and "TimeoutError" in failed.error


async def test_in_process_effects_run_beside_the_engine(
    store_url: str, gateway: flows.Gateway
) -> None:
    engine = Engine(store_url, flows.registry(), deployments=False, effects=True)
    assert engine.effects is not None
    runner = engine.effects.runner
    runner.handlers = flows.handlers(gateway)
    async with engine:
        await engine.start("sales", flows.Buy(5), instance_id="a")
        async with asyncio.timeout(30):
            while (await engine.get("a")).status == "running":
                await asyncio.sleep(0.01)
    assert gateway.calls == {"a@2#1": 1}
    assert not engine.effects.running


async def test_stop_waits_for_handlers_in_flight(
    engine: Engine, clock: ManualClock
) -> None:
    handlers = EffectHandlers()
    entered, release = asyncio.Event(), asyncio.Event()

    @effect_handler("Charge", registry=handlers)
    async def slow(req: flows.Charge) -> int:
        entered.set()
        await release.wait()
        return req.amount

    effects = Effects(engine, handlers, clock=clock)
    await engine.start("sales", flows.Buy(5), instance_id="a")
    effects.start()
    async with asyncio.timeout(30):
        await entered.wait()
        stopping = asyncio.create_task(effects.stop())
        await asyncio.sleep(0)
        assert not stopping.done()
        release.set()
        await stopping
    assert (await engine.get("a")).status == "completed"


def test_a_sync_engine_runs_effects_on_its_loop(sqlite_url: str) -> None:
    import time

    from engine import SyncEngine

    with SyncEngine(sqlite_url, flows.registry(), effects=True) as engine:
        engine.start("sales", flows.Remind(2), instance_id="r")
        deadline = time.monotonic() + 30
        while engine.get("r").state.notes < 2:
            assert time.monotonic() < deadline, "the timers never fired"
            time.sleep(0.01)
        assert engine.engine.effects is not None
        assert engine.engine.effects.running
    assert not engine.engine.effects.running
