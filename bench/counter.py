"""The smallest workflow the benchmarks drive: a counter that only goes up."""

from __future__ import annotations

from typing import Any

import msgspec

from engine import Context, Status, Workflow, WorkflowRegistry, event
from engine.core.codec import EventCodec
from engine.core.events import Metadata, Started, now_micros
from engine.store import NewRecord

__all__ = [
    "Begin",
    "Counter",
    "Increment",
    "Incremented",
    "encoded_stream",
    "registry",
    "workflow",
]


class Begin(msgspec.Struct, frozen=True):
    """Start input."""


class Increment(msgspec.Struct, frozen=True):
    """Command: add ``by``."""

    by: int = 1


@event("bench.Incremented")
class Incremented(msgspec.Struct, frozen=True):
    by: int


class Counter(msgspec.Struct, frozen=True):
    value: int = 0


def _decide(state: Counter, cmd: Any, ctx: Context) -> list[Any]:
    if isinstance(cmd, Increment):
        return [Incremented(cmd.by)]
    return []


def _evolve(state: Counter, e: Any) -> Counter:
    return Counter(state.value + e.by)


def _status(state: Counter) -> Status:
    return "running"


workflow: Workflow[Counter] = Workflow(
    name="bench-counter",
    version=1,
    state_type=Counter,
    initial=Counter,
    decide=_decide,
    evolve=_evolve,
    status=_status,
)


def registry() -> WorkflowRegistry:
    """A registry with the counter workflow."""
    reg = WorkflowRegistry()
    reg.register(workflow)
    return reg


_codec = EventCodec()
_meta = Metadata(workflow.ref)


def encoded_stream(stream_id: str, length: int, *, first: int = 1) -> list[NewRecord]:
    """Records ``first..length`` of a counter instance, as the engine writes them."""
    now = now_micros()
    out: list[NewRecord] = []
    for pos in range(first, length + 1):
        if pos == 1:
            obj: msgspec.Struct = Started(
                workflow=workflow.name,
                version=workflow.version,
                input_type="Begin",
                input=msgspec.msgpack.encode(Begin()),
            )
        else:
            obj = Incremented(1)
        name, data = _codec.encode(obj, _meta, recorded_at=now)
        out.append(NewRecord(stream_id, pos, name, data))
    return out
