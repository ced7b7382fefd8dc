"""Versions of a small workflow for the deployment tests (importable sources)."""

from __future__ import annotations

from typing import Any

import msgspec

from engine import CommandRejected, Context, Status, Workflow, WorkflowRegistry, event


class Begin(msgspec.Struct, frozen=True):
    """Start input."""


class Step(msgspec.Struct, frozen=True):
    """Advance by one."""


class Finish(msgspec.Struct, frozen=True):
    """End the instance."""


@event("deploytest.Stepped")
class Stepped(msgspec.Struct, frozen=True):
    by_version: int
    fast: bool = False
    colour: str = ""


@event("deploytest.Finished")
class Finished(msgspec.Struct, frozen=True):
    pass


class Job(msgspec.Struct, frozen=True):
    steps: int = 0
    done: bool = False
    versions: tuple[int, ...] = ()
    fast: tuple[bool, ...] = ()
    colours: tuple[str, ...] = ()


class JobV2(msgspec.Struct, frozen=True):
    """The v2 state: a label was added."""

    steps: int = 0
    done: bool = False
    versions: tuple[int, ...] = ()
    fast: tuple[bool, ...] = ()
    colours: tuple[str, ...] = ()
    label: str = ""


def _evolve(state: Any, e: object) -> Any:
    if isinstance(e, Stepped):
        return msgspec.structs.replace(
            state,
            steps=state.steps + 1,
            versions=(*state.versions, e.by_version),
            fast=(*state.fast, e.fast),
            colours=(*state.colours, e.colour),
        )
    if isinstance(e, Finished):
        return msgspec.structs.replace(state, done=True)
    return state


def _status(state: Any) -> Status:
    return "completed" if state.done else "running"


def _decider(version: int, *, faulty: bool = False) -> Any:
    def decide(state: Any, cmd: object, ctx: Context) -> list[object]:
        if isinstance(cmd, Begin):
            return []
        if isinstance(cmd, Step):
            if faulty:
                raise RuntimeError(f"v{version} is broken")
            fast = ctx.flag("fast") if version >= 2 else False
            colour = ctx.variant("colour", "none") if version >= 2 else ""
            return [Stepped(version, fast, colour)]
        if isinstance(cmd, Finish):
            return [Finished()]
        raise CommandRejected(f"jobs do not handle {type(cmd).__name__}")

    return decide


def _make(version: int, state: type[Any], *, faulty: bool = False) -> Workflow[Any]:
    return Workflow(
        name="jobs",
        version=version,
        state_type=state,
        initial=state,
        decide=_decider(version, faulty=faulty),
        evolve=_evolve,
        status=_status,
    )


v1 = _make(1, Job)
v2 = _make(2, JobV2)
v3 = _make(3, Job, faulty=True)
v4 = _make(4, JobV2)
v6 = _make(6, JobV2)
v7 = _make(7, JobV2)
v8 = _make(8, JobV2)
v9 = _make(9, JobV2)
snapshotting = Workflow(
    name="jobs",
    version=5,
    state_type=JobV2,
    initial=JobV2,
    decide=_decider(5),
    evolve=_evolve,
    status=_status,
    snapshot_every=2,
)
not_a_workflow = 42


def broken() -> Workflow[Any]:
    """A source whose loading fails."""
    raise ImportError("this deployment cannot be loaded")


def registry() -> WorkflowRegistry:
    """v1 and v2 registered in code; v3 and v4 come by hot loading."""
    reg = WorkflowRegistry()
    reg.register(v1, v2)
    return reg


def add_label(state: Job) -> JobV2:
    """The v1 -> v2 state mapper."""
    return JobV2(
        state.steps, state.done, state.versions, state.fast, state.colours, "migrated"
    )


def failing_mapper(state: Job) -> JobV2:
    """Fails for instances that took exactly one step."""
    if state.steps == 1:
        raise ValueError("cannot map a job with one step")
    return add_label(state)
