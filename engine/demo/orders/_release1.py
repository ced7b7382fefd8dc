"""Release 1 of the order app, kept frozen: ``OrderPlaced`` at schema 1, v1 only.

It is what the code looked like before ``OrderPlaced`` gained ``currency``. The
demo runs it for its first half, and ``tests/golden/make_golden.py`` writes the
golden histories with it. Its ``OrderPlaced`` is a class of its own, registered
only in this release's type registry (one class per type name per registry).
"""

from __future__ import annotations

import msgspec

from engine import (
    CommandRejected,
    Context,
    EventTypeRegistry,
    Workflow,
    WorkflowRegistry,
)
from engine.demo.orders import (
    Order,
    OrderShipped,
    Pay,
    PaymentReceived,
    Release,
    Ship,
    _pay,
    _ship,
    evolve,
    status,
)
from upcasters import UpcasterRegistry

__all__ = ["OrderPlaced", "PlaceOrder", "release", "v1"]


class PlaceOrder(msgspec.Struct, frozen=True):
    """The start input of release 1 (no currency yet)."""

    order_id: str
    amount: int
    customer: str = "anonymous"


class OrderPlaced(msgspec.Struct, frozen=True):
    """``OrderPlaced`` as release 1 wrote it (schema 1: no currency)."""

    order_id: str
    amount: int
    customer: str
    placed_at: float


def evolve_r1(state: Order, e: object) -> Order:
    """Release 1's reducer: its own ``OrderPlaced``, the rest as today."""
    if isinstance(e, OrderPlaced):
        return msgspec.structs.replace(
            state, stage="placed", order_id=e.order_id, amount=e.amount
        )
    return evolve(state, e)


def decide_r1(state: Order, cmd: object, ctx: Context) -> list[object]:
    """Release 1's orders@1 decider."""
    if isinstance(cmd, PlaceOrder):
        if cmd.amount <= 0:
            raise CommandRejected(f"amount must be positive, got {cmd.amount}")
        placed_at = ctx.now().timestamp()
        return [OrderPlaced(cmd.order_id, cmd.amount, cmd.customer, placed_at)]
    if isinstance(cmd, Pay):
        return _pay(state, cmd, "placed")
    if isinstance(cmd, Ship):
        return _ship(state, cmd)
    raise CommandRejected(f"orders@1 does not handle {type(cmd).__name__}")


v1: Workflow[Order] = Workflow(
    name="orders",
    version=1,
    state_type=Order,
    initial=Order,
    decide=decide_r1,
    evolve=evolve_r1,
    status=status,
    description="place, pay, ship",
    inputs=(PlaceOrder,),
    commands=(Pay, Ship),
)


def release() -> Release:
    """Release 1: orders@1 current, ``OrderPlaced`` schema 1, no upcasters."""
    types = EventTypeRegistry()
    types.register(OrderPlaced, "OrderPlaced", schema=1)
    types.register(PaymentReceived, "PaymentReceived")
    types.register(OrderShipped, "OrderShipped")
    reg = WorkflowRegistry()
    reg.register(v1)
    return Release("release 1", reg, types, UpcasterRegistry(), PlaceOrder)
