"""An account workflow and variants of its code, for the verify tests.

``hotfix`` changes what ``evolve`` does for deposits over 100 (so only some
histories fold differently); ``refactor`` rewrites ``evolve`` without changing
any state. Events live in their own type registries so that a test can give a
type a new schema version with an upcaster (the schema-1 types are also in the
default registry, for the command-line tests).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from engine import (
    CommandRejected,
    Context,
    EventCodec,
    Status,
    Workflow,
    WorkflowRegistry,
    event,
)
from engine.core.events import EventTypeRegistry
from upcasters import UpcasterRegistry


class Open(msgspec.Struct, frozen=True):
    owner: str = "ann"


class Deposit(msgspec.Struct, frozen=True):
    amount: int


class Close(msgspec.Struct, frozen=True):
    pass


@event("tests.verify.Opened")
class Opened(msgspec.Struct, frozen=True):
    owner: str


@event("tests.verify.Deposited")
class Deposited(msgspec.Struct, frozen=True):
    amount: int


class DepositedV2(msgspec.Struct, frozen=True):
    """``Deposited`` at schema 2: the amount in cents."""

    cents: int


@event("tests.verify.Closed")
class Closed(msgspec.Struct, frozen=True):
    pass


class Account(msgspec.Struct, frozen=True):
    owner: str = ""
    balance: int = 0
    deposits: int = 0
    closed: bool = False


def types_v1() -> EventTypeRegistry:
    reg = EventTypeRegistry()
    reg.register(Opened, "tests.verify.Opened")
    reg.register(Deposited, "tests.verify.Deposited")
    reg.register(Closed, "tests.verify.Closed")
    return reg


def codec_v1() -> EventCodec:
    return EventCodec(types_v1())


def evolve(s: Account, e: Any) -> Account:
    if isinstance(e, Opened):
        return Account(e.owner)
    if isinstance(e, Deposited):
        return Account(s.owner, s.balance + e.amount, s.deposits + 1)
    if isinstance(e, Closed):
        return Account(s.owner, s.balance, s.deposits, True)
    return s


def evolve_hotfix(s: Account, e: Any) -> Account:
    if isinstance(e, Deposited) and e.amount > 100:
        return Account(s.owner, s.balance + e.amount + 1, s.deposits + 1)
    return evolve(s, e)


def evolve_refactor(s: Account, e: Any) -> Account:
    match e:
        case Opened(owner=owner):
            return Account(owner=owner)
        case Deposited(amount=amount):
            return msgspec.structs.replace(
                s, balance=s.balance + amount, deposits=s.deposits + 1
            )
        case Closed():
            return msgspec.structs.replace(s, closed=True)
    return s


def evolve_cents(s: Account, e: Any) -> Account:
    """``evolve`` for the schema-2 ``Deposited`` (amounts in cents)."""
    if isinstance(e, DepositedV2):
        return Account(s.owner, s.balance + e.cents // 100, s.deposits + 1)
    return evolve(s, e)


def decide(s: Account, c: Any, ctx: Context) -> list[Any]:
    if isinstance(c, Open):
        return [Opened(c.owner)]
    if isinstance(c, Deposit):
        return [Deposited(c.amount)]
    if isinstance(c, Close):
        return [Closed()]
    raise CommandRejected(f"no such command {c!r}")


def decide_cents(s: Account, c: Any, ctx: Context) -> list[Any]:
    if isinstance(c, Deposit):
        return [DepositedV2(c.amount * 100)]
    return decide(s, c, ctx)


def status(s: Account) -> Status:
    return "completed" if s.closed else "running"


def account(version: int = 1, *, snapshot_every: int = 0) -> Workflow[Account]:
    return Workflow(
        name="account",
        version=version,
        state_type=Account,
        initial=Account,
        decide=decide,
        evolve=evolve,
        status=status,
        snapshot_every=snapshot_every,
    )


def variant(wf: Workflow[Account], **changes: Any) -> Workflow[Account]:
    return dataclasses.replace(wf, **changes)


def cents_codec(upcast: Any) -> tuple[EventCodec, UpcasterRegistry]:
    """Types with ``Deposited`` at schema 2, and ``upcast`` as its 1 -> 2 step."""
    reg = EventTypeRegistry()
    reg.register(Opened, "tests.verify.Opened")
    reg.register(DepositedV2, "tests.verify.Deposited", schema=2)
    reg.register(Closed, "tests.verify.Closed")
    ups = UpcasterRegistry()
    ups.add("tests.verify.Deposited", 1, upcast)
    codec = EventCodec(reg)
    codec.use_upcasters(ups)
    return codec, ups


def to_cents(p: dict[str, Any]) -> dict[str, Any]:
    return {"cents": p["amount"] * 100}


def to_cents_wrong(p: dict[str, Any]) -> dict[str, Any]:
    return {"cents": p["amount"] * 10 if p["amount"] > 100 else p["amount"] * 100}


v1 = account()
"""account@1 as deployed."""
hotfix = variant(v1, evolve=evolve_hotfix)
"""account@1 with a reducer change that alters some states."""
refactor = variant(v1, evolve=evolve_refactor)
"""account@1 rewritten without changing any state."""


def registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(v1)
    return reg


def registry2() -> WorkflowRegistry:
    """account@1 and account@2 (the same code under a new version number)."""
    reg = registry()
    reg.register(account(2))
    return reg


def double(s: Account) -> Account:
    """A state mapper for migrations (doubles the balance)."""
    return msgspec.structs.replace(s, balance=s.balance * 2)


def broken_mapper(s: Account) -> Account:
    raise ValueError("no mapping for this state")
