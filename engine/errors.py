"""The error tree of nonstop: one base class, precise subclasses.

Every error names the offending value and says what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CommandRejected",
    "ConcurrencyConflict",
    "ConflictRetriesExhausted",
    "DuplicateRegistration",
    "EventDecodeError",
    "InstanceExists",
    "MigrationError",
    "NonstopError",
    "RolloutError",
    "StoreUnavailable",
    "UnknownEventType",
    "UnknownInstance",
    "UnknownWorkflow",
    "WorkflowCodeError",
    "WorkflowDefinitionError",
]


class NonstopError(Exception):
    """Base class of every error raised by nonstop."""


class WorkflowDefinitionError(NonstopError, ValueError):
    """A workflow or event definition is malformed."""


class DuplicateRegistration(NonstopError, ValueError):
    """A name (event type or ``workflow@version``) was registered twice."""


class UnknownWorkflow(NonstopError, LookupError):
    """No workflow, or no such version of it, is registered."""

    def __init__(self, name: str, version: int | None, known: Sequence[str]) -> None:
        self.name = name
        self.version = version
        self.known = list(known)
        what = name if version is None else f"{name}@{version}"
        choices = ", ".join(self.known) or "none"
        super().__init__(
            f"unknown workflow {what!r}; registered: {choices}. "
            "Register the definition with the engine's registry before using it."
        )


class UnknownInstance(NonstopError, LookupError):
    """No workflow instance exists with the given id."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(
            f"unknown instance {instance_id!r}: no events are stored for it. "
            "Check the id (see `nonstop instances`)."
        )


class InstanceExists(NonstopError, ValueError):
    """An instance with the requested id has already been started."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(
            f"instance {instance_id!r} already exists; choose another id or "
            "send a command to the existing instance"
        )


class UnknownEventType(NonstopError, LookupError):
    """A stored or emitted event type name is not registered."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(
            f"unknown event type {type_name!r}; register it with @event(...) "
            "(or an upcaster for a renamed type) before reading it"
        )


class CommandRejected(NonstopError):
    """The decider refused a command; nothing was written.

    Raise it from ``decide`` with the reason. The engine re-raises it to the
    caller with the instance id and command filled in.
    """

    def __init__(
        self,
        reason: str,
        *,
        instance_id: str | None = None,
        command: object | None = None,
    ) -> None:
        self.reason = reason
        self.instance_id = instance_id
        self.command = command
        where = f" by instance {instance_id!r}" if instance_id else ""
        what = f" ({type(command).__name__})" if command is not None else ""
        super().__init__(f"command{what} rejected{where}: {reason}")


class ConcurrencyConflict(NonstopError):
    """An append expected a stream position that another writer took first."""

    def __init__(self, conflicts: Sequence[tuple[str, int]]) -> None:
        self.conflicts = list(conflicts)
        shown = ", ".join(f"{sid!r} at position {pos}" for sid, pos in self.conflicts)
        super().__init__(
            f"concurrent write to stream(s) {shown}: another writer appended "
            "first; re-read the stream and decide again"
        )


class ConflictRetriesExhausted(NonstopError):
    """A command kept conflicting with concurrent writers and gave up."""

    def __init__(self, instance_id: str, attempts: int) -> None:
        self.instance_id = instance_id
        self.attempts = attempts
        super().__init__(
            f"instance {instance_id!r}: command still conflicted after {attempts} "
            "attempts; another process writes to it heavily. Retry later."
        )


class StoreUnavailable(NonstopError, ConnectionError):
    """The event store cannot be reached or opened."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"event store {url} is unavailable: {reason}. "
            "Check the URL (--store or NONSTOP_STORE) and that the server runs."
        )


class EventDecodeError(NonstopError, ValueError):
    """A stored event could not be decoded."""

    def __init__(
        self, stream_id: str, position: int, type_name: str, reason: str
    ) -> None:
        self.stream_id = stream_id
        self.position = position
        self.type_name = type_name
        self.reason = reason
        super().__init__(
            f"cannot decode event {type_name!r} at position {position} of stream "
            f"{stream_id!r}: {reason}. Register an upcaster for its schema version "
            "or fix the event definition; stored events are never rewritten."
        )


class WorkflowCodeError(NonstopError):
    """A workflow's ``decide`` or ``evolve`` raised something other than a rejection.

    Nothing was written; the instance stays where it was.
    """

    def __init__(self, workflow: str, instance_id: str, where: str, exc: BaseException):
        self.workflow = workflow
        self.instance_id = instance_id
        self.where = where
        super().__init__(
            f"{workflow} {where} failed for instance {instance_id!r}: {exc!r}. "
            "Nothing was written; fix the workflow code or raise CommandRejected "
            "for commands it should refuse."
        )


class MigrationError(NonstopError, ValueError):
    """An instance cannot be migrated to the requested version; nothing was written."""

    def __init__(self, instance_id: str, target: str, reason: str) -> None:
        self.instance_id = instance_id
        self.target = target
        self.reason = reason
        super().__init__(
            f"cannot migrate instance {instance_id!r} to {target}: {reason}. "
            "Nothing was written for it; fix the mapper or leave the instance on "
            "its version."
        )


# rollout errors


class RolloutError(NonstopError):
    """A rollout plan is malformed, or a rollout command does not apply."""
