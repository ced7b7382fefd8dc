"""The order workflow used by the demo, the tests and the benchmarks.

v1: place, pay, ship. v2 adds a fraud check between placing and paying; an
order that fails it ends rejected (failed).

This module is the *current* release of the app (release 2): ``OrderPlaced`` is
at schema 2, with a required ``currency`` that release 1 did not write; the
upcaster :func:`add_currency` derives it for events stored by release 1. The
previous release is kept, frozen, in ``engine/demo/orders/_release1.py``, so that
the demo and the tests can run the two releases one after the other on the
same store (in production they are two deployments of the code; in one Python
process there is one class per event type name, so each release is a separate
:class:`Release` with its own type and upcaster registries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from engine import (
    CommandRejected,
    Context,
    Engine,
    EventCodec,
    EventStore,
    EventTypeRegistry,
    Status,
    Workflow,
    WorkflowRegistry,
    event,
)
from upcasters import UpcasterRegistry, upcaster

__all__ = [
    "CheckFraud",
    "FraudChecked",
    "Order",
    "OrderPlaced",
    "OrderShipped",
    "OrdersConfig",
    "Pay",
    "PaymentReceived",
    "PlaceOrder",
    "Release",
    "Ship",
    "add_currency",
    "registry",
    "release1",
    "release2",
    "v1",
    "v2",
]

Stage = Literal["new", "placed", "checked", "paid", "shipped", "rejected"]

# --------------------------------------------------------------- commands


class PlaceOrder(msgspec.Struct, frozen=True):
    """Start an order (the first command of every version)."""

    order_id: str
    amount: int
    customer: str = "anonymous"
    currency: str = "EUR"


class CheckFraud(msgspec.Struct, frozen=True):
    """Run the fraud check (``orders@2`` and later)."""


class Pay(msgspec.Struct, frozen=True):
    """Pay the order; the amount must match."""

    amount: int


class Ship(msgspec.Struct, frozen=True):
    """Ship a paid order."""

    carrier: str = "post"


# ----------------------------------------------------------------- events


@event("OrderPlaced", schema=2)
class OrderPlaced(msgspec.Struct, frozen=True):
    """An order was placed (schema 2: ``currency`` is required)."""

    order_id: str
    amount: int
    customer: str
    placed_at: float
    currency: str  # new in schema 2, required: derived for schema 1 by add_currency


@upcaster("OrderPlaced", from_version=1)
def add_currency(payload: dict[str, Any]) -> dict[str, Any]:
    """OrderPlaced schema 1 -> 2: release 1 only took euros."""
    return {**payload, "currency": "EUR"}


@event("FraudChecked")
class FraudChecked(msgspec.Struct, frozen=True):
    """The fraud check scored the order; it passed or not."""

    score: float
    passed: bool


@event("PaymentReceived")
class PaymentReceived(msgspec.Struct, frozen=True):
    """The order was paid."""

    amount: int


@event("OrderShipped")
class OrderShipped(msgspec.Struct, frozen=True):
    """The order was shipped."""

    carrier: str


# ------------------------------------------------------------------ state


class Order(msgspec.Struct, frozen=True):
    """The state of an order."""

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
    at = ctx.now().timestamp()
    return [OrderPlaced(cmd.order_id, cmd.amount, cmd.customer, at, cmd.currency)]


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


class OrdersConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an operator tunes in ``orders@2`` without a deploy (``nonstop config``)."""

    fraud_limit: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = FRAUD_LIMIT
    """A fraud score at or above it rejects the order."""


def decide_v2(state: Order, cmd: object, ctx: Context) -> list[object]:
    if isinstance(cmd, PlaceOrder):
        return _place(state, cmd, ctx)
    if isinstance(cmd, CheckFraud):
        if state.stage != "placed":
            raise CommandRejected(f"cannot check an order that is {state.stage}")
        score = ctx.random()
        return [FraudChecked(score, passed=score < ctx.config.fraud_limit)]
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
    inputs=(PlaceOrder,),
    commands=(Pay, Ship),
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
    inputs=(PlaceOrder,),
    commands=(CheckFraud, Pay, Ship),
    config=OrdersConfig,
)


def registry() -> WorkflowRegistry:
    """A registry holding both versions, v1 current (the CLI's default app)."""
    reg = WorkflowRegistry()
    reg.register(v1, v2)
    reg.set_current("orders", 1)
    return reg


@dataclass(frozen=True)
class Release:
    """One release of the app: its workflows, event types and upcasters."""

    name: str
    """Shown by the demo, e.g. ``release 2``."""
    registry: WorkflowRegistry
    """The workflow versions it runs."""
    types: EventTypeRegistry
    """The event types it reads and writes (one class per name)."""
    upcasters: UpcasterRegistry
    """The steps it applies to events stored by earlier releases."""
    place_order: type[Any]
    """Its start input (``PlaceOrder`` of that release)."""

    def engine(self, store: EventStore | str, **options: Any) -> Engine:
        """An engine running this release on ``store``."""
        return Engine(
            store,
            self.registry,
            codec=EventCodec(self.types),
            upcasters=self.upcasters,
            **options,
        )


def release2() -> Release:
    """The current release: v1 and v2, ``OrderPlaced`` schema 2, v2 current."""
    types = EventTypeRegistry()
    types.register(OrderPlaced, "OrderPlaced", schema=2)
    types.register(FraudChecked, "FraudChecked")
    types.register(PaymentReceived, "PaymentReceived")
    types.register(OrderShipped, "OrderShipped")
    steps = UpcasterRegistry()
    steps.add("OrderPlaced", 1, add_currency)
    reg = WorkflowRegistry()
    reg.register(v1, v2)
    reg.set_current("orders", 2)
    return Release("release 2", reg, types, steps, PlaceOrder)


def release1() -> Release:
    """The previous release: v1 only, writing ``OrderPlaced`` schema 1."""
    from engine.demo.orders._release1 import release

    return release()
