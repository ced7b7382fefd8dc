"""A small workflow in several versions for the health and rollout tests."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from engine import CommandRejected, Context, Status, Workflow, WorkflowRegistry, event


class Open(msgspec.Struct, frozen=True):
    """Start input."""


class Work(msgspec.Struct, frozen=True):
    """One unit of work."""

    n: int


class Close(msgspec.Struct, frozen=True):
    """End the instance."""


class Fail(msgspec.Struct, frozen=True):
    """End the instance as failed."""


@event("healthtest.Worked")
class Worked(msgspec.Struct, frozen=True):
    n: int


@event("healthtest.Ended")
class Ended(msgspec.Struct, frozen=True):
    ok: bool


class Till(msgspec.Struct, frozen=True):
    worked: int = 0
    ended: str = ""


def _evolve(state: Till, e: object) -> Till:
    if isinstance(e, Worked):
        return Till(state.worked + 1, state.ended)
    if isinstance(e, Ended):
        return Till(state.worked, "completed" if e.ok else "failed")
    return state


def _status(state: Till) -> Status:
    return (
        "failed"
        if state.ended == "failed"
        else ("completed" if state.ended else "running")
    )


def bad(instance_id: str, n: int) -> int:
    """0..99 for a unit of work; a faulty version refuses those below 20."""
    digest = hashlib.blake2b(f"{instance_id}/{n}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % 100


def _decider(faulty: bool) -> Any:
    def decide(state: Till, cmd: object, ctx: Context) -> list[object]:
        if isinstance(cmd, Open):
            return []
        if isinstance(cmd, Work):
            b = bad(ctx.instance_id, cmd.n) if faulty else 100
            if b < 10:
                raise CommandRejected(f"work {cmd.n} refused")
            if b < 20:
                raise RuntimeError(f"work {cmd.n} crashed")
            return [Worked(cmd.n)]
        if isinstance(cmd, Close):
            return [Ended(True)]
        if isinstance(cmd, Fail):
            return [Ended(False)]
        raise CommandRejected(f"tills do not handle {type(cmd).__name__}")

    return decide


def _make(version: int, *, faulty: bool = False) -> Workflow[Any]:
    return Workflow(
        name="tills",
        version=version,
        state_type=Till,
        initial=Till,
        decide=_decider(faulty),
        evolve=_evolve,
        status=_status,
    )


def _flagged(state: Till, cmd: object, ctx: Context) -> list[object]:
    """v4: the ``turbo`` path crashes on a fifth of the work."""
    if isinstance(cmd, Work) and ctx.flag("turbo") and bad(ctx.instance_id, 0) < 40:
        raise RuntimeError("turbo crashed")
    decided: list[object] = _decider(False)(state, cmd, ctx)
    return decided


v1 = _make(1)
v2 = _make(2)
v3 = _make(3, faulty=True)
v4 = Workflow(
    name="tills",
    version=4,
    state_type=Till,
    initial=Till,
    decide=_flagged,
    evolve=_evolve,
    status=_status,
)


def registry() -> WorkflowRegistry:
    """Every version (engines also load them from the deployments registry)."""
    reg = WorkflowRegistry()
    reg.register(v1, v2, v3, v4)
    return reg
