"""The replay step: the one rule that folds a stored stream into an instance.

A stream begins with ``nonstop.Started`` at position 1, which pins the workflow
version; its positions follow each other without a gap; ``nonstop.Migrated``
switches the version and replaces the state; ``nonstop.Cancelled`` sets the
status ``cancelled`` (the workflow's reducer never sees it); every other event
is folded with the pinned version's ``evolve``. Command ids and flag values
recorded with the events are collected on the way (idempotence, pinned flags).

The runtime folds raw stored rows (:meth:`Replay.fold`, with a one-pass typed
decode for events at their current schema); the instances read model folds
events the projection runner has already decoded (:meth:`Replay.apply`). Both
go through the same checks and the same version switch, and raise the same
:class:`~engine.core.errors.CorruptStream` for a gap or a missing start.

It stays one module on purpose: it is the one replay rule, and its two entry
points must not drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from engine.core.codec import EventCodec, dropped
from engine.core.errors import (
    CorruptStream,
    EventDecodeError,
    NonstopError,
    UnknownInstance,
    WorkflowCodeError,
)
from engine.core.events import SYSTEM_TYPES, Migrated, RecordedEvent, Started
from engine.core.workflow import ListingStatus, Status, Workflow

_RUN = 512
"""Most events of one run decoded together (memory stays bounded)."""

__all__ = [
    "CANCELLED",
    "MIGRATED",
    "STARTED",
    "UNREADABLE",
    "Instance",
    "InstanceInfo",
    "RecordRow",
    "Replay",
    "WorkflowLookup",
    "checked",
    "error_text",
    "pinned_flags",
    "unreadable_info",
]

STARTED = "nonstop.Started"
"""Type name of the first event of every instance."""
MIGRATED = "nonstop.Migrated"
"""Type name of the event that moves an instance to another version."""
CANCELLED = "nonstop.Cancelled"
"""Type name of the event that ends an instance as cancelled."""

RecordRow = tuple[str, int, int, str, bytes]
"""A stored record as a plain tuple: stream id, position, global position, type
name, envelope bytes (the store's ``Record`` has the same fields in order)."""

R = TypeVar("R", bound=RecordRow)

WorkflowLookup = Callable[[str, int], Workflow[Any]]
"""``(name, version) -> Workflow``: a registry's ``get``."""


# msgspec structs rather than frozen dataclasses: a batch makes one result per
# message, and a frozen dataclass costs ten times as much to construct.
class InstanceInfo(msgspec.Struct, frozen=True):
    """Where one instance stands."""

    instance_id: str
    """Instance id (its stream id)."""
    workflow: str
    """Workflow name."""
    version: int
    """The version it is pinned to."""
    state: Any
    """Current state."""
    position: int
    """Position of its last event."""
    status: ListingStatus
    """running, completed, failed or cancelled; ``unreadable`` in a listing when
    its stored events cannot be replayed (see ``error``)."""
    applied: bool = True
    """False when a repeated command id was answered without applying it again."""
    error: str | None = None
    """Why an ``unreadable`` instance cannot be replayed (the error type and
    message, naming the position); None otherwise."""


@dataclass(slots=True)
class Instance:
    """A fully folded instance: what replay produces and the runtime caches."""

    workflow: Workflow[Any]
    """The version it runs under now."""
    state: Any
    """Its state after the event at ``position``."""
    position: int
    """Position of its last folded event."""
    commands: dict[str, int] = field(default_factory=dict)
    """Caller command id -> position of the event it produced."""
    key: str | None = None
    """The routing key given at start (flags bucket on it, else on the id)."""
    flags: dict[str, Any] | None = None
    """Flag values evaluated so far, pinned for the instance's life."""
    cancelled: bool = False
    """An operator cancelled it (``nonstop.Cancelled``): it takes no commands."""

    @property
    def status(self) -> Status:
        """``cancelled``, or what the workflow says of the state."""
        return "cancelled" if self.cancelled else self.workflow.status(self.state)

    def info(self, instance_id: str, *, applied: bool = True) -> InstanceInfo:
        """The public view of this instance."""
        wf = self.workflow
        return InstanceInfo(
            instance_id,
            wf.name,
            wf.version,
            self.state,
            self.position,
            "cancelled" if self.cancelled else wf.status(self.state),
            applied,
        )


UNREADABLE = (CorruptStream, EventDecodeError)
"""The errors that make an instance ``unreadable`` in listings (bad stored data;
``EventFromNewerCode`` is an ``EventDecodeError``)."""


def error_text(exc: BaseException) -> str:
    """An error as listings show it: its type name and message."""
    return f"{type(exc).__name__}: {exc}"


def unreadable_info(
    instance_id: str, workflow: str, version: int, exc: NonstopError
) -> InstanceInfo:
    """The listing entry of an unreadable instance, at the bad event's position."""
    position = int(getattr(exc, "position", 0))
    return InstanceInfo(
        instance_id,
        workflow,
        version,
        None,
        position,
        "unreadable",
        error=error_text(exc),
    )


def pinned_flags(
    flags: dict[str, Any] | None, recorded: list[Any]
) -> dict[str, Any] | None:
    """``flags`` plus the first flag evaluations found in a recorded context."""
    for item in recorded:
        if item[0] == "flag" and (flags is None or item[1][0] not in flags):
            flags = {**(flags or {}), item[1][0]: item[1][1]}
    return flags


def _no_start(stream_id: str, position: int, type_name: str) -> CorruptStream:
    return CorruptStream(
        stream_id,
        position,
        f"the stream does not begin with {STARTED} (it begins with {type_name!r})",
    )


def _check_first(stream_id: str, position: int, type_name: str) -> None:
    if type_name != STARTED:
        raise _no_start(stream_id, position, type_name)
    if position != 1:
        raise CorruptStream(
            stream_id, position, f"the stream begins at position {position}, not 1"
        )


def _gap(stream_id: str, position: int, last: int) -> CorruptStream:
    return CorruptStream(
        stream_id,
        position,
        f"a gap in its positions ({position} follows {last}; {last + 1} is missing)",
    )


def checked(stream_id: str, rows: Iterable[R]) -> Iterator[R]:
    """``rows`` of one whole stream, checked as they pass (for a history).

    Raises:
        CorruptStream: the first row is not ``nonstop.Started`` at position 1,
            or a position does not follow the one before it.
    """
    last = 0
    for row in rows:
        position = row[1]
        if last == 0:
            _check_first(stream_id, position, row[3])
        elif position != last + 1:
            raise _gap(stream_id, position, last)
        last = position
        yield row


class Replay:
    """Folds stored streams into :class:`Instance` objects (the one replay rule).

    Args:
        codec: Decodes (and upcasts) the stored events.
        workflow: Finds the workflow version a stream is pinned or migrated to
            (a registry's ``get``; it raises ``UnknownWorkflow``).
    """

    __slots__ = ("codec", "workflow")

    def __init__(self, codec: EventCodec, workflow: WorkflowLookup) -> None:
        self.codec = codec
        self.workflow = workflow

    def started(self, stream_id: str, row: RecordRow) -> tuple[Started, str | None]:
        """Decode a stream's first row; returns its ``Started`` and command id.

        Raises:
            CorruptStream: it is not ``nonstop.Started`` at position 1.
        """
        _, position, _, name, data = row
        _check_first(stream_id, position, name)
        payloads, command_id = self.codec.decode_payloads(
            stream_id, position, name, data
        )
        started: Started = payloads[0]
        return started, command_id

    def begin(self, started: Started, command_id: str | None) -> Instance:
        """The instance right after its ``Started`` event (position 1)."""
        wf = self.workflow(started.workflow, started.version)
        commands = {command_id: 1} if command_id is not None else {}
        return Instance(wf, wf.initial(), 1, commands, started.routing_key)

    def replay(self, stream_id: str, rows: Iterable[RecordRow]) -> Instance:
        """Fold a whole stream from its first row.

        Raises:
            UnknownInstance: ``rows`` is empty.
            CorruptStream: a missing start or a gap in the positions.
            EventDecodeError: an event cannot be decoded.
            WorkflowCodeError: ``evolve`` raised.
        """
        it = iter(rows)
        first = next(it, None)
        if first is None:
            raise UnknownInstance(stream_id)
        started, command_id = self.started(stream_id, first)
        return self.fold(stream_id, self.begin(started, command_id), it)

    def fold(
        self, stream_id: str, inst: Instance, rows: Iterable[RecordRow]
    ) -> Instance:
        """Fold the rows that follow ``inst.position`` into a new instance.

        ``inst`` is left as it is (a cached instance must not see the command
        ids of events past its own position); it is returned when ``rows`` is
        empty.

        Raises:
            CorruptStream: a position does not follow the one before it.
            EventDecodeError: an event cannot be decoded.
            WorkflowCodeError: ``evolve`` raised.
        """
        wf = inst.workflow
        evolve = wf.evolve
        types = self.codec.types._by_name.get
        decode_error = msgspec.DecodeError
        system = SYSTEM_TYPES
        state = inst.state
        position = inst.position
        found: dict[str, int] = {}
        flags = inst.flags
        cancelled = inst.cancelled
        # A run of events of one type and schema behind the code, decoded
        # together when the next event is not one of them (one msgspec call
        # for the envelopes, one for the conversion: see EventCodec.decode_run).
        run: list[tuple[int, bytes]] = []
        run_key: tuple[str, int] | None = None
        try:
            # enumerate counts in C: one comparison per row checks the gaps.
            for expected, (_, position, _, name, data) in enumerate(
                rows, inst.position + 1
            ):
                if position != expected:
                    raise _gap(stream_id, position, expected - 1)
                et = types(name)
                if name in system:
                    et = None  # never batched, never the fast path below
                # Fast path: the current schema decodes in one typed pass. The
                # test of stored_schema(data) == et.schema, inlined (hot loop).
                elif (
                    et is not None
                    and len(data) > 1
                    and data[0] & 0xF0 == 0x90
                    and data[1] == et.schema < 0x80
                ):
                    try:
                        env = et.decoder.decode(data)
                    except decode_error:
                        pass  # the general path reports it with its coordinates
                    else:
                        if run:
                            state, flags = self._run(
                                stream_id, wf, run_key, run, state, flags, found
                            )
                            run = []
                        state = evolve(state, env.data)
                        if env.command_id is not None:
                            found[env.command_id] = position
                        if env.ctx is not None:
                            flags = pinned_flags(flags, env.ctx)
                        continue
                elif len(data) > 1 and data[0] & 0xF0 == 0x90 and data[1] < 0x80:
                    key = (name, data[1])
                    if (run and key != run_key) or len(run) >= _RUN:
                        state, flags = self._run(
                            stream_id, wf, run_key, run, state, flags, found
                        )
                        run = []
                    run_key = key
                    run.append((position, data))
                    continue
                if run:
                    state, flags = self._run(
                        stream_id, wf, run_key, run, state, flags, found
                    )
                    run = []
                if name in system:
                    if name == MIGRATED:
                        wf, state = self._migrated(stream_id, position, data)
                        evolve = wf.evolve
                    elif name == CANCELLED:
                        cancelled = True
                        cid = self.codec.decode_payloads(
                            stream_id, position, name, data
                        )[1]
                        if cid is not None:
                            found[cid] = position
                    continue
                state, flags = self._one(
                    stream_id, wf, position, name, data, state, flags, found
                )
            if run:
                state, flags = self._run(
                    stream_id, wf, run_key, run, state, flags, found
                )
        except NonstopError:
            raise
        except Exception as exc:  # evolve is user code
            raise WorkflowCodeError(
                wf.ref, stream_id, f"evolve (replaying position {position})", exc
            ) from exc
        if position == inst.position:
            return inst
        commands = {**inst.commands, **found} if found else inst.commands
        # Instance(...) rather than replace(): replace() is slow here.
        return Instance(wf, state, position, commands, inst.key, flags, cancelled)

    def _one(
        self,
        stream_id: str,
        wf: Workflow[Any],
        position: int,
        name: str,
        data: bytes,
        state: Any,
        flags: dict[str, Any] | None,
        found: dict[str, int],
    ) -> tuple[Any, dict[str, Any] | None]:
        """Fold one event that needs the general path (upcast, split, drop)."""
        payloads, command_id, recorded = self.codec.decode_old(
            stream_id, position, name, data
        )
        if recorded:
            flags = pinned_flags(flags, recorded)
        evolve = wf.evolve
        try:
            for p in payloads:
                state = evolve(state, p)
        except Exception as exc:  # evolve is user code
            raise WorkflowCodeError(
                wf.ref, stream_id, f"evolve (replaying position {position})", exc
            ) from exc
        if command_id is not None:
            found[command_id] = position
        return state, flags

    def _run(
        self,
        stream_id: str,
        wf: Workflow[Any],
        key: tuple[str, int] | None,
        run: list[tuple[int, bytes]],
        state: Any,
        flags: dict[str, Any] | None,
        found: dict[str, int],
    ) -> tuple[Any, dict[str, Any] | None]:
        """Fold a run of consecutive events of one type and stored schema."""
        assert key is not None
        name = key[0]
        got = self.codec.decode_run(name, key[1], [d for _, d in run])
        if got is None:  # one by one: errors name their event
            for position, data in run:
                state, flags = self._one(
                    stream_id, wf, position, name, data, state, flags, found
                )
            return state, flags
        evolve = wf.evolve
        position = 0
        try:
            for (position, _), (payload, command_id, recorded) in zip(
                run, got, strict=True
            ):
                state = evolve(state, payload)
                if command_id is not None:
                    found[command_id] = position
                if recorded:
                    flags = pinned_flags(flags, recorded)
        except Exception as exc:  # evolve is user code
            raise WorkflowCodeError(
                wf.ref, stream_id, f"evolve (replaying position {position})", exc
            ) from exc
        return state, flags

    def apply(self, inst: Instance | None, e: RecordedEvent) -> Instance:
        """Fold one decoded event into ``inst`` (``None`` before the start).

        The step :meth:`fold` takes per row, for events already decoded (the
        instances read model). ``inst`` is updated in place and returned; a
        ``nonstop.Started`` returns a new instance. Events an upcaster split
        from one record share its position; positions an upcaster dropped
        are not a gap (:func:`engine.core.codec.dropped`).

        Raises:
            CorruptStream: no ``nonstop.Started`` first, or a gap in positions.
            EventDecodeError: a ``nonstop.Migrated`` state does not fit.
            WorkflowCodeError: ``evolve`` raised.
        """
        sid = e.stream_id
        if e.type == STARTED:
            _check_first(sid, e.position, e.type)
            return self.begin(e.event, e.command_id)
        if inst is None:
            raise _no_start(sid, e.position, e.type)
        if e.position > inst.position + 1 and not dropped(
            sid, inst.position + 1, e.position - 1
        ):
            raise _gap(sid, e.position, inst.position)
        if e.type == MIGRATED:
            inst.workflow, inst.state = self._switch(sid, e.position, e.event)
        elif e.type == CANCELLED:
            inst.cancelled = True
            if e.command_id is not None:
                inst.commands[e.command_id] = e.position
        elif e.type not in SYSTEM_TYPES:
            try:
                inst.state = inst.workflow.evolve(inst.state, e.event)
            except NonstopError:
                raise
            except Exception as exc:  # evolve is user code
                raise WorkflowCodeError(
                    inst.workflow.ref,
                    sid,
                    f"evolve (replaying position {e.position})",
                    exc,
                ) from exc
            if e.command_id is not None:
                inst.commands[e.command_id] = e.position
            if e.ctx:
                inst.flags = pinned_flags(inst.flags, e.ctx)
        inst.position = e.position
        return inst

    def _migrated(
        self, stream_id: str, position: int, data: bytes
    ) -> tuple[Workflow[Any], Any]:
        payloads, _ = self.codec.decode_payloads(stream_id, position, MIGRATED, data)
        return self._switch(stream_id, position, payloads[0])

    def _switch(
        self, stream_id: str, position: int, m: Migrated
    ) -> tuple[Workflow[Any], Any]:
        """The version and state a ``nonstop.Migrated`` event switches to."""
        wf = self.workflow(m.workflow, m.to_version)
        try:
            state = msgspec.msgpack.decode(m.state, type=wf.state_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise EventDecodeError(
                stream_id, position, MIGRATED, f"state does not fit {wf.ref}: {exc}"
            ) from None
        return wf, state
