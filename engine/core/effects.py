"""Effect requests and durable timers as a decider asks for them (pure).

A decider asks for work outside the instance through its context:
``ctx.request(ChargeCard(...))`` for an effect, ``ctx.after(delay, command)`` or
``ctx.at(when, command)`` for a timer, ``ctx.cancel_timer(key)`` to drop one.
The decider turns what was asked into :data:`OutboxOp` values that ride on the
decision's last record and are written to the store's outbox in the same
transaction as its events. The effect runner and the timer service
(:mod:`engine.runtime.effects`) deliver them after commit; a result comes back
to the instance as an :class:`EffectCompleted` or :class:`EffectFailed`
command whose command id is derived from the effect, so it is recorded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from engine.core.errors import WorkflowDefinitionError

__all__ = [
    "CancelTimers",
    "EffectCompleted",
    "EffectFailed",
    "OutboxItem",
    "OutboxKind",
    "OutboxOp",
    "Requests",
    "effect_command_id",
    "timer_command_id",
    "timer_id",
    "type_path",
    "with_end",
]

OutboxKind = Literal["effect", "timer"]
_encoder = msgspec.msgpack.Encoder()


class OutboxItem(msgspec.Struct, frozen=True):
    """An effect request or a timer, written to the outbox with its decision."""

    id: str
    """Outbox id: ``instance@position#n`` (the idempotency key), or
    ``instance#timer:key`` for a keyed timer (setting it again re-arms it)."""
    kind: OutboxKind
    """``effect`` or ``timer``."""
    stream_id: str
    """The requesting instance."""
    workflow: str
    """``name@version`` that asked; the result goes back to that logic."""
    name: str
    """Effect type name, or the timer command's ``module:qualname``."""
    version: int
    """Handler version of an effect (0 for a timer)."""
    payload: bytes
    """The request or command, msgpack."""
    due_at: int
    """When it may run, microseconds since the epoch (0 for an effect: at once)."""


class CancelTimers(msgspec.Struct, frozen=True):
    """Cancel pending timers of an instance (all of them when ``ids`` is None).

    Cancelling all of them (the instance ended) leaves the timers a runner
    holds at that moment: they are being delivered, their outcome is recorded.
    """

    stream_id: str
    """The instance."""
    ids: tuple[str, ...] | None = None
    """Outbox ids of the timers to cancel; None: every pending timer."""


OutboxOp = OutboxItem | CancelTimers
"""What a decision writes to the outbox."""


class EffectCompleted(msgspec.Struct, frozen=True):
    """Command sent to an instance when one of its effects succeeded."""

    effect_id: str
    """The outbox id (the idempotency key the handler was given)."""
    type: str
    """Effect type name."""
    result: Any = None
    """What the handler returned (plain data)."""


class EffectFailed(msgspec.Struct, frozen=True):
    """Command sent to an instance when one of its effects gave up."""

    effect_id: str
    """The outbox id."""
    type: str
    """Effect type name."""
    error: str
    """The last error, ``Type: message``."""
    attempts: int
    """How many times the handler ran."""


def effect_command_id(effect_id: str) -> str:
    """The command id of an effect's result: the same for every delivery."""
    return f"effect:{effect_id}"


def timer_command_id(timer_id: str) -> str:
    """The command id of a timer's firing: the same for every delivery."""
    return f"timer:{timer_id}"


def type_path(obj: object) -> str:
    """``module:qualname`` of ``obj``'s class, the name a timer command is stored by."""
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(value: Any, what: str) -> bytes:
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise WorkflowDefinitionError(
            f"the {what} {type(value).__name__} cannot be stored ({exc}); "
            "use a msgspec.Struct, dataclass or plain data"
        ) from None


class Requests:
    """What one decision asked for; the context collects, the decider stores.

    Ids are given once the decision's position is known (:meth:`ops`).
    """

    __slots__ = ("_asked",)

    def __init__(self) -> None:
        self._asked: list[tuple[str, Any, int, int, str | None]] = []

    def __bool__(self) -> bool:
        return bool(self._asked)

    def effect(self, request: Any, version: int) -> None:
        """Ask for effect ``request`` handled by handler ``version``."""
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise WorkflowDefinitionError(
                f"ctx.request(): version={version!r} must be an int >= 1"
            )
        name = getattr(type(request), "__effect_type__", type(request).__name__)
        self._asked.append(("effect", request, version, 0, str(name)))

    def timer(self, due_at: int, command: Any, key: str | None) -> None:
        """Ask for ``command`` to be sent at ``due_at`` (microseconds)."""
        if key is not None and not key:
            raise WorkflowDefinitionError("a timer key must not be empty")
        self._asked.append(("timer", command, 0, due_at, key))

    def cancel(self, key: str) -> None:
        """Cancel the keyed timer ``key``."""
        self._asked.append(("cancel", None, 0, 0, key))

    def ops(self, stream_id: str, workflow: str, position: int) -> list[OutboxOp]:
        """The outbox operations, ids derived from the decision's last position."""
        out: list[OutboxOp] = []
        for n, (kind, value, version, due, key) in enumerate(self._asked, 1):
            if kind == "effect":
                assert key is not None
                out.append(
                    OutboxItem(
                        f"{stream_id}@{position}#{n}",
                        "effect",
                        stream_id,
                        workflow,
                        key,
                        version,
                        _encode(value, "effect request"),
                        0,  # due at once, whatever a runner's clock reads
                    )
                )
            elif kind == "timer":
                tid = timer_id(stream_id, key) if key else f"{stream_id}@{position}#{n}"
                out.append(
                    OutboxItem(
                        tid,
                        "timer",
                        stream_id,
                        workflow,
                        type_path(value),
                        0,
                        _encode(value, "timer command"),
                        due,
                    )
                )
            else:
                assert key is not None
                out.append(CancelTimers(stream_id, (timer_id(stream_id, key),)))
        return out


def timer_id(stream_id: str, key: str) -> str:
    """The outbox id of the keyed timer ``key`` of ``stream_id``."""
    return f"{stream_id}#timer:{key}"


def with_end(ops: Sequence[OutboxOp], stream_id: str) -> list[OutboxOp]:
    """``ops`` followed by the cancel of every pending timer (the instance ended)."""
    return [*ops, CancelTimers(stream_id)]
