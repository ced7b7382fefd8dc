"""Versioned effects: delivered to the version that asked; retire and versions
check the outbox."""

from __future__ import annotations

import asyncio

import pytest

from engine import Engine, EventStore
from engine.deploy import Deployments, RetireRefused, ScanStats
from engine.runtime.effects import EffectRunner
from engine.runtime.handlers import EffectHandlers, ManualClock, effect_handler
from engine.store.retry import Backoff

from . import flows

SRC = "tests.effects.flows"


async def test_a_pending_effect_of_v1_reaches_v1_after_v2_is_current(
    store: EventStore, clock: ManualClock
) -> None:
    engine = Engine(store, flows.registry(v2=True), deployments=False)
    await engine.start("sales", flows.Buy(5), instance_id="old", version=1)
    await engine.start("sales", flows.Buy(6), instance_id="new")
    seen: list[tuple[int, str]] = []
    handlers = EffectHandlers()
    fast = Backoff(first=0.001, longest=0.001)
    for v in (1, 2):

        def charge(req: flows.Charge, key: str, _v: int = v) -> int:
            seen.append((_v, key))
            return req.amount * 10 * _v

        effect_handler("Charge", version=v, backoff=fast, registry=handlers)(charge)
    await EffectRunner(engine, handlers, clock=clock).run_once()
    assert sorted(seen) == [(1, "old@2#1"), (2, "new@2#1")]
    old, new = await engine.get("old"), await engine.get("new")
    assert (old.version, old.state.paid) == (1, 50)
    assert (new.version, new.state.paid) == (2, 120)
    [paid] = [e for e in await engine.history("old") if isinstance(e.event, flows.Paid)]
    assert paid.workflow == "sales@1"
    await engine.close()


def test_retire_is_refused_while_the_version_has_pending_effects(
    store: EventStore,
) -> None:
    deployments = Deployments(store, poll_interval=0.0)
    deployments.deploy("sales", 1, f"{SRC}:sales_v1")

    async def buy() -> None:
        engine = Engine(store, flows.registry(v2=True))
        await engine.start("sales", flows.Buy(5), instance_id="a")
        await engine.send("a", flows.Drop())  # no timer left, one effect pending
        await engine.cancel("a", reason="test", by="tests")  # no instance runs

    asyncio.run(buy())
    deployments.deploy("sales", 2, f"{SRC}:sales_v2")
    stats = ScanStats(store, flows.registry(v2=True))
    with pytest.raises(RetireRefused, match=r"1 effect\(s\) still wait"):
        deployments.retire("sales", 1, stats)
    assert store.outbox().cancel("a@2#1", 0)
    deployments.retire("sales", 1, stats)
    assert deployments.view.workflow("sales").deployments[1].state == "retired"
