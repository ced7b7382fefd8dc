"""A workflow whose state changes shape between two releases (for snapshot tests).

Release A keeps ``Tally(total)`` at state schema 1. Release B renames the field
and adds a label: ``Tally2(amount, label)`` at state schema 2, with a state
upcaster that marks what it converted (``label="upcast"``), so a test can tell
an upcast snapshot from a state rebuilt from events (``label=""``).

The state upcaster is registered process-wide, as an app would register it, so
the workflow name is one no other test uses.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine import (
    Context,
    EventCodec,
    EventTypeRegistry,
    Workflow,
    WorkflowRegistry,
    event,
)
from engine.core.events import Started
from upcasters import state_upcaster

NAME = "upcasters_test_tally"


@event("tests.tally.Added")
class Added(msgspec.Struct, frozen=True):
    n: int


class Tally(msgspec.Struct, frozen=True):
    total: int = 0


class Tally2(msgspec.Struct, frozen=True):
    amount: int = 0
    label: str = ""


def _decide(state: Any, cmd: int, ctx: Context) -> list[Any]:
    return [Added(cmd)]


def workflow_a(snapshot_every: int = 2) -> Workflow[Tally]:
    return Workflow(
        name=NAME,
        version=1,
        state_type=Tally,
        initial=Tally,
        decide=_decide,
        evolve=lambda s, e: Tally(s.total + e.n),
        status=lambda s: "running",
        snapshot_every=snapshot_every,
    )


def workflow_b(snapshot_every: int = 2) -> Workflow[Tally2]:
    return Workflow(
        name=NAME,
        version=1,
        state_type=Tally2,
        initial=Tally2,
        decide=_decide,
        evolve=lambda s, e: Tally2(s.amount + e.n, s.label),
        status=lambda s: "running",
        snapshot_every=snapshot_every,
        state_schema=2,
    )


@state_upcaster(f"{NAME}@1", from_version=1)
def rename_total(state: dict[str, Any]) -> dict[str, Any]:
    """Tally -> Tally2 (registered process-wide, as an app would)."""
    return {"amount": state["total"], "label": "upcast"}


def release_a() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(workflow_a())
    return reg


def release_b() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(workflow_b())
    return reg


def codec() -> EventCodec:
    """A codec of this module's types only (other tests register theirs)."""
    types = EventTypeRegistry()
    types.register(Started, "nonstop.Started")
    types.register(Added, "tests.tally.Added")
    return EventCodec(types)
