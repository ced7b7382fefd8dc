"""A tiny deterministic workflow for runtime tests: every accepted command adds
exactly one event, so counting events counts accepted commands.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine import CommandRejected, Context, Status, Workflow, WorkflowRegistry, event

# ----------------------------------------------------------------- commands


class Begin(msgspec.Struct, frozen=True):
    start: int = 0


class Increment(msgspec.Struct, frozen=True):
    by: int = 1


class Finish(msgspec.Struct, frozen=True):
    pass


class Crash(msgspec.Struct, frozen=True):
    """decide raises a plain exception (a bug in workflow code)."""


class Poison(msgspec.Struct, frozen=True):
    """decide emits an event that evolve chokes on."""


# ------------------------------------------------------------------- events


@event("tests.counter.Begun")
class Begun(msgspec.Struct, frozen=True):
    start: int


@event("tests.counter.Incremented")
class Incremented(msgspec.Struct, frozen=True):
    by: int


@event("tests.counter.Finished")
class Finished(msgspec.Struct, frozen=True):
    pass


@event("tests.counter.Poisoned")
class Poisoned(msgspec.Struct, frozen=True):
    pass


# -------------------------------------------------------------------- state


class Count(msgspec.Struct, frozen=True):
    n: int = 0
    done: bool = False


EVOLVE_CALLS: list[int] = []
"""One entry per evolve call, so a test can see how much was replayed."""


def evolve(state: Count, e: Any) -> Count:
    EVOLVE_CALLS.append(1)
    if isinstance(e, Begun):
        return Count(e.start)
    if isinstance(e, Incremented):
        return Count(state.n + e.by, state.done)
    if isinstance(e, Finished):
        return Count(state.n, True)
    if isinstance(e, Poisoned):
        raise RuntimeError("evolve cannot digest Poisoned")
    return state


def decide(state: Count, cmd: Any, ctx: Context) -> list[Any]:
    if isinstance(cmd, Begin):
        return [Begun(cmd.start)]
    if isinstance(cmd, Increment):
        if cmd.by <= 0:
            raise CommandRejected(f"increment must be positive, got {cmd.by}")
        return [Incremented(cmd.by)]
    if isinstance(cmd, Finish):
        return [Finished()]
    if isinstance(cmd, Crash):
        raise ZeroDivisionError("bug in decide")
    if isinstance(cmd, Poison):
        return [Poisoned()]
    raise CommandRejected(f"counter does not handle {type(cmd).__name__}")


def status(state: Count) -> Status:
    return "completed" if state.done else "running"


def counter(version: int = 1, *, snapshot_every: int = 0) -> Workflow[Count]:
    return Workflow(
        name="counter",
        version=version,
        state_type=Count,
        initial=Count,
        decide=decide,
        evolve=evolve,
        status=status,
        snapshot_every=snapshot_every,
    )


def registry(*, snapshot_every: int = 0) -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(counter(snapshot_every=snapshot_every))
    return reg
