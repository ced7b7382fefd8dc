"""The order workflow used by the demo, the tests and the benchmarks.

v1: place, pay, ship. v2 adds a fraud check between placing and paying; an
order that fails it ends rejected (failed).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from engine import CommandRejected, Context, Status, Workflow, WorkflowRegistry, event

__all__ = [
    "CheckFraud",
    "FraudChecked",
    "Order",
    "OrderPlaced",
    "OrderShipped",
    "Pay",
    "PaymentReceived",
    "PlaceOrder",
    "Ship",
    "registry",
    "v1",
    "v2",
]

Stage = Literal["new", "placed", "checked", "paid", "shipped", "rejected"]

# --------------------------------------------------------------- commands


class PlaceOrder(msgspec.Struct, frozen=True):
    order_id: str
    amount: int
    customer: str = "anonymous"


class CheckFraud(msgspec.Struct, frozen=True):
    pass


class Pay(msgspec.Struct, frozen=True):
    amount: int


class Ship(msgspec.Struct, frozen=True):
    carrier: str = "post"


# ----------------------------------------------------------------- events


@event("OrderPlaced")
class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    amount: int
    customer: str
    placed_at: float


@event("FraudChecked")
class FraudChecked(msgspec.Struct, frozen=True):
    score: float
    passed: bool


@event("PaymentReceived")
class PaymentReceived(msgspec.Struct, frozen=True):
    amount: int


@event("OrderShipped")
class OrderShipped(msgspec.Struct, frozen=True):
    carrier: str


# ------------------------------------------------------------------ state


class Order(msgspec.Struct, frozen=True):
    stage: Stage = "new"
    order_id: str = ""
    amount: int = 0
    paid: int = 0
    fraud_score: float | None = None


def status(state: Order) -> Status:
    if state.stage == "shipped":
        return "completed"
    if state.stage == "rejected":
        return "failed"
    return "running"


def evolve(state: Order, e: object) -> Order:
    if isinstance(e, OrderPlaced):
        return msgspec.structs.replace(
            state, stage="placed", order_id=e.order_id, amount=e.amount
        )
    if isinstance(e, FraudChecked):
        return msgspec.structs.replace(
            state, stage="checked" if e.passed else "rejected", fraud_score=e.score
        )
    if isinstance(e, PaymentReceived):
        return msgspec.structs.replace(state, stage="paid", paid=state.paid + e.amount)
    if isinstance(e, OrderShipped):
        return msgspec.structs.replace(state, stage="shipped")
    return state


def _place(state: Order, cmd: PlaceOrder, ctx: Context) -> list[object]:
    if cmd.amount <= 0:
        raise CommandRejected(f"amount must be positive, got {cmd.amount}")
    return [OrderPlaced(cmd.order_id, cmd.amount, cmd.customer, ctx.now().timestamp())]


def _pay(state: Order, cmd: Pay, ready: str) -> list[object]:
    if state.stage != ready:
        raise CommandRejected(f"cannot pay an order that is {state.stage}")
    if cmd.amount != state.amount:
        raise CommandRejected(f"payment {cmd.amount} does not match {state.amount}")
    return [PaymentReceived(cmd.amount)]


def _ship(state: Order, cmd: Ship) -> list[object]:
    if state.stage != "paid":
        raise CommandRejected(f"cannot ship an order that is {state.stage}")
    return [OrderShipped(cmd.carrier)]


def decide_v1(state: Order, cmd: object, ctx: Context) -> list[object]:
    if isinstance(cmd, PlaceOrder):
        return _place(state, cmd, ctx)
    if isinstance(cmd, Pay):
        return _pay(state, cmd, "placed")
    if isinstance(cmd, Ship):
        return _ship(state, cmd)
    raise CommandRejected(f"orders@1 does not handle {type(cmd).__name__}")


FRAUD_LIMIT = 0.97


def decide_v2(state: Order, cmd: object, ctx: Context) -> list[object]:
    if isinstance(cmd, PlaceOrder):
        return _place(state, cmd, ctx)
    if isinstance(cmd, CheckFraud):
        if state.stage != "placed":
            raise CommandRejected(f"cannot check an order that is {state.stage}")
        score = ctx.random()
        return [FraudChecked(score, passed=score < FRAUD_LIMIT)]
    if isinstance(cmd, Pay):
        return _pay(state, cmd, "checked")
    if isinstance(cmd, Ship):
        return _ship(state, cmd)
    raise CommandRejected(f"orders@2 does not handle {type(cmd).__name__}")


v1: Workflow[Order] = Workflow(
    name="orders",
    version=1,
    state_type=Order,
    initial=Order,
    decide=decide_v1,
    evolve=evolve,
    status=status,
    description="place, pay, ship",
)
v2: Workflow[Order] = Workflow(
    name="orders",
    version=2,
    state_type=Order,
    initial=Order,
    decide=decide_v2,
    evolve=evolve,
    status=status,
    snapshot_every=4,
    description="place, fraud check, pay, ship",
)


def registry() -> WorkflowRegistry:
    """A registry holding both versions, v1 current."""
    reg = WorkflowRegistry()
    reg.register(v1, v2)
    reg.set_current("orders", 1)
    return reg
