"""The testing kit itself: given/when/then, strategies, assert_replay_stable."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal

import msgspec
import pytest
from hypothesis import find, settings
from hypothesis import given as for_all
from hypothesis import strategies as st

from engine import CommandRejected, Context, Workflow
from engine.core.errors import UnsupportedFieldType, WorkflowDefinitionError
from engine.demo.orders import (
    CheckFraud,
    FraudChecked,
    OrderPlaced,
    Pay,
    PaymentReceived,
    PlaceOrder,
    Ship,
    release2,
    v1,
    v2,
)
from engine.testing import (
    assert_replay_stable,
    commands,
    given,
    rejected,
    values,
)

PLACED = OrderPlaced("o1", 10, "ann", 0.0, "EUR")
RELEASE = release2()
STORE = {"types": RELEASE.types, "upcasters": RELEASE.upcasters}

# ------------------------------------------------------- given / when / then


def test_then_returns_the_state_after_the_decided_events() -> None:
    state = given(v1, [PLACED]).when(Pay(10)).then(PaymentReceived(10))
    assert (state.stage, state.paid) == ("paid", 10)
    listed = given(v1, [PLACED]).when(Pay(10)).then([PaymentReceived(10)])
    assert listed == state
    with pytest.raises(AssertionError, match="expected no events"):
        given(v1, [PLACED]).when(Pay(10)).then()


def test_a_different_event_is_shown_with_its_first_difference() -> None:
    with pytest.raises(AssertionError) as caught:
        given(v1, [PLACED]).when(Pay(10)).then(PaymentReceived(11))
    text = str(caught.value)
    assert text.startswith("orders@1: given [OrderPlaced(order_id='o1'")
    assert "when Pay(amount=10)" in text
    assert "expected [PaymentReceived(amount=11)]" in text
    assert "decided  [PaymentReceived(amount=10)]" in text
    assert "first difference at event 0" in text


def test_rejections_are_expected_and_matched() -> None:
    state = given(v1).when(Pay(10)).then(rejected("cannot pay"))
    assert state.stage == "new"
    with pytest.raises(AssertionError, match="but it was rejected: cannot pay"):
        given(v1).when(Pay(10)).then(PaymentReceived(10))
    with pytest.raises(AssertionError, match="but the reason was 'cannot pay"):
        given(v1).when(Pay(10)).then(rejected("too late"))
    with pytest.raises(AssertionError, match="expected it to be rejected, but it"):
        given(v1, [PLACED]).when(Pay(10)).then(rejected())


def test_the_context_is_fixed_and_can_be_set() -> None:
    at = datetime(2030, 5, 6, tzinfo=UTC)
    placed = OrderPlaced("o2", 5, "bo", at.timestamp(), "EUR")
    given(v2, now=at).when(PlaceOrder("o2", 5, "bo")).then(placed)
    placed_v2 = [OrderPlaced("o2", 5, "bo", 0.0, "EUR")]
    given(v2, placed_v2, random=0.99).when(CheckFraud()).then(FraudChecked(0.99, False))
    with pytest.raises(TypeError, match="not clock"):
        given(v2, clock=at)


def test_a_scenario_reads_the_config_it_is_given_or_the_defaults() -> None:
    from engine.demo.orders import OrdersConfig

    placed = [OrderPlaced("o3", 5, "bo", 0.0, "EUR")]
    # Defaults: the fraud limit is 0.97, so a score of 0.5 passes...
    given(v2, placed, random=0.5).when(CheckFraud()).then(FraudChecked(0.5, True))
    # ...and a tighter limit given as the config refuses it.
    tight = OrdersConfig(fraud_limit=0.4)
    given(v2, placed, random=0.5, config=tight).when(CheckFraud()).then(
        FraudChecked(0.5, False)
    )


class Tagged(msgspec.Struct):
    tags: set[str]


def test_an_event_that_does_not_survive_storage_is_reported() -> None:
    class Odd(msgspec.Struct):
        when: Any

    wf = Workflow(
        name="odd",
        version=1,
        state_type=Tagged,
        initial=lambda: Tagged(set()),
        decide=lambda s, c, x: [Odd(when=("a", 1))],  # a tuple reads back a list
        evolve=lambda s, e: s,
        status=lambda s: "running",
    )
    with pytest.raises(AssertionError, match=r"reads back as Odd\(when=\['a', 1\]\)"):
        given(wf).when(None).then(Odd(when=("a", 1)))


# ----------------------------------------------------------------- strategies


class Line(msgspec.Struct):
    sku: Annotated[str, msgspec.Meta(min_length=2, max_length=4)]
    qty: Annotated[int, msgspec.Meta(ge=1, le=9)]
    kind: Literal["a", "b"] = "a"
    note: str | None = None


class Basket(msgspec.Struct):
    lines: list[Line]
    prices: dict[str, float]
    at: datetime
    local: Annotated[datetime, msgspec.Meta(tz=False)]
    slot: time


@settings(max_examples=60, deadline=None)
@for_all(values(Basket))
def test_values_follow_the_msgspec_types_and_constraints(basket: Basket) -> None:
    # what is drawn decodes back as the type: every constraint holds
    data = msgspec.json.encode(basket)
    assert msgspec.json.decode(data, type=Basket) == basket
    assert all(1 <= line.qty <= 9 and 2 <= len(line.sku) <= 4 for line in basket.lines)


@settings(max_examples=30, deadline=None)
@for_all(values(Basket, overrides={Line: {"sku": st.just("tea")}, datetime: st.none()}))
def test_overrides_replace_a_type_or_some_fields(basket: Any) -> None:
    assert basket.at is None
    assert all(line.sku == "tea" and 1 <= line.qty <= 9 for line in basket.lines)


class Opaque:
    pass


class Holder(msgspec.Struct):
    thing: Opaque


def test_bad_overrides_and_unknown_types_are_named() -> None:
    with pytest.raises(UnsupportedFieldType, match="fields colour that Line does not"):
        values(Line, overrides={Line: {"colour": st.just("red")}})
    with pytest.raises(UnsupportedFieldType, match=r"Opaque in Holder\.thing"):
        values(Holder)
    found = find(values(Holder, overrides={Opaque: st.builds(Opaque)}), bool)
    assert isinstance(found.thing, Opaque)


@settings(max_examples=40, deadline=None)
@for_all(commands(v2, max_commands=4))
def test_commands_begin_with_a_start_input(cmds: list[Any]) -> None:
    assert isinstance(cmds[0], PlaceOrder)
    assert all(isinstance(c, (CheckFraud, Pay, Ship)) for c in cmds[1:])
    assert len(cmds) <= 5


def test_a_workflow_without_input_types_is_told_how_to_name_them() -> None:
    bare = dataclasses.replace(v1, inputs=(), commands=())
    with pytest.raises(WorkflowDefinitionError, match=r"Workflow\(inputs="):
        commands(bare)


# ------------------------------------------------------- assert_replay_stable

orders = commands(
    v2,
    overrides={
        PlaceOrder: {"amount": st.integers(1, 3)},
        Pay: {"amount": st.integers(1, 3)},
    },
)


@settings(max_examples=60, deadline=None)
@for_all(orders, st.floats(0, 1, exclude_max=True))
def test_the_demo_workflow_replays_stably(cmds: list[Any], random: float) -> None:
    assert_replay_stable(v2, cmds, random=random, **STORE)


HISTORY = [PlaceOrder("o1", 10), CheckFraud(), Pay(10), Ship()]


def test_a_hotfix_that_changes_old_states_is_found_at_its_position() -> None:
    def evolve(state: Any, e: Any) -> Any:
        return state if isinstance(e, PaymentReceived) else v2.evolve(state, e)

    hotfix = dataclasses.replace(v2, evolve=evolve)
    with pytest.raises(AssertionError) as caught:
        assert_replay_stable(v2, HISTORY, new=hotfix, **STORE)
    text = str(caught.value)
    assert "differently from position 4 (PaymentReceived)" in text
    assert "old code: Order(stage='paid'" in text
    assert "new code: Order(stage='checked'" in text
    refactor = dataclasses.replace(v2, evolve=lambda s, e: v2.evolve(s, e))
    assert_replay_stable(v2, HISTORY, new=refactor, **STORE)


def test_another_version_is_not_compared_by_replay() -> None:
    with pytest.raises(WorkflowDefinitionError, match="orders@2 and orders@1"):
        assert_replay_stable(v2, HISTORY, new=v1, **STORE)


def test_a_decider_reading_outside_ctx_fails_after_a_restart() -> None:
    counter = itertools.count()

    def decide(state: Any, cmd: Any, ctx: Context) -> Any:
        if isinstance(cmd, Pay):  # a hidden source: not recorded in ctx
            return [PaymentReceived(next(counter))]
        return v1.decide(state, cmd, ctx)

    wf = dataclasses.replace(v1, decide=decide, evolve=_lenient)
    with pytest.raises(AssertionError) as caught:
        assert_replay_stable(wf, [PlaceOrder("o1", 10), Pay(1), Pay(2)], **STORE)
    text = str(caught.value)
    assert "restarted after position 2 (before command 1)" in text
    assert "decided [PaymentReceived(amount=" in text


def _lenient(state: Any, e: Any) -> Any:
    if isinstance(e, PaymentReceived):  # accept any number of payments
        return msgspec.structs.replace(state, paid=state.paid + e.amount)
    return v1.evolve(state, e)


class Box(msgspec.Struct):
    seen: list[str] = msgspec.field(default_factory=list)


def test_a_decider_mutating_the_state_breaks_the_first_law() -> None:
    def decide(state: Box, cmd: Any, ctx: Context) -> list[Any]:
        state.seen.append("decided")  # mutates the live state in place
        return [PaymentReceived(1)]

    wf = Workflow(
        name="box",
        version=1,
        state_type=Box,
        initial=Box,
        decide=decide,
        evolve=lambda s, e: s,
        status=lambda s: "running",
    )
    with pytest.raises(AssertionError, match="folded from the log is not the live"):
        assert_replay_stable(wf, ["start", "again"], **STORE)


def test_a_rejected_start_or_command_is_skipped() -> None:
    assert_replay_stable(v1, [PlaceOrder("o", -1), Pay(1)], **STORE)
    assert_replay_stable(v1, [PlaceOrder("o", 1), Ship(), Pay(1), Ship()], **STORE)
    assert_replay_stable(v1, [], **STORE)


def test_commands_to_a_finished_instance_are_refused_as_the_engine_does() -> None:
    def decide(state: Any, cmd: Any, ctx: Context) -> list[Any]:
        if state.stage == "shipped":
            raise AssertionError("decided for a finished instance")
        return v1.decide(state, cmd, ctx)

    wf = dataclasses.replace(v1, decide=decide)
    assert_replay_stable(wf, [PlaceOrder("o", 1), Pay(1), Ship(), Pay(1)], **STORE)


def test_rejection_in_decide_does_not_hide_a_crash() -> None:
    def decide(state: Any, cmd: Any, ctx: Context) -> list[Any]:
        if isinstance(cmd, Ship):
            raise CommandRejected("no ship")
        raise RuntimeError("decider bug")

    wf = dataclasses.replace(v1, decide=decide)
    with pytest.raises(RuntimeError, match="decider bug"):
        assert_replay_stable(wf, [PlaceOrder("o", 1)], **STORE)
