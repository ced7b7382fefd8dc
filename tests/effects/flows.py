"""A payment workflow for the effect and timer tests.

``Buy`` asks for a ``Charge`` effect (handler version = workflow version) and
arms the keyed timer ``unpaid``; the effect's outcome completes or fails the
instance, the timer's ``Expire`` fails it; ``Drop`` cancels the timer.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from engine import CommandRejected, Context, Status, Workflow, WorkflowRegistry, event
from engine.core.effects import EffectCompleted, EffectFailed
from engine.runtime.handlers import EffectHandlers, effect_handler

UNPAID_AFTER = timedelta(hours=1)


class Buy(msgspec.Struct, frozen=True):
    amount: int


class Charge(msgspec.Struct, frozen=True):
    order: str
    amount: int


class Expire(msgspec.Struct, frozen=True):
    pass


class Drop(msgspec.Struct, frozen=True):
    pass


class Note(msgspec.Struct, frozen=True):
    """A command that only records an event (load for interleavings)."""


class Remind(msgspec.Struct, frozen=True):
    """Arm ``count`` unkeyed timers, due ``after`` from now, that send ``Note``."""

    count: int = 1
    after: float = 0.0


@event("tests.effects.Bought")
class Bought(msgspec.Struct, frozen=True):
    amount: int


@event("tests.effects.Paid")
class Paid(msgspec.Struct, frozen=True):
    effect_id: str
    result: int


@event("tests.effects.PaymentFailed")
class PaymentFailed(msgspec.Struct, frozen=True):
    effect_id: str
    error: str


@event("tests.effects.Expired")
class Expired(msgspec.Struct, frozen=True):
    pass


@event("tests.effects.Dropped")
class Dropped(msgspec.Struct, frozen=True):
    pass


@event("tests.effects.Noted")
class Noted(msgspec.Struct, frozen=True):
    pass


@event("tests.effects.Reminded")
class Reminded(msgspec.Struct, frozen=True):
    count: int


class Sale(msgspec.Struct, frozen=True):
    status: Status = "running"
    paid: int = 0
    notes: int = 0


def status(s: Sale) -> Status:
    return s.status


def evolve(s: Sale, e: object) -> Sale:
    if isinstance(e, Paid):
        return msgspec.structs.replace(s, status="completed", paid=e.result)
    if isinstance(e, (PaymentFailed, Expired)):
        return msgspec.structs.replace(s, status="failed")
    if isinstance(e, Noted):
        return msgspec.structs.replace(s, notes=s.notes + 1)
    return s


def _decide(version: int):  # type: ignore[no-untyped-def]
    def decide(s: Sale, cmd: object, ctx: Context) -> list[object]:
        if isinstance(cmd, Buy):
            ctx.request(Charge(ctx.instance_id, cmd.amount), version=version)
            ctx.after(UNPAID_AFTER, Expire(), key="unpaid")
            return [Bought(cmd.amount)]
        if isinstance(cmd, EffectCompleted):
            return [Paid(cmd.effect_id, int(cmd.result))]
        if isinstance(cmd, EffectFailed):
            return [PaymentFailed(cmd.effect_id, cmd.error)]
        if isinstance(cmd, Expire):
            return [Expired()]
        if isinstance(cmd, Drop):
            ctx.cancel_timer("unpaid")
            return [Dropped()]
        if isinstance(cmd, Note):
            return [Noted()]
        if isinstance(cmd, Remind):
            for _ in range(cmd.count):
                ctx.after(timedelta(seconds=cmd.after), Note())
            return [Reminded(cmd.count)]
        raise CommandRejected(f"unknown command {cmd!r}")

    return decide


sales_v1: Workflow[Sale] = Workflow("sales", 1, Sale, Sale, _decide(1), evolve, status)
sales_v2: Workflow[Sale] = Workflow("sales", 2, Sale, Sale, _decide(2), evolve, status)


def registry(*, v2: bool = False) -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(sales_v1)
    if v2:
        reg.register(sales_v2)
    else:
        reg.set_current("sales", 1)
    return reg


class Gateway:
    """A fake payment gateway: counts calls per idempotency key."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: dict[str, int] = {}
        self.fail_first = fail_first

    def charge(self, req: Charge, key: str) -> int:
        n = self.calls[key] = self.calls.get(key, 0) + 1
        if n <= self.fail_first:
            raise ConnectionError(f"gateway down (call {n} of {key})")
        return req.amount


def handlers(gateway: Gateway, *, versions: tuple[int, ...] = (1,)) -> EffectHandlers:
    """Handlers of ``Charge`` at ``versions``, calling ``gateway`` (no backoff)."""
    from engine.store.retry import Backoff

    reg = EffectHandlers()
    for v in versions:
        effect_handler(
            "Charge",
            version=v,
            max_attempts=3,
            backoff=Backoff(first=0.001, longest=0.002),
            registry=reg,
        )(gateway.charge)
    return reg
