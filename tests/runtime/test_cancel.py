"""Cancelling instances on every adapter: status, audit, idempotence, replay."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    CommandRejected,
    Context,
    Engine,
    EventStore,
    UnknownInstance,
    WorkflowRegistry,
    event,
    open_store,
)
from engine.core.events import Cancelled
from engine.deploy.stats import engine_stats
from projections.instances import InstancesReadModel
from tests.runtime import counter
from tests.runtime.counter import Begin, Count, Finish, Increment


@event("tests.cancel.Refunded")
class Refunded(msgspec.Struct, frozen=True):
    amount: int


def _on_cancel(state: Count, cancel: Any, ctx: Context) -> list[Any]:
    if cancel.reason == "refuse":
        raise CommandRejected("this counter refuses to be cancelled")
    return [Refunded(state.n)]


def _evolve(state: Count, e: Any) -> Count:
    if isinstance(e, Refunded):
        return Count(state.n - e.amount, state.done)
    return counter.evolve(state, e)


def _registry(*, handled: bool = False, snapshot_every: int = 0) -> WorkflowRegistry:
    wf = counter.counter(snapshot_every=snapshot_every)
    if handled:
        wf = dataclasses.replace(wf, evolve=_evolve, on_cancel=_on_cancel)
    reg = WorkflowRegistry()
    reg.register(wf)
    return reg


@pytest.fixture
async def engine(store: EventStore) -> Any:
    e = Engine(store, _registry())
    yield e
    await e.close()


async def test_cancel_ends_the_instance_and_is_audited(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("counter", Begin(2), instance_id="c-1")
    info = await engine.cancel("c-1", reason="customer left", by="ops:ana")
    assert (info.status, info.position, info.applied) == ("cancelled", 3, True)
    assert info.state == Count(2)
    assert [r.type for r in store.read_stream("c-1")][-1] == "nonstop.Cancelled"
    history = await engine.history("c-1")
    assert history[-1].event == Cancelled("counter", 1, "customer left", "ops:ana")
    assert (await engine.get("c-1")).status == "cancelled"


async def test_a_cancelled_instance_takes_no_more_commands(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("counter", Begin(), instance_id="c-1")
    await engine.cancel("c-1", reason="stop")
    with pytest.raises(CommandRejected, match="the instance is cancelled"):
        await engine.send("c-1", Increment(1))
    assert store.stream_position("c-1") == 3


async def test_cancelling_twice_or_a_finished_instance_writes_nothing(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("counter", Begin(), instance_id="c-1")
    await engine.cancel("c-1", reason="stop")
    with pytest.raises(CommandRejected, match="the instance is cancelled; only a"):
        await engine.cancel("c-1", reason="again")
    assert store.stream_position("c-1") == 3

    await engine.start("counter", Begin(), instance_id="c-2")
    await engine.send("c-2", Finish())
    with pytest.raises(CommandRejected, match="the instance is completed; only a"):
        await engine.cancel("c-2", reason="late")
    assert store.stream_position("c-2") == 3


async def test_cancel_needs_a_reason_and_an_instance(engine: Engine) -> None:
    await engine.start("counter", Begin(), instance_id="c-1")
    with pytest.raises(CommandRejected, match="needs a reason"):
        await engine.cancel("c-1", reason="  ")
    assert (await engine.get("c-1")).status == "running"
    with pytest.raises(UnknownInstance):
        await engine.cancel("nope", reason="x")


async def test_cancel_with_a_command_id_is_idempotent(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("counter", Begin(), instance_id="c-1")
    first = await engine.cancel("c-1", reason="stop", command_id="k-1")
    again = await engine.cancel("c-1", reason="stop", command_id="k-1")
    assert (first.applied, again.applied) == (True, False)
    assert again.status == "cancelled"
    assert store.stream_position("c-1") == 3
    # Replayed from the store, the instance still knows the command id.
    engine.loader.forget("c-1")
    third = await engine.cancel("c-1", reason="stop", command_id="k-1")
    assert third.applied is False
    assert store.stream_position("c-1") == 3


async def test_replay_and_snapshots_keep_it_cancelled(store: EventStore) -> None:
    e = Engine(store, _registry(snapshot_every=1))
    try:
        await e.start("counter", Begin(), instance_id="c-1")
        await e.send("c-1", Increment(3))
        await e.cancel("c-1", reason="stop", by="me")
        assert await e.write_snapshot("c-1") == 4
        assert store.load_snapshot("c-1") is not None
        e.loader.forget("c-1")
        got = await e.get("c-1")
        assert (got.status, got.state, got.position) == ("cancelled", Count(3), 4)
        with pytest.raises(CommandRejected, match="cancelled"):
            await e.send("c-1", Increment(1))
    finally:
        await e.close()


async def test_a_workflow_can_handle_its_own_cancel(store: EventStore) -> None:
    e = Engine(store, _registry(handled=True))
    try:
        await e.start("counter", Begin(5), instance_id="c-1")
        info = await e.cancel("c-1", reason="refund", by="ops")
        assert (info.status, info.state, info.position) == ("cancelled", Count(0), 4)
        types = [r.type for r in store.read_stream("c-1")]
        assert types[-2:] == ["tests.cancel.Refunded", "nonstop.Cancelled"]
        e.loader.forget("c-1")
        assert (await e.get("c-1")).state == Count(0)

        await e.start("counter", Begin(5), instance_id="c-2")
        with pytest.raises(CommandRejected, match="refuses to be cancelled"):
            await e.cancel("c-2", reason="refuse")
        assert store.stream_position("c-2") == 2
    finally:
        await e.close()


async def test_cancelled_instances_in_listings_read_model_and_counts(
    durable_url: str,
) -> None:
    reg = _registry()
    async with Engine(durable_url, reg) as e:
        for i in range(3):
            await e.start("counter", Begin(), instance_id=f"c-{i}")
        await e.send("c-1", Finish())
        await e.cancel("c-2", reason="stop")
        listed = await e.instances(status="cancelled")
        assert [i.instance_id for i in listed] == ["c-2"]
        (stats,) = await engine_stats(e)
        assert (stats.running, stats.completed, stats.cancelled) == (1, 1, 1)
    with InstancesReadModel(durable_url, reg) as model:
        by_id = {i.instance_id: i.status for i in model.instances()}
        assert by_id == {"c-0": "running", "c-1": "completed", "c-2": "cancelled"}
        (stats,) = model.version_stats()
        assert (stats.running, stats.completed, stats.cancelled) == (1, 1, 1)
    # The read model folds later events after reloading its rows.
    async with Engine(durable_url, reg) as e:
        await e.cancel("c-0", reason="stop")
    with InstancesReadModel(durable_url, reg) as model:
        (stats,) = model.version_stats()
        assert (stats.running, stats.cancelled) == (0, 2)


_steps = st.lists(st.sampled_from(["inc", "cancel", "finish"]), min_size=1, max_size=12)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_steps)
async def test_replay_agrees_with_the_live_answers(steps: list[str]) -> None:
    """Law: whatever was accepted, a fresh replay gives the same instance."""
    store = open_store("memory://")
    e = Engine(store, _registry(handled=True))
    await e.start("counter", Begin(1), instance_id="p")
    last = await e.get("p")
    for step in steps:
        try:
            if step == "inc":
                last = await e.send("p", Increment(1))
            elif step == "finish":
                last = await e.send("p", Finish())
            else:
                last = await e.cancel("p", reason="law")
        except CommandRejected:
            assert last.status != "running"
    e.loader.forget("p")
    assert await e.get("p") == last
    await e.close()
