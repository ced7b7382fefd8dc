"""Operator actions that have no registry event of their own, kept for the audit.

Deployments, flags and rollouts record who changed them in their own streams.
An action outside them (replaying a dead letter from the console) is written
to the reserved stream ``nonstop.actions`` as an :class:`OperatorAction`, with
who did it and why; ``nonstop audit`` and the console's audit list it with the
rest. Reading it costs the number of actions, never the log.
"""

from __future__ import annotations

import msgspec

from engine.core.codec import EventCodec
from engine.core.errors import ConcurrencyConflict, DeployConflict
from engine.core.events import Metadata, event, now_micros
from engine.deploy.view import AuditEntry
from engine.store import EventStore, NewRecord

__all__ = ["ACTIONS_STREAM", "OperatorAction", "action_audit", "record_action"]

ACTIONS_STREAM = "nonstop.actions"
"""Stream id of the operator actions recorded here."""
_ATTEMPTS = 10


@event("nonstop.OperatorAction")
class OperatorAction(msgspec.Struct, frozen=True):
    """An operator acted on ``subject`` (e.g. replayed a dead letter)."""

    subject: str
    """What was acted on (``deadletter:ID``)."""
    action: str
    """What was done (``deadletter replay``)."""
    detail: str
    """The outcome, in words."""
    by: str
    """Who."""
    reason: str = ""
    """Why."""


def record_action(store: EventStore, action: OperatorAction) -> None:
    """Append ``action`` to :data:`ACTIONS_STREAM` (retrying a concurrent append).

    Raises:
        DeployConflict: the stream kept changing under this append.
    """
    codec = EventCodec()
    for _ in range(_ATTEMPTS):
        last = store.read_stream(ACTIONS_STREAM, after=0)
        pos = last[-1].position if last else 0
        name, data = codec.encode(
            action, Metadata(ACTIONS_STREAM), recorded_at=now_micros()
        )
        try:
            store.append([NewRecord(ACTIONS_STREAM, pos + 1, name, data)])
        except ConcurrencyConflict:
            continue
        return
    raise DeployConflict(
        f"the operator actions stream kept changing ({_ATTEMPTS} attempts); retry"
    )


def action_audit(store: EventStore) -> list[AuditEntry]:
    """Every recorded operator action as an audit entry, oldest first."""
    codec = EventCodec()
    out: list[AuditEntry] = []
    for rec in store.read_stream(ACTIONS_STREAM):
        for ev in codec.decode(
            rec.stream_id, rec.position, rec.global_position, rec.type, rec.data
        ):
            e = ev.event
            if isinstance(e, OperatorAction):
                out.append(
                    AuditEntry(
                        ev.recorded_at, e.subject, e.action, e.detail, e.by, e.reason
                    )
                )
    return out
