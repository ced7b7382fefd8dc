"""Events: msgspec structs registered under a stable type name and schema version.

An event is stored as an *envelope*: a msgpack array whose first item is the
schema version, then the event payload, then the metadata (recorded-at,
``workflow@version``, command, correlation and causation ids, and the values the
decider read from its context). The type name travels beside the envelope (it is
the stored record's topic), so the reader picks a typed decoder for it before it
looks at the bytes. :mod:`engine.core.codec` encodes and decodes envelopes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from engine.core.errors import (
    DuplicateRegistration,
    UnknownEventType,
    WorkflowDefinitionError,
)

if TYPE_CHECKING:  # upcasters imports engine.core.errors: no import cycle at run time
    pass

__all__ = [
    "RESERVED_STREAM_PREFIX",
    "SYSTEM_TYPES",
    "Cancelled",
    "Envelope",
    "EventType",
    "EventTypeRegistry",
    "Metadata",
    "Migrated",
    "RecordedEvent",
    "Started",
    "default_event_types",
    "event",
    "is_reserved_stream",
    "now_micros",
    "stored_schema",
]

E = TypeVar("E", bound=msgspec.Struct)
T = TypeVar("T")


# Decoded by the hundred thousand and never part of a reference cycle: not
# tracked by the garbage collector, whose passes would otherwise cost more
# than the decoding (gc=False; user code must not make one refer to itself).
class Envelope(msgspec.Struct, Generic[T], array_like=True, frozen=True, gc=False):
    """The stored form of one event (the schema version comes first)."""

    schema: int
    """Schema version of ``data``."""
    data: T
    """The event payload."""
    recorded_at: int
    """Microseconds since the Unix epoch, UTC."""
    workflow: str
    """``name@version`` of the workflow that wrote it."""
    command_id: str | None = None
    """Id of the command that produced it."""
    correlation_id: str | None = None
    """Id shared by everything one business request caused."""
    causation_id: str | None = None
    """Id of the message that directly caused it."""
    ctx: list[Any] | None = None
    """Values the decider read from its context, in the order read."""
    key: str | None = None
    """Idempotency key of the decision, on its first event, when the command
    came without a caller's command id (which is the key otherwise). After a
    commit in doubt the engine reads the stored bytes back to recognise its own
    write; replay ignores it, so it never grows the instance's command ids."""
    digest: int | None = None
    """BLAKE2b-64 of the state after the decision (:mod:`engine.core.digest`),
    on the last event of each decision; None on the others and on events
    written before digests existed. ``nonstop verify`` compares replays with it."""


class Metadata(msgspec.Struct, frozen=True):
    """Metadata written with every event of one decision."""

    workflow: str
    """``name@version``."""
    command_id: str | None = None
    """Id of the command (for idempotence)."""
    correlation_id: str | None = None
    """Correlation id."""
    causation_id: str | None = None
    """Causation id."""


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as read back from the store, with its metadata."""

    stream_id: str
    """Instance id."""
    position: int
    """Position in the stream, from 1."""
    global_position: int
    """Position in the store's global order."""
    type: str
    """Stable type name."""
    schema: int
    """Schema version it was decoded at (the current one after upcasting)."""
    stored_schema: int
    """Schema version it was written with."""
    event: Any
    """The decoded event struct."""
    recorded_at: int
    """Microseconds since the Unix epoch, UTC."""
    workflow: str
    """``name@version`` that wrote it."""
    command_id: str | None
    """Command id."""
    correlation_id: str | None
    """Correlation id."""
    causation_id: str | None
    """Causation id."""
    ctx: list[Any] | None
    """Recorded context values."""

    @property
    def recorded_datetime(self) -> datetime:
        """``recorded_at`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.recorded_at / 1e6, tz=UTC)


@dataclass(frozen=True, slots=True)
class EventType:
    """A registered event type."""

    name: str
    """Stable type name stored with every event."""
    schema: int
    """Current schema version."""
    cls: type[msgspec.Struct]
    """The struct that holds it."""
    decoder: msgspec.msgpack.Decoder[Envelope[Any]]
    """Typed decoder of envelopes holding this type."""


class Started(msgspec.Struct, frozen=True):
    """The first event of every instance: pins its workflow version."""

    workflow: str
    """Workflow name."""
    version: int
    """The version the instance runs under until it finishes."""
    input_type: str
    """Type name of the start input."""
    input: bytes
    """The start input, msgpack-encoded."""
    routing_key: str | None = None
    """Business key used for routing, when one was given."""


class Migrated(msgspec.Struct, frozen=True):
    """An operator moved an in-flight instance to another version of its workflow.

    Replay folds the events before it with the old version's reducer, takes
    ``state`` as the new state, and folds the events after it with the new one.
    """

    workflow: str
    """Workflow name."""
    from_version: int
    """The version the instance ran under until here."""
    to_version: int
    """The version it runs under from here on."""
    state: bytes
    """The state mapped to the new version, msgpack-encoded."""
    by: str = ""
    """Who migrated it."""
    reason: str = ""
    """Why."""


class Cancelled(msgspec.Struct, frozen=True):
    """An operator cancelled an instance: it takes no more commands.

    Replay folds it into the status ``cancelled`` without asking the workflow's
    reducer; the events a workflow's ``on_cancel`` decided come right before it.
    """

    workflow: str
    """Workflow name."""
    version: int
    """The version the instance ran under."""
    reason: str
    """Why it was cancelled."""
    by: str = ""
    """Who cancelled it."""


SYSTEM_TYPES = frozenset({"nonstop.Started", "nonstop.Migrated", "nonstop.Cancelled"})

RESERVED_STREAM_PREFIX = "nonstop."
"""Stream ids starting with it are the engine's own (the deployments registry,
flags), not workflow instances: readers of the global order skip them."""


def is_reserved_stream(stream_id: str) -> bool:
    """True for the engine's own streams (see :data:`RESERVED_STREAM_PREFIX`)."""
    return stream_id.startswith(RESERVED_STREAM_PREFIX)


class EventTypeRegistry:
    """Maps stable type names to event structs and back.

    Every registry starts with the engine's system events (``nonstop.Started``,
    ``nonstop.Migrated``, ``nonstop.Cancelled``), which any engine must be able to read.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, EventType] = {}
        self._by_cls: dict[type[Any], EventType] = {}
        self.register(Started, "nonstop.Started")
        self.register(Migrated, "nonstop.Migrated")
        self.register(Cancelled, "nonstop.Cancelled")

    def register(self, cls: type[E], name: str, schema: int = 1) -> type[E]:
        """Register ``cls`` under ``name`` at schema version ``schema``.

        Raises:
            WorkflowDefinitionError: ``cls`` is not a msgspec struct, or the name or
                schema is invalid.
            DuplicateRegistration: ``name`` already belongs to another class.
        """
        if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
            raise WorkflowDefinitionError(
                f"event {name!r}: {cls!r} is not a msgspec.Struct subclass"
            )
        if not name or name != name.strip():
            raise WorkflowDefinitionError(
                f"event type name {name!r} is empty or padded"
            )
        if schema < 1:
            raise WorkflowDefinitionError(
                f"event {name!r}: schema version {schema} must be >= 1"
            )
        known = self._by_name.get(name)
        if known is not None:
            if known.cls is cls and known.schema == schema:
                return cls
            if _same_definition(known.cls, cls):
                # The same module imported again (hot reload): the new class wins.
                del self._by_cls[known.cls]
            else:
                raise DuplicateRegistration(
                    f"event type name {name!r} is already registered to "
                    f"{_qualname(known.cls)}; pick another name for {_qualname(cls)}"
                )
        entry = EventType(
            name=name,
            schema=schema,
            cls=cls,
            decoder=msgspec.msgpack.Decoder(Envelope[cls]),  # type: ignore[valid-type]
        )
        self._by_name[name] = entry
        self._by_cls[cls] = entry
        return cls

    def by_name(self, name: str) -> EventType:
        """The registered type called ``name``.

        Raises:
            UnknownEventType: nothing is registered under ``name``.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEventType(name) from None

    def of(self, obj: object) -> EventType:
        """The registered type of the event instance ``obj``.

        Raises:
            UnknownEventType: its class was never registered.
        """
        try:
            return self._by_cls[type(obj)]
        except KeyError:
            raise UnknownEventType(_qualname(type(obj))) from None

    def names(self) -> list[str]:
        """All registered type names, sorted."""
        return sorted(self._by_name)

    def __iter__(self) -> Iterator[EventType]:
        return iter(sorted(self._by_name.values(), key=lambda e: e.name))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def _qualname(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _same_definition(a: type[Any], b: type[Any]) -> bool:
    return _qualname(a) == _qualname(b)


_default = EventTypeRegistry()


def default_event_types() -> EventTypeRegistry:
    """The process-wide registry that :func:`event` writes to."""
    return _default


def event(
    name: str, *, schema: int = 1, registry: EventTypeRegistry | None = None
) -> Callable[[type[E]], type[E]]:
    """Class decorator registering a msgspec struct as an event type.

    Args:
        name: Stable type name stored with every event; never the Python path, so
            a class can move between modules without breaking stored events.
        schema: Current schema version of the payload (1 for a new type).
        registry: Where to register; the process-wide default when omitted.

    Example:
        >>> @event("OrderPlaced")
        ... class OrderPlaced(msgspec.Struct, frozen=True):
        ...     order_id: str
        ...     amount: int
    """
    target = registry if registry is not None else _default

    def wrap(cls: type[E]) -> type[E]:
        return target.register(cls, name, schema)

    return wrap


def stored_schema(data: bytes) -> int | None:
    """The schema version of an envelope, read from its first bytes.

    The envelope is a msgpack array whose first item is the schema version, so
    for versions below 128 it is the second byte. ``None`` when it cannot be
    read that way (the full decode then decides).
    """
    if len(data) > 1 and data[0] & 0xF0 == 0x90 and data[1] < 0x80:
        return data[1]
    return None


def now_micros() -> int:
    """The current time in microseconds since the Unix epoch."""
    return time.time_ns() // 1000
