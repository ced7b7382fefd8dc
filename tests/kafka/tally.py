"""A tally workflow and its Kafka mapping, for the worker tests.

Message key: the tally's instance id. Value: JSON ``{"open": true}`` starts it,
``{"add": N}`` adds N (a negative N is rejected by the workflow); anything else
fails in the mapping.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine import (
    CommandRejected,
    Context,
    Send,
    Start,
    Status,
    Workflow,
    WorkflowRegistry,
    event,
)
from engine.kafka.worker import Message


class Open(msgspec.Struct, frozen=True):
    pass


class Add(msgspec.Struct, frozen=True):
    n: int


@event("kafkatest.Added")
class Added(msgspec.Struct, frozen=True):
    n: int


class Tally(msgspec.Struct, frozen=True):
    total: int = 0
    count: int = 0


def _decide(state: Tally, cmd: Any, ctx: Context) -> list[Any]:
    if isinstance(cmd, Open):
        return []
    if isinstance(cmd, Add):
        if cmd.n < 0:
            raise CommandRejected(f"cannot add a negative number ({cmd.n})")
        return [Added(cmd.n)]
    raise CommandRejected(f"tally does not handle {type(cmd).__name__}")


def _evolve(state: Tally, e: Any) -> Tally:
    if isinstance(e, Added):
        return Tally(state.total + e.n, state.count + 1)
    return state


def _status(state: Tally) -> Status:
    return "running"


workflow: Workflow[Tally] = Workflow(
    name="tally",
    version=1,
    state_type=Tally,
    initial=Tally,
    decide=_decide,
    evolve=_evolve,
    status=_status,
)


def registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(workflow)
    return reg


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    open: bool = False
    add: int | None = None


_decoder = msgspec.json.Decoder(_Body)


def mapping(msg: Message) -> Start | Send | None:
    if msg.key is None or msg.value is None:
        raise ValueError("a tally message needs a key and a value")
    iid = msg.key.decode()
    body = _decoder.decode(msg.value)
    if body.open:
        return Start("tally", Open(), instance_id=iid)
    if body.add is not None:
        return Send(iid, Add(body.add))
    return None
