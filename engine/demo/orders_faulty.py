"""``orders@3``: a deliberately faulty version of the order workflow.

It swaps the fraud check for a "new model" that has scores for orders below
300 only and crashes (a ``KeyError``) on bigger ones. The demo deploys it as a
canary, sees the errors and rolls it back; its instances are migrated back to
``orders@2``.
"""

from __future__ import annotations

from engine import CommandRejected, Context, Workflow
from engine.demo.orders import (
    FRAUD_LIMIT,
    CheckFraud,
    FraudChecked,
    Order,
    Pay,
    PlaceOrder,
    Ship,
    _pay,
    _place,
    _ship,
    evolve,
    status,
)

__all__ = ["MODEL", "v3"]

MODEL = {0: 0.05, 1: 0.1, 2: 0.2}
"""Fraud score per started hundred of the amount: nothing from 300 on."""


def decide_v3(state: Order, cmd: object, ctx: Context) -> list[object]:
    if isinstance(cmd, PlaceOrder):
        return _place(state, cmd, ctx)
    if isinstance(cmd, CheckFraud):
        if state.stage != "placed":
            raise CommandRejected(f"cannot check an order that is {state.stage}")
        score = MODEL[state.amount // 100]  # the bug: a KeyError from 300 on
        return [FraudChecked(score, passed=score < FRAUD_LIMIT)]
    if isinstance(cmd, Pay):
        return _pay(state, cmd, "checked")
    if isinstance(cmd, Ship):
        return _ship(state, cmd)
    raise CommandRejected(f"orders@3 does not handle {type(cmd).__name__}")


v3: Workflow[Order] = Workflow(
    name="orders",
    version=3,
    state_type=Order,
    initial=Order,
    decide=decide_v3,
    evolve=evolve,
    status=status,
    description="place, new fraud model (faulty), pay, ship",
)
