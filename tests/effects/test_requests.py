"""What a decider asks for: outbox operations derived from the decision."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from engine import Engine, WorkflowDefinitionError
from engine.core.effects import CancelTimers, OutboxItem
from engine.core.workflow import Context

from . import flows


def test_requests_get_ids_from_the_decisions_last_position() -> None:
    ctx = Context("i", "sales@1")
    ctx.request(flows.Charge("i", 3), version=2)
    ctx.after(timedelta(seconds=5), flows.Expire(), key="k")
    ctx.at(datetime(2030, 1, 1, tzinfo=UTC), flows.Note())
    ctx.cancel_timer("old")
    effect, keyed, plain, cancel = ctx.requests.ops("i", "sales@1", 7)
    assert isinstance(effect, OutboxItem) and isinstance(keyed, OutboxItem)
    assert (effect.id, effect.kind, effect.name, effect.version, effect.due_at) == (
        "i@7#1",
        "effect",
        "Charge",
        2,
        0,
    )
    assert msgspec.msgpack.decode(effect.payload, type=flows.Charge).amount == 3
    assert keyed.id == "i#timer:k" and keyed.name == "tests.effects.flows:Expire"
    [(kind, now)] = ctx.recorded  # after() read the clock, recorded for replay
    assert kind == "now" and keyed.due_at == int(now) + 5_000_000
    assert isinstance(plain, OutboxItem) and plain.id == "i@7#3"
    assert plain.due_at == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    assert cancel == CancelTimers("i", ("i#timer:old",))


def test_bad_requests_are_refused_with_the_value() -> None:
    ctx = Context("i", "sales@1")
    with pytest.raises(WorkflowDefinitionError, match="version=0"):
        ctx.request(flows.Charge("i", 1), version=0)
    with pytest.raises(WorkflowDefinitionError, match="aware datetime"):
        ctx.at(datetime(2030, 1, 1), flows.Note())
    with pytest.raises(WorkflowDefinitionError, match="key must not be empty"):
        ctx.after(timedelta(0), flows.Note(), key="")
    ctx.request(object())
    with pytest.raises(WorkflowDefinitionError, match="cannot be stored"):
        ctx.requests.ops("i", "sales@1", 1)


async def test_a_request_without_an_event_is_refused(engine: Engine) -> None:
    def decide(state: flows.Sale, cmd: object, ctx: Context) -> list[object]:
        if isinstance(cmd, flows.Note):
            ctx.request(flows.Charge("x", 1))
            return []
        return flows.sales_v1.decide(state, cmd, ctx)  # type: ignore[return-value]

    wf = dataclasses.replace(flows.sales_v1, version=9, decide=decide)
    engine.registry.register(wf)
    await engine.start("sales", flows.Buy(1), instance_id="a", version=9)
    with pytest.raises(WorkflowDefinitionError, match="records no event"):
        await engine.send("a", flows.Note())
    assert [e.id for e in engine.store.outbox().entries(kind="effect")] == ["a@2#1"]
    assert (await engine.get("a")).position == 2
