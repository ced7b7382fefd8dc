"""Workflow definitions, the decider context, and the version registry (pure)."""

from __future__ import annotations

import random as _random
import re
import uuid as _uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Generic, Literal, TypeVar

import msgspec

from engine.core.config import CONFIG_KEY, ConfigReader
from engine.core.effects import Requests
from engine.core.errors import (
    DuplicateRegistration,
    UnknownWorkflow,
    WorkflowDefinitionError,
)

__all__ = [
    "Context",
    "FlagReader",
    "ListingStatus",
    "Status",
    "Workflow",
    "WorkflowRegistry",
    "fold",
    "parse_ref",
]

S = TypeVar("S")
Status = Literal["running", "completed", "failed", "cancelled"]
ListingStatus = Literal["running", "completed", "failed", "cancelled", "unreadable"]
"""A status in listings: a workflow :data:`Status`, or ``unreadable`` for an
instance whose stored events cannot be replayed (the listing names the error)."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Workflow(Generic[S]):
    """One immutable version of a workflow's logic.

    Example:
        >>> orders_v1 = Workflow(
        ...     name="orders", version=1, state_type=Order,
        ...     initial=Order, decide=decide, evolve=evolve,
        ...     status=lambda s: s.status,
        ... )
    """

    name: str
    """Workflow name, shared by all its versions."""
    version: int
    """Version number; ``name@version`` identifies this logic for ever."""
    state_type: type[S]
    """Type of the state (a msgspec struct or any msgspec-encodable type)."""
    initial: Callable[[], S]
    """Builds the state before the first event."""
    decide: Callable[[S, Any, Context], Sequence[Any]]
    """``decide(state, command, ctx) -> events``; raise CommandRejected to refuse."""
    evolve: Callable[[S, Any], S]
    """``evolve(state, event) -> state``, pure."""
    status: Callable[[S], Status]
    """Tells whether a state is running, completed or failed (the terminal ones).

    The engine itself reports ``cancelled`` for an instance an operator
    cancelled (``nonstop.Cancelled``), whatever this returns."""
    snapshot_every: int = 0
    """Write a snapshot every N events (0: never)."""
    description: str = ""
    """Free text shown by the CLI."""
    state_schema: int = 1
    """Schema version of the state; bump it when ``state_type`` changes shape.

    Snapshots record it: an older snapshot is brought up to date by state
    upcasters (``UpcasterRegistry.add_state``) or ignored and rebuilt from
    events."""
    on_cancel: Callable[[S, Any, Context], Sequence[Any]] | None = None
    """Optional ``on_cancel(state, cancel, ctx) -> events``: the workflow's own
    handling of an operator's cancel (``cancel`` is an
    :class:`~engine.core.events.Cancelled`). Its events are folded with
    ``evolve`` and written before ``nonstop.Cancelled``; raising
    ``CommandRejected`` refuses the cancel. Without it the engine records the
    cancel alone."""
    inputs: tuple[type[Any], ...] = ()
    """Types a start input may have (the first command, given to ``start``).

    Locked by ``nonstop schema lock`` and drawn by ``engine.testing``; when
    empty, the types named by ``decide``'s command annotation are used."""
    commands: tuple[type[Any], ...] = ()
    """Types of the commands ``send`` gives a running instance (as for
    ``inputs``; when empty, ``decide``'s command annotation)."""
    config: type[Any] | None = None
    """Optional config type (a ``msgspec.Struct`` with defaults) deciders read
    as ``ctx.config``; see :mod:`engine.core.config`."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise WorkflowDefinitionError(
                f"workflow name {self.name!r} must start with a letter or underscore "
                "and contain only letters, digits, '_', '.', '-'"
            )
        if (
            not isinstance(self.version, int)
            or isinstance(self.version, bool)
            or self.version < 1
        ):
            raise WorkflowDefinitionError(
                f"workflow {self.name!r}: version {self.version!r} must be an int >= 1"
            )
        if self.snapshot_every < 0:
            raise WorkflowDefinitionError(
                f"{self.ref}: snapshot_every={self.snapshot_every} must be >= 0"
            )
        for kind, given in (("inputs", self.inputs), ("commands", self.commands)):
            if not isinstance(given, tuple) or not all(
                isinstance(t, type) for t in given
            ):
                raise WorkflowDefinitionError(
                    f"{self.ref}: {kind}={given!r} must be a tuple of classes"
                )
        if (
            not isinstance(self.state_schema, int)
            or isinstance(self.state_schema, bool)
            or self.state_schema < 1
        ):
            raise WorkflowDefinitionError(
                f"{self.ref}: state_schema={self.state_schema!r} must be an int >= 1"
            )

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @cached_property
    def state_key(self) -> str:
        """``name@version#fingerprint#state_schema``, stored with each snapshot.

        A snapshot whose key matches is used as it is; one of the same version at
        an older state schema is upcast; any other is ignored.
        """
        schema = msgspec.json.encode(msgspec.json.schema(self.state_type))
        digest = _uuid.uuid5(_uuid.NAMESPACE_URL, schema.decode()).hex[:16]
        return f"{self.ref}#{digest}#{self.state_schema}"

    def terminal(self, state: S) -> bool:
        """True when ``state`` is completed or failed."""
        return self.status(state) != "running"


def fold(workflow: Workflow[S], state: S, events: Iterable[Any]) -> S:
    """Replay: fold ``events`` into ``state`` with the workflow's reducer."""
    evolve = workflow.evolve
    for e in events:
        state = evolve(state, e)
    return state


FlagReader = Callable[[str, str, Any], Any]
"""``reader(kind, name, default)`` evaluates a feature flag (kind ``flag`` or
``variant``) for the instance being decided; it may raise (the default is used)."""


class Context:
    """What a decider may read besides state and command: clock, randomness, flags.

    Every value read is recorded in order and stored with the events of the
    decision, so running the decider again over the recorded history (to prove a
    new version safe) sees exactly the same values. A feature flag is evaluated
    once per instance: later decisions of the instance see the first value.
    """

    __slots__ = (
        "_configs",
        "_flags",
        "_replay",
        "instance_id",
        "pinned",
        "recorded",
        "requests",
        "workflow",
    )

    def __init__(
        self,
        instance_id: str,
        workflow: str,
        *,
        replay: Sequence[Any] | None = None,
        flags: FlagReader | None = None,
        pinned: dict[str, Any] | None = None,
        configs: ConfigReader | None = None,
    ) -> None:
        self.instance_id = instance_id
        """The instance being decided."""
        self.workflow = workflow
        """``name@version`` being run."""
        self.recorded: list[Any] = []
        """``[kind, value]`` pairs read so far."""
        self.pinned: dict[str, Any] = dict(pinned) if pinned else {}
        """Flag values this instance already evaluated, by flag name."""
        self._replay = list(replay) if replay is not None else None
        self._flags = flags
        self._configs = configs
        self.requests = Requests()
        """Effects and timers asked for (see :mod:`engine.core.effects`)."""

    def _value(self, kind: str, make: Callable[[], Any]) -> Any:
        if self._replay is not None:
            index = len(self.recorded)
            if index >= len(self._replay) or self._replay[index][0] != kind:
                raise WorkflowDefinitionError(
                    f"{self.workflow} read ctx.{kind}() at step {index}, which the "
                    "recorded history does not have: the decider is not deterministic"
                )
            value = self._replay[index][1]
        else:
            value = make()
        self.recorded.append([kind, value])
        return value

    def now(self) -> datetime:
        """The current time (UTC), recorded."""
        micros = self._value("now", lambda: datetime.now(UTC).timestamp() * 1e6)
        return datetime.fromtimestamp(micros / 1e6, tz=UTC)

    def random(self) -> float:
        """A float in [0, 1), recorded."""
        return float(self._value("random", _random.random))

    def uuid(self) -> str:
        """A random UUID as hex, recorded."""
        return str(self._value("uuid", lambda: _uuid.uuid4().hex))

    def flag(self, name: str, default: bool = False, *, live: bool = False) -> bool:
        """Whether boolean or percentage flag ``name`` is on for this instance.

        The first evaluation per instance is recorded; an unknown flag or an
        evaluation error yields ``default``. A ``live`` read follows the flag
        (a change or kill reaches the instance at its next decision) and is
        recorded at every read.
        """
        return bool(self._flag("flag", name, default, live))

    def variant(self, name: str, default: str, *, live: bool = False) -> str:
        """The variant of flag ``name`` for this instance (``default`` if none)."""
        return str(self._flag("variant", name, default, live))

    @property
    def config(self) -> Any:
        """The workflow's typed config, at the version this instance first read.

        The version is recorded at the first read per instance; later
        decisions and replays read that version again.
        """
        reader = self._config_reader()
        if CONFIG_KEY in self.pinned:
            return reader(self.pinned[CONFIG_KEY])[1]
        got: list[tuple[int, Any]] = []
        version = self._value("flag", lambda: [CONFIG_KEY, _read(reader, got)])[1]
        self.pinned[CONFIG_KEY] = version
        return got[0][1] if got else reader(version)[1]

    @property
    def config_latest(self) -> Any:
        """The workflow's typed config at the latest version (recorded per read)."""
        reader = self._config_reader()
        got: list[tuple[int, Any]] = []
        version = self._value("config", lambda: _read(reader, got))
        return got[0][1] if got else reader(version)[1]

    def _config_reader(self) -> ConfigReader:
        if self._configs is None:
            raise WorkflowDefinitionError(
                f"{self.workflow} reads ctx.config but no config is available: "
                "declare the type with Workflow(config=MyConfig)"
            )
        return self._configs

    def request(self, effect: Any, *, version: int = 1) -> None:
        """Ask for an effect, run after the decision commits (its outbox).

        The handler registered for the effect's type name (its class name, or
        its ``__effect_type__``) at ``version`` runs at least once; its result
        comes back as an :class:`~engine.core.effects.EffectCompleted` or
        :class:`~engine.core.effects.EffectFailed` command.
        """
        self.requests.effect(effect, version)

    def after(self, delay: timedelta, command: Any, *, key: str | None = None) -> None:
        """Send ``command`` to this instance ``delay`` after now (recorded).

        ``key`` names the timer for :meth:`cancel_timer`; setting a key again
        re-arms it.
        """
        due = self.now() + delay
        self.requests.timer(int(due.timestamp() * 1e6), command, key)

    def at(self, when: datetime, command: Any, *, key: str | None = None) -> None:
        """Send ``command`` to this instance at ``when`` (an aware datetime)."""
        if when.tzinfo is None:
            raise WorkflowDefinitionError(
                f"ctx.at({when!r}): give an aware datetime (tzinfo=UTC)"
            )
        self.requests.timer(int(when.timestamp() * 1e6), command, key)

    def cancel_timer(self, key: str) -> None:
        """Cancel this instance's pending timer ``key`` with this decision."""
        self.requests.cancel(key)

    def _flag(self, kind: str, name: str, default: Any, live: bool = False) -> Any:
        if name in self.pinned and not live:
            return self.pinned[name]
        reader = self._flags

        def evaluate() -> Any:
            if reader is None:
                return default
            try:
                return reader(kind, name, default)
            except Exception:  # a flag must never fail a workflow
                return default

        if live:
            return self._value("live", lambda: [name, evaluate()])[1]
        value = self._value("flag", lambda: [name, evaluate()])[1]
        self.pinned[name] = value
        return value


def _read(reader: ConfigReader, into: list[tuple[int, Any]]) -> int:
    """The version ``reader`` serves now, keeping its config in ``into``."""
    into.append(reader(None))
    return into[0][0]


@dataclass
class WorkflowRegistry:
    """Resolves ``name@version`` to a definition; several versions live together."""

    _by_ref: dict[tuple[str, int], Workflow[Any]] = field(default_factory=dict)
    _current: dict[str, int] = field(default_factory=dict)

    def register(self, *workflows: Workflow[Any]) -> None:
        """Add definitions. Re-registering the same object is a no-op.

        Raises:
            DuplicateRegistration: another definition already has that
                ``name@version``; versions are immutable, deploy a new one instead.
        """
        for wf in workflows:
            key = (wf.name, wf.version)
            known = self._by_ref.get(key)
            if known is not None and known is not wf:
                raise DuplicateRegistration(
                    f"{wf.ref} is already registered; a version is immutable, "
                    "register the change as a new version"
                )
            self._by_ref[key] = wf

    def get(self, name: str, version: int | None = None) -> Workflow[Any]:
        """The definition of ``name@version``, or the current version of ``name``.

        Raises:
            UnknownWorkflow: no such workflow or version.
        """
        if version is None:
            version = self.current_version(name)
        try:
            return self._by_ref[(name, version)]
        except KeyError:
            raise UnknownWorkflow(name, version, self.refs()) from None

    def current_version(self, name: str) -> int:
        """The version new instances of ``name`` get (the newest unless set).

        Raises:
            UnknownWorkflow: no version of ``name`` is registered.
        """
        if name in self._current:
            return self._current[name]
        versions = self.versions(name)
        if not versions:
            raise UnknownWorkflow(name, None, self.refs())
        return versions[-1]

    def set_current(self, name: str, version: int) -> None:
        """Route new instances of ``name`` to ``version``.

        Raises:
            UnknownWorkflow: that version is not registered.
        """
        self.get(name, version)
        self._current[name] = version

    def versions(self, name: str) -> list[int]:
        """Registered versions of ``name``, ascending."""
        return sorted(v for (n, v) in self._by_ref if n == name)

    def names(self) -> list[str]:
        """Registered workflow names, sorted."""
        return sorted({n for (n, _) in self._by_ref})

    def refs(self) -> list[str]:
        """Every registered ``name@version``, sorted."""
        return [f"{n}@{v}" for (n, v) in sorted(self._by_ref)]


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``name@version`` (or a bare ``name``).

    Raises:
        WorkflowDefinitionError: the version part is not a positive integer.
    """
    name, sep, version = ref.partition("@")
    if not name:
        raise WorkflowDefinitionError(
            f"bad workflow reference {ref!r}: the name before '@' is empty"
        )
    if not sep:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise WorkflowDefinitionError(
            f"bad workflow reference {ref!r}: expected name@version with version >= 1"
        )
    return name, int(version)
