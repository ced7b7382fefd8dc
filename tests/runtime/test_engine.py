"""The Engine on every adapter: start/send/get, pinning, idempotence, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine import (
    CommandRejected,
    Engine,
    EventStore,
    InstanceExists,
    UnknownInstance,
    UnknownWorkflow,
    WorkflowCodeError,
    WorkflowRegistry,
    open_store,
)
from engine.demo.orders import (
    CheckFraud,
    Order,
    OrderPlaced,
    Pay,
    PaymentReceived,
    PlaceOrder,
    Ship,
)
from engine.demo.orders import registry as orders_registry
from tests.runtime import counter
from tests.runtime.counter import Crash, Increment, Poison


async def test_start_send_get(engine: Engine, store: EventStore) -> None:
    info = await engine.start("orders", PlaceOrder("o-1", 30), instance_id="o-1")
    assert (info.instance_id, info.workflow, info.version) == ("o-1", "orders", 1)
    assert info.state == Order(stage="placed", order_id="o-1", amount=30)
    assert (info.position, info.status, info.applied) == (2, "running", True)

    paid = await engine.send("o-1", Pay(30))
    assert paid.state.stage == "paid" and paid.state.paid == 30
    assert paid.position == 3
    shipped = await engine.send("o-1", Ship("dhl"))
    assert (shipped.status, shipped.position) == ("completed", 4)

    got = await engine.get("o-1")
    assert got == shipped
    assert store.stream_position("o-1") == 4
    assert [r.type for r in store.read_stream("o-1")] == [
        "nonstop.Started",
        "OrderPlaced",
        "PaymentReceived",
        "OrderShipped",
    ]


async def test_start_without_id_makes_a_fresh_one(engine: Engine) -> None:
    a = await engine.start("orders", PlaceOrder("a", 1))
    b = await engine.start("orders", PlaceOrder("b", 1))
    assert a.instance_id != b.instance_id
    assert len(a.instance_id) == 32
    assert (await engine.get(b.instance_id)).state.order_id == "b"


async def test_version_is_pinned_at_start(engine: Engine) -> None:
    old = await engine.start("orders", PlaceOrder("old", 10), instance_id="old")
    assert old.version == 1
    engine.registry.set_current("orders", 2)
    new = await engine.start("orders", PlaceOrder("new", 10), instance_id="new")
    assert new.version == 2

    # The old instance still runs v1: no fraud check, pay straight away.
    with pytest.raises(CommandRejected, match="orders@1 does not handle CheckFraud"):
        await engine.send("old", CheckFraud())
    await engine.send("old", Pay(10))
    done = await engine.send("old", Ship())
    assert (done.version, done.status) == (1, "completed")

    # The new one runs v2: paying before the fraud check is refused.
    with pytest.raises(CommandRejected, match="placed"):
        await engine.send("new", Pay(10))
    checked = await engine.send("new", CheckFraud())
    assert checked.version == 2
    assert checked.state.fraud_score is not None

    # Rolling back routing does not move the v2 instance either.
    engine.registry.set_current("orders", 1)
    assert (await engine.get("new")).version == 2
    assert (await engine.get("old")).version == 1


async def test_explicit_version_at_start(engine: Engine) -> None:
    info = await engine.start("orders", PlaceOrder("x", 5), version=2)
    assert info.version == 2
    with pytest.raises(UnknownWorkflow) as err:
        await engine.start("orders", PlaceOrder("x", 5), version=9)
    assert "orders@1" in str(err.value) and "orders@2" in str(err.value)


async def test_unknown_workflow(engine: Engine, store: EventStore) -> None:
    with pytest.raises(UnknownWorkflow, match="'shipping'"):
        await engine.start("shipping", PlaceOrder("x", 5), instance_id="x")
    assert store.last_global_position() == 0


async def test_unknown_instance(engine: Engine) -> None:
    with pytest.raises(UnknownInstance, match="'ghost'"):
        await engine.send("ghost", Pay(1))
    with pytest.raises(UnknownInstance):
        await engine.get("ghost")
    with pytest.raises(UnknownInstance):
        await engine.history("ghost")


# ------------------------------------------------------------- idempotence


async def test_repeated_command_id_is_not_applied_twice(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("orders", PlaceOrder("o", 10), instance_id="o")
    first = await engine.send("o", Pay(10), command_id="pay-1")
    assert first.applied
    again = await engine.send("o", Pay(10), command_id="pay-1")
    assert not again.applied
    assert again.state == first.state and again.position == first.position
    assert store.stream_position("o") == 3
    # Another id is a new command: paying twice is refused by the decider.
    with pytest.raises(CommandRejected):
        await engine.send("o", Pay(10), command_id="pay-2")


async def test_command_ids_are_remembered_by_a_new_engine(
    engine: Engine, store_url: str, store: EventStore
) -> None:
    await engine.start("orders", PlaceOrder("o", 10), instance_id="o", command_id="s")
    await engine.send("o", Pay(10), command_id="pay-1")
    other = Engine(
        store if store_url == "memory://" else open_store(store_url),
        orders_registry(),
    )
    try:
        again = await other.send("o", Pay(10), command_id="pay-1")
        assert (again.applied, again.position) == (False, 3)
        restart = await other.start(
            "orders", PlaceOrder("o", 10), instance_id="o", command_id="s"
        )
        assert (restart.applied, restart.position) == (False, 3)
    finally:
        if store_url != "memory://":
            await other.close()
    assert store.stream_position("o") == 3


async def test_repeated_start_with_the_same_command_id(
    engine: Engine, store: EventStore
) -> None:
    first = await engine.start(
        "orders", PlaceOrder("o", 10), instance_id="o", command_id="start-o"
    )
    again = await engine.start(
        "orders", PlaceOrder("o", 10), instance_id="o", command_id="start-o"
    )
    assert first.applied and not again.applied
    assert again.state == first.state and again.position == 2
    assert store.stream_position("o") == 2


@pytest.mark.parametrize("command_id", [None, "another"])
async def test_start_with_a_taken_id(
    engine: Engine, store: EventStore, command_id: str | None
) -> None:
    await engine.start("orders", PlaceOrder("o", 10), instance_id="o", command_id="s")
    with pytest.raises(InstanceExists, match="'o'"):
        await engine.start(
            "orders", PlaceOrder("o", 99), instance_id="o", command_id=command_id
        )
    assert store.stream_position("o") == 2
    assert (await engine.get("o")).state.amount == 10


# ------------------------------------------------------------ refusals


async def test_rejection_carries_the_reason_and_writes_nothing(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("orders", PlaceOrder("o", 10), instance_id="o")
    before = store.last_global_position()
    with pytest.raises(CommandRejected) as err:
        await engine.send("o", Pay(7), command_id="bad-pay")
    assert err.value.reason == "payment 7 does not match 10"
    assert err.value.instance_id == "o"
    assert err.value.command == Pay(7)
    assert "'o'" in str(err.value) and "Pay" in str(err.value)
    assert store.stream_position("o") == 2
    assert store.last_global_position() == before
    # A rejected command id is not remembered: a corrected retry applies.
    ok = await engine.send("o", Pay(10), command_id="bad-pay")
    assert ok.applied and ok.state.stage == "paid"


async def test_rejected_start_writes_nothing(engine: Engine, store: EventStore) -> None:
    with pytest.raises(CommandRejected, match="amount must be positive"):
        await engine.start("orders", PlaceOrder("o", 0), instance_id="o")
    assert store.stream_position("o") == 0
    with pytest.raises(UnknownInstance):
        await engine.get("o")
    # The id is still free.
    assert (await engine.start("orders", PlaceOrder("o", 1), instance_id="o")).applied


async def test_completed_instance_rejects_commands(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("orders", PlaceOrder("o", 10), instance_id="o")
    await engine.send("o", Pay(10))
    await engine.send("o", Ship())
    with pytest.raises(CommandRejected, match="completed"):
        await engine.send("o", Ship())
    assert store.stream_position("o") == 4


async def test_failed_instance_rejects_commands(
    engine: Engine, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.registry.set_current("orders", 2)
    # The fraud score comes from ctx.random(): force a score above the limit.
    monkeypatch.setattr("engine.core.workflow._random.random", lambda: 0.99)
    await engine.start("orders", PlaceOrder("o", 10), instance_id="o")
    assert (await engine.send("o", CheckFraud())).status == "failed"
    with pytest.raises(CommandRejected, match="failed"):
        await engine.send("o", Pay(10))
    assert store.stream_position("o") == 3
    [*_, checked] = await engine.history("o")
    assert checked.ctx == [["random", 0.99], ["flag", ["@config", 0]]]


@pytest.fixture
async def counter_engine(store: EventStore) -> AsyncIterator[Engine]:
    e = Engine(store, counter.registry())
    yield e
    await e.close()


@pytest.mark.parametrize(("cmd", "where"), [(Crash(), "decide"), (Poison(), "evolve")])
async def test_workflow_bug_is_a_code_error_and_writes_nothing(
    counter_engine: Engine, store: EventStore, cmd: object, where: str
) -> None:
    await counter_engine.start("counter", counter.Begin(5), instance_id="c")
    await counter_engine.send("c", Increment())
    before = store.last_global_position()
    with pytest.raises(WorkflowCodeError) as err:
        await counter_engine.send("c", cmd, command_id="x")
    assert err.value.where == where
    assert (err.value.workflow, err.value.instance_id) == ("counter@1", "c")
    assert f"counter@1 {where} failed" in str(err.value)
    assert store.stream_position("c") == 3
    assert store.last_global_position() == before
    # The instance is unharmed and still takes commands.
    info = await counter_engine.send("c", Increment(2))
    assert (info.state.n, info.position) == (8, 4)


# ---------------------------------------------------------------- history


async def test_history_returns_metadata(engine: Engine) -> None:
    engine.registry.set_current("orders", 2)
    await engine.start(
        "orders", PlaceOrder("o", 10), instance_id="o", command_id="c-start"
    )
    checked = await engine.send("o", CheckFraud(), command_id="c-fraud")
    if checked.status == "running":
        await engine.send("o", Pay(10), command_id="c-pay", causation_id="m-7")
    hist = await engine.history("o")
    assert {h.workflow for h in hist} == {"orders@2"}
    assert [h.position for h in hist] == list(range(1, len(hist) + 1))
    started, placed, fraud = hist[:3]
    assert started.type == "nonstop.Started"
    assert (started.event.workflow, started.event.version) == ("orders", 2)
    assert started.command_id == placed.command_id == "c-start"
    assert placed.correlation_id == "c-start"
    assert isinstance(placed.event, OrderPlaced)
    assert placed.ctx is not None and placed.ctx[0][0] == "now"
    assert placed.ctx[0][1] / 1e6 == pytest.approx(placed.event.placed_at)
    assert started.ctx is None
    assert fraud.command_id == "c-fraud"
    assert fraud.ctx == [
        ["random", checked.state.fraud_score],
        ["flag", ["@config", 0]],  # orders@2's config version (defaults)
    ]
    assert fraud.event.score == checked.state.fraud_score
    assert all(h.recorded_at > 0 for h in hist)
    if checked.status == "running":
        pay = hist[3]
        assert isinstance(pay.event, PaymentReceived)
        assert (pay.command_id, pay.causation_id, pay.ctx) == ("c-pay", "m-7", None)


# -------------------------------------------------------------- instances


async def test_instances_filters(engine: Engine) -> None:
    await engine.start("orders", PlaceOrder("a", 1), instance_id="a")
    await engine.start("orders", PlaceOrder("b", 1), instance_id="b")
    await engine.send("b", Pay(1))
    await engine.send("b", Ship())
    engine.registry.set_current("orders", 2)
    await engine.start("orders", PlaceOrder("c", 1), instance_id="c")

    def ids(infos: list) -> list[str]:  # type: ignore[type-arg]
        return [i.instance_id for i in infos]

    assert ids(await engine.instances()) == ["a", "b", "c"]
    assert ids(await engine.instances(workflow="orders")) == ["a", "b", "c"]
    assert ids(await engine.instances(workflow="other")) == []
    assert ids(await engine.instances(version=1)) == ["a", "b"]
    assert ids(await engine.instances(version=2)) == ["c"]
    assert ids(await engine.instances(status="completed")) == ["b"]
    assert ids(await engine.instances(status="running", version=1)) == ["a"]
    [b] = await engine.instances(status="completed")
    assert (b.position, b.state.stage) == (4, "shipped")


async def test_instances_sees_other_engines_writes(
    engine: Engine, store: EventStore
) -> None:
    reg = WorkflowRegistry()
    reg.register(*[orders_registry().get("orders", v) for v in (1, 2)])
    other = Engine(store, reg)
    await other.start("orders", PlaceOrder("x", 1), instance_id="x")
    [x] = await engine.instances()
    assert (x.instance_id, x.version) == ("x", 2)


async def test_repeat_after_get_answers_the_current_state(store: EventStore) -> None:
    """A command id learnt by catching up must come with the state it led to."""
    a = Engine(store, counter.registry())
    b = Engine(store, counter.registry())
    await a.start("counter", counter.Begin(), instance_id="c")
    await b.send("c", Increment(), command_id="x")
    assert (await a.get("c")).position == 3
    again = await a.send("c", Increment(), command_id="x")
    assert (again.applied, again.position, again.state.n) == (False, 3, 1)
    await a.close()


async def test_evolve_failing_on_replay_is_a_code_error(store: EventStore) -> None:
    import dataclasses

    from engine import WorkflowCodeError, WorkflowRegistry
    from engine.demo.orders import v1

    first = Engine(store, orders_registry())  # not closed: it would close the store
    await first.start("orders", PlaceOrder("o", 10), instance_id="o")

    def broken(state: object, e: object) -> object:
        raise RuntimeError("bad reducer")

    reg = WorkflowRegistry()
    reg.register(dataclasses.replace(v1, evolve=broken))
    second = Engine(store, reg)
    with pytest.raises(WorkflowCodeError, match="replaying position 2"):
        await second.get("o")


async def test_unencodable_start_input_is_rejected(
    engine: Engine, store: EventStore
) -> None:
    with pytest.raises(CommandRejected, match="cannot be stored"):
        await engine.start("orders", object(), instance_id="x")
    assert store.stream_position("x") == 0
