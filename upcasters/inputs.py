"""Inputs in the schema lock: the start inputs and commands of each workflow version.

A command is not stored like an event, but it crosses a wire: a Kafka producer
or a client built against an older release may still send the old shape while
the new code runs. The lock keeps, per ``workflow@version``, the fields of every
start-input type and command type, and :func:`compare_inputs` classifies each
change with the rules events follow:

- a new field with a default is **safe** (old senders leave it out and get the
  default; old code ignores it);
- a removed, retyped or newly required field, a lost default, a field inserted
  into an array-like struct, or a type the version stops accepting is
  **breaking** (messages old senders still produce are refused or lose data);
- a type newly accepted by a version already locked is **TWO-STEP**: workers
  of the previous release still run that version and refuse it, so deploy it
  everywhere before anything sends it.

A lock written before inputs were locked has no ``inputs`` section: every input
is then reported as new (safe), never as breaking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from upcasters.schema import Change, Kind, _compare_fields, describe_type

__all__ = [
    "INPUT_KINDS",
    "InputKind",
    "compare_inputs",
    "describe_inputs",
    "valid_inputs",
]

InputKind = Literal["start", "command"]
INPUT_KINDS: tuple[InputKind, ...] = ("start", "command")
"""The two kinds of input: a start input and a command to a running instance."""

_TEXT: dict[str, tuple[Kind, str]] = {
    "removed": (
        "breaking",
        "field removed (or renamed); a client or a Kafka producer may still send "
        "it and its value would be lost: keep the field (and ignore it), or "
        "accept a new input type",
    ),
    "retyped": (
        "breaking",
        "type changed from {detail}; messages old senders produce no longer "
        "decode: add a new field (or a new input type) instead",
    ),
    "lost-default": (
        "breaking",
        "field lost its default; old senders that leave it out would be refused",
    ),
    "new-required": (
        "breaking",
        "new field without a default; old senders do not send it and would be "
        "refused: give it a default",
    ),
    "inserted": (
        "breaking",
        "new field inserted before existing ones in an array-like struct; add new "
        "fields last",
    ),
    "new-default": (
        "safe",
        "new field with a default: old senders leave it out and get the default, "
        "old code ignores it (safe for a mixed fleet)",
    ),
}


def describe_inputs(
    inputs: Iterable[tuple[str, InputKind, type[Any]]],
) -> dict[str, Any]:
    """The ``inputs`` section of a lock.

    Args:
        inputs: ``(workflow@version, kind, class)`` per accepted input type.

    Returns:
        ``{workflow@version: {"start": {type: fields}, "command": {...}}}``,
        each type described as :func:`~upcasters.schema.describe_type` does.
    """
    out: dict[str, Any] = {}
    for ref, kind, cls in sorted(inputs, key=lambda t: (t[0], t[1], t[2].__name__)):
        entry = out.setdefault(ref, {k: {} for k in INPUT_KINDS})
        entry[kind][cls.__name__] = describe_type(cls)
    return out


def valid_inputs(section: Any) -> bool:
    """Whether a lock's ``inputs`` section has the shape of :func:`describe_inputs`."""
    return isinstance(section, dict) and all(
        isinstance(entry, dict)
        and all(isinstance(entry.get(k, {}), dict) for k in INPUT_KINDS)
        for entry in section.values()
    )


def compare_inputs(
    locked: Mapping[str, Any] | None, code: Mapping[str, Any]
) -> list[Change]:
    """Changes of the input types between a lock's section and the code's.

    Args:
        locked: The lock's ``inputs`` section; None for a lock that predates it.
        code: The code's ``inputs`` section.
    """
    out: list[Change] = []
    for ref, now in sorted(code.items()):
        old = None if locked is None else locked.get(ref)
        for kind in INPUT_KINDS:
            before: Mapping[str, Any] = {} if old is None else old.get(kind, {})
            after: Mapping[str, Any] = now.get(kind, {})
            for name in sorted(set(before) | set(after)):
                subject = f"{kind} {ref} {name}"
                if name not in after:
                    out.append(_gone(subject, ref))
                elif name not in before:
                    out.append(_new(subject, ref, locked is None or old is None))
                else:
                    out.extend(
                        _compare_fields(subject, before[name], after[name], _TEXT)
                    )
    return out


def _gone(subject: str, ref: str) -> Change:
    return Change(
        subject,
        "breaking",
        f"{ref} no longer accepts it; a client or a Kafka producer may still send "
        "it and would be refused: keep accepting it until nothing sends it",
    )


def _new(subject: str, ref: str, unlocked: bool) -> Change:
    if unlocked:
        return Change(subject, "safe", "new input type")
    return Change(
        subject,
        "mixed-fleet-unsafe",
        f"newly accepted by {ref}, which is already locked; workers of the "
        "previous release refuse it: deploy this release everywhere before "
        "anything sends it",
    )
