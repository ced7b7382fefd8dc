"""The error tree of nonstop: one base class, precise subclasses, one module.

Every error of the project lives here (the core, the store, the runtime and the
edges: deployments, flags, Kafka, projections, upcasters, the CLI), so callers
catch :class:`NonstopError` or a precise subclass without importing an edge.

Every error names the offending value and says what to do about it. Each one
pickles with its fields and its message (see :meth:`NonstopError.__reduce__`):
errors cross process boundaries (worker pools, multiprocessing tests) intact.

It is longer than most modules on purpose: one module for the whole tree, so
no error is defined twice and ``engine`` exports them all from one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AlreadyReplayed",
    "AppLoadError",
    "AppendModeMismatch",
    "BrokerUnavailable",
    "CanaryActive",
    "CommandInputError",
    "CommandRejected",
    "CommitInDoubt",
    "ConcurrencyConflict",
    "ConfigError",
    "ConflictRetriesExhausted",
    "ConsoleError",
    "ConsoleTokensError",
    "CorruptStream",
    "DeadLetterNotFound",
    "DeployConflict",
    "DeployError",
    "DeploySourceError",
    "DuplicateRegistration",
    "EventDecodeError",
    "EventFromNewerCode",
    "FlagError",
    "InstanceExists",
    "InvalidPage",
    "MapperLoadError",
    "MappingError",
    "MappingLoadError",
    "MigrationError",
    "MissingExtra",
    "NonstopError",
    "ProjectionDefinitionError",
    "ProjectionError",
    "ProjectionStateError",
    "ProjectionsLoadError",
    "PublishBlocked",
    "PublishUsageError",
    "ReadModelUnavailable",
    "ReplayDiverged",
    "RetireRefused",
    "RolloutError",
    "SchemaLockError",
    "SkipRefused",
    "SnapshotMigrationError",
    "StoreNotFound",
    "StoreUnavailable",
    "UnknownEventType",
    "UnknownInstance",
    "UnknownProjection",
    "UnknownWorkflow",
    "UnsupportedFieldType",
    "UpcastChainError",
    "VerifyError",
    "VerifyFailed",
    "WorkflowCodeError",
    "WorkflowDefinitionError",
]


def _rebuild(
    cls: type[NonstopError], args: tuple[Any, ...], fields: dict[str, Any]
) -> NonstopError:
    """Recreate a pickled error without running its ``__init__`` again."""
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(fields)
    return err


class NonstopError(Exception):
    """Base class of every error raised by nonstop."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as (class, message arguments, fields).

        ``__init__`` is not called again on unpickling: the message is already
        composed, so it is neither recomposed from it (no doubled prefixes) nor
        does it need the constructor's signature.
        """
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


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


class InvalidPage(NonstopError, ValueError):
    """A listing page asked for with a bad size or cursor."""


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


class CommitInDoubt(StoreUnavailable):
    """The connection failed after an append may have reached the server.

    The store may or may not have committed the append. The engine resolves it
    by reading back the records at the expected positions (their idempotency
    keys say whose they are); it never decides the command again.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        NonstopError.__init__(
            self,
            f"event store {url}: the store may or may not have committed the "
            f"append ({reason}). Read the stream back to learn whether it did; "
            "do not decide the command again.",
        )


class StoreNotFound(StoreUnavailable):
    """No nonstop store exists at the URL, and it was opened without creating one."""

    def __init__(self, url: str, reason: str = "") -> None:
        self.url = url
        self.reason = reason
        detail = f" ({reason})" if reason else ""
        NonstopError.__init__(
            self,
            f"no nonstop store at {url}{detail}; check the URL (--store or "
            "NONSTOP_STORE), or create one with `nonstop init`",
        )


class AppendModeMismatch(NonstopError, ValueError):
    """A store was opened asking for an append mode other than the one it records.

    Every process on a store must append the same way, so the mode is recorded
    in the store and changed only by ``nonstop store appends MODE``.
    """

    def __init__(self, url: str, recorded: str, requested: str) -> None:
        self.url = url
        self.recorded = recorded
        self.requested = requested
        super().__init__(
            f"event store {url} appends {recorded}; this process asks for "
            f"appends={requested}. Drop the option to follow the store, or switch "
            f"every process with `nonstop store appends {requested}`."
        )


class CorruptStream(NonstopError, ValueError):
    """A stored stream cannot be replayed: a gap in its positions or no start.

    Raised alike by ``get``, ``history``, replay and the instances read model.
    """

    def __init__(self, stream_id: str, position: int, reason: str) -> None:
        self.stream_id = stream_id
        self.position = position
        self.reason = reason
        super().__init__(
            f"stream {stream_id!r} is corrupt at position {position}: {reason}. "
            "Stored events are never rewritten: restore the missing records from "
            "a backup, or leave the instance out of processing."
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


class EventFromNewerCode(EventDecodeError):
    """A stored event's schema is newer than the code reading it."""

    def __init__(
        self, stream_id: str, position: int, type_name: str, stored: int, known: int
    ) -> None:
        self.stored = stored
        self.known = known
        super().__init__(
            stream_id,
            position,
            type_name,
            f"it was written by newer code (schema {stored}; this code knows "
            f"schema {known}). Deploy the code that defines schema {stored} here",
        )


class WorkflowCodeError(NonstopError):
    """A workflow's ``decide`` or ``evolve`` raised something other than a rejection.

    Nothing was written; the instance stays where it was.
    """

    def __init__(
        self, workflow: str, instance_id: str, where: str, exc: BaseException
    ) -> None:
        self.workflow = workflow
        self.instance_id = instance_id
        self.where = where
        self.exc_repr = repr(exc)
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


class SnapshotMigrationError(NonstopError, ValueError):
    """A snapshot migration was asked for with bad settings."""


# ------------------------------------------------------------------ upcasters


class UpcastChainError(NonstopError, ValueError):
    """Upcaster chains are inconsistent (a gap, a duplicate, a wrong end)."""


class SchemaLockError(NonstopError, ValueError):
    """A schema lock file is missing or malformed."""


class UnsupportedFieldType(NonstopError, ValueError):
    """A locked field type has no built-in strategy; pass one in ``overrides``."""


# ---------------------------------------------------------------- deployments


class DeployError(NonstopError, ValueError):
    """A deployment command is not possible in the registry's current state."""


class DeploySourceError(DeployError):
    """The ``MOD:ATTR`` of a deployment does not name the workflow version."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"cannot load deployment source {source!r}: {reason}. Pass "
            "MODULE:ATTRIBUTE naming a Workflow (or a function returning one) "
            "with that name and version, importable by every worker"
        )


class VerifyError(DeployError):
    """A verification cannot run as asked (bad selection, jobs without a URL)."""


class VerifyFailed(DeployError):
    """Candidate code folds stored histories differently; nothing was deployed."""

    def __init__(self, ref: str, divergences: Sequence[str]) -> None:
        self.ref = ref
        self.divergences = list(divergences)
        """One line per divergent instance: instance, position, type, diff."""
        first = self.divergences[0] if self.divergences else "?"
        super().__init__(
            f"refused: the new code of {ref} replays {len(self.divergences)} "
            f"instance(s) differently (first: {first}); deploy the change as a "
            "new version, or pass --force --reason WHY to overwrite anyway"
        )


class ReplayDiverged(NonstopError, AssertionError):
    """A recorded history folds to a different state under the current code."""

    def __init__(
        self, instance_id: str, position: int, event_type: str, detail: str
    ) -> None:
        self.instance_id = instance_id
        self.position = position
        self.event_type = event_type
        self.detail = detail
        super().__init__(
            f"instance {instance_id!r} diverges at position {position} "
            f"({event_type}): {detail}"
        )


class RetireRefused(DeployError):
    """A version still has running instances (or still gets new ones)."""


class DeployConflict(DeployError):
    """Another change of the same registry stream won the race; nothing written."""


class CanaryActive(DeployError):
    """A canary is asked for while another one is active (pass ``replace``)."""


class FlagError(NonstopError, ValueError):
    """A flag definition or evaluation request is malformed."""


class ConfigError(NonstopError, ValueError):
    """A configuration document is refused; nothing was written.

    It is unparsable, mistyped, out of bounds, has an unknown field, or breaks
    a rule of the config type. The message names the field and, when a
    running version refused it, that version.
    """


class MapperLoadError(NonstopError, ValueError):
    """The ``--mapper`` value does not name a function."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(
            f"cannot load the mapper {spec!r}: {reason}. Pass MODULE:ATTRIBUTE "
            "naming a function old_state -> new_state"
        )


# ---------------------------------------------------------------------- kafka


class BrokerUnavailable(NonstopError, ConnectionError):
    """The Kafka broker cannot be reached or started."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(
            f"Kafka broker {where} is unavailable: {reason}. Check the --kafka "
            "HOST:PORT and that the broker runs (or omit it where the command "
            "starts one itself)."
        )


class MappingLoadError(NonstopError, ValueError):
    """``--mapping MOD:ATTR`` does not name a callable."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(
            f"cannot load the mapping {spec!r}: {reason}. Pass --mapping "
            "MODULE:ATTRIBUTE naming a function message -> Start | Send | None"
        )


class MappingError(NonstopError, ValueError):
    """A mapping returned something other than ``Start``, ``Send`` or ``None``."""

    def __init__(self, got: object) -> None:
        self.got = got
        super().__init__(
            f"the mapping returned a {type(got).__name__} ({got!r:.80}); it must "
            "return engine.Start, engine.Send or None (to skip the message)"
        )


class DeadLetterNotFound(NonstopError, LookupError):
    """No dead letter has the requested id."""

    def __init__(self, letter_id: int) -> None:
        self.letter_id = letter_id
        super().__init__(
            f"no dead letter with id {letter_id}; list them with "
            "`nonstop deadletters list`"
        )


class AlreadyReplayed(NonstopError, ValueError):
    """A dead letter was replayed before; it is not produced twice."""

    def __init__(self, letter_id: int, topic: str) -> None:
        self.letter_id = letter_id
        self.topic = topic
        super().__init__(
            f"dead letter {letter_id} was already replayed to {topic!r}; "
            "`nonstop deadletters list --all` shows it"
        )


class PublishBlocked(NonstopError):
    """The publisher cannot publish an event; everything before it is published."""

    def __init__(
        self, publisher: str, global_position: int, where: str, reason: str
    ) -> None:
        self.publisher = publisher
        self.global_position = global_position
        self.where = where
        self.reason = reason
        super().__init__(
            f"{publisher} stopped at global position {global_position} ({where}): "
            f"{reason}. Everything before it is published. Fix the code that "
            "reads it, or skip it with `nonstop publish skip "
            f"{global_position} --topic TOPIC --reason WHY`"
        )


class SkipRefused(NonstopError, ValueError):
    """``publish skip`` named a position that cannot be skipped."""

    def __init__(self, publisher: str, global_position: int, reason: str) -> None:
        self.publisher = publisher
        self.global_position = global_position
        self.reason = reason
        super().__init__(
            f"cannot skip global position {global_position} for {publisher}: {reason}"
        )


class PublishUsageError(NonstopError, ValueError):
    """``nonstop publish`` without the options it needs."""

    def __init__(self, missing: str) -> None:
        self.missing = missing
        super().__init__(
            f"publish needs {missing}: nonstop publish --kafka HOST:PORT --topic T"
        )


class RolloutError(NonstopError):
    """A rollout plan is malformed, or a rollout command does not apply."""


# ---------------------------------------------------------------- projections


class ProjectionError(NonstopError):
    """Base class of the errors raised by projections."""


class ProjectionDefinitionError(ProjectionError, ValueError):
    """A projection is declared wrongly (name, version, tables, handlers)."""


class ReadModelUnavailable(ProjectionError, ConnectionError):
    """The read-model database cannot be reached or opened."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"read-model database {url} is unavailable: {reason}. "
            "Check the URL (--db, else the event store's) and that the server runs."
        )


class UnknownProjection(ProjectionError, LookupError):
    """No projection of that name is known to the read-model database or code."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        choices = ", ".join(known) or "none"
        super().__init__(
            f"unknown projection {name!r}; known: {choices}. "
            "Run it once (`nonstop projections run --once`) or check the name."
        )


class ProjectionStateError(ProjectionError):
    """An operator action does not fit the projection's current state."""


# -------------------------------------------------------------------- console


class ConsoleError(NonstopError):
    """The operations console refuses a request (bad input, auth, read-only)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        """The HTTP status code the console answers with (4xx)."""
        super().__init__(message)


class ConsoleTokensError(NonstopError, ValueError):
    """A console tokens file or ``NONSTOP_CONSOLE_TOKENS`` entry is malformed."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        self.source = source
        """The file name, or the environment variable."""
        self.line = line
        """The 1-based line (file) or entry (environment) at fault."""
        self.problem = problem
        """What is wrong with it."""
        where = "entry" if source.startswith("$") else "line"
        at = f"{source}, {where} {line}" if line else source
        super().__init__(f"{at}: {problem}")


# ------------------------------------------------------------------------ cli


class AppLoadError(NonstopError, ValueError):
    """The ``--app`` value does not name a workflow registry."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(
            f"cannot load the app {spec!r}: {reason}. Pass --app MODULE:ATTRIBUTE "
            "(or set NONSTOP_APP) naming a WorkflowRegistry or a function "
            "returning one"
        )


class CommandInputError(NonstopError, ValueError):
    """A command name or ``--input`` the workflow cannot take."""


class MissingExtra(NonstopError, ImportError):
    """A feature needs a package that an extra of ``nonstop`` installs."""

    def __init__(self, module: str, extra: str, feature: str) -> None:
        self.module = module
        self.extra = extra
        self.feature = feature
        super().__init__(
            f"{feature} needs the Python package {module!r}, which is not "
            f"installed. Install the extra: pip install 'nonstop[{extra}]'"
        )


class ProjectionsLoadError(NonstopError, ValueError):
    """``--projections`` does not name projections."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(
            f"cannot load projections from {spec!r}: {reason}. Pass --projections "
            "MODULE:ATTRIBUTE naming a Projection, a list of them, or a function "
            "returning either"
        )
