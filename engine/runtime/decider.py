"""The decider step: a command and a folded instance in, records out.

Pure given its inputs apart from the clock, the flag reader and the key
generator: it runs the workflow's ``decide`` and ``evolve``, and encodes the
events into records at the positions that follow the instance's. Nothing here
touches the store.

Every decision carries an idempotency key in the bytes of its first record: the
caller's command id, or a key generated here (``Envelope.key``, which replay
ignores, so generated keys never join the instance's command ids). After a
commit in doubt the committer recognises its own records by them.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from engine.core.codec import EventCodec
from engine.core.config import ConfigReader, decode_config
from engine.core.digest import state_digest
from engine.core.effects import with_end
from engine.core.errors import (
    CommandRejected,
    ConfigError,
    MigrationError,
    NonstopError,
    WorkflowCodeError,
    WorkflowDefinitionError,
)
from engine.core.events import (
    RESERVED_STREAM_PREFIX,
    Cancelled,
    Metadata,
    Migrated,
    Started,
    is_reserved_stream,
    now_micros,
)
from engine.core.replay import Instance, InstanceInfo
from engine.core.workflow import Context, Workflow, WorkflowRegistry
from engine.health.counters import Health
from engine.runtime.requests import Router, Send, Start
from engine.store import NewRecord

__all__ = ["Decided", "Decider", "new_key"]

Decided = tuple[Instance, list[NewRecord]]
"""The instance after a decision, and the records that make it so."""
_encoder = msgspec.msgpack.Encoder()


def new_key() -> str:
    """A fresh idempotency key for a decision without a caller's command id."""
    return uuid.uuid4().hex


class Decider:
    """Decides commands for instances of the workflows of one registry.

    Args:
        registry: The workflow versions.
        codec: Encodes the events.
        router: Routes new instances and evaluates flags (optional).
        health: Counts rejections and crashes per version (optional).
    """

    digests: bool = True
    """Store the digest of the state after each decision on its last event
    (``Envelope.digest``, checked by ``nonstop verify``); False writes none."""

    def __init__(
        self,
        registry: WorkflowRegistry,
        codec: EventCodec,
        router: Router | None,
        health: Health | None = None,
    ) -> None:
        self.registry = registry
        self.codec = codec
        self.router = router
        self.health = health

    def start(self, req: Start) -> Decided:
        """Decide a start: ``nonstop.Started`` and the first command's events.

        Raises:
            CommandRejected: a reserved id, an input that cannot be stored, or
                the decider refused it.
            UnknownWorkflow: no such workflow or version.
            WorkflowCodeError: ``decide`` or ``evolve`` raised.
        """
        iid = req.instance_id
        assert iid is not None
        if is_reserved_stream(iid):
            raise CommandRejected(
                f"instance id {iid!r} starts with {RESERVED_STREAM_PREFIX!r}, which "
                "is reserved for the engine's own streams; choose another id"
            )
        version = req.version
        if version is None and self.router is not None:
            version = self.router.route(req.workflow, req.routing_key or iid)
        wf = self.registry.get(req.workflow, version)
        inst = Instance(wf, wf.initial(), 0, key=req.routing_key)
        started = Started(
            workflow=wf.name,
            version=wf.version,
            input_type=type(req.input).__name__,
            input=_encode_input(req.input),
            routing_key=req.routing_key,
        )
        meta = Metadata(wf.ref, req.command_id, req.correlation_id or req.command_id)
        return self.decide(iid, inst, req.input, meta, first=[started])

    def send(
        self, inst: Instance, req: Send, *, owned: bool = False
    ) -> Decided | InstanceInfo:
        """Decide a command; a repeated command id is answered, not decided.

        Raises:
            CommandRejected: the instance is finished or the decider refused.
            WorkflowCodeError: ``decide`` or ``evolve`` raised.
        """
        iid = req.instance_id
        if req.command_id is not None and req.command_id in inst.commands:
            return inst.info(iid, applied=False)
        wf = inst.workflow
        status = inst.status
        if status != "running":
            raise CommandRejected(
                f"the instance is {status}; it takes no more commands",
                instance_id=iid,
                command=req.command,
            )
        meta = Metadata(wf.ref, req.command_id, req.correlation_id, req.causation_id)
        return self.decide(iid, inst, req.command, meta, owned=owned)

    def decide(
        self,
        iid: str,
        inst: Instance,
        command: Any,
        meta: Metadata,
        *,
        first: Sequence[Any] = (),
        last: Sequence[Any] = (),
        owned: bool = False,
    ) -> Decided:
        """Decide and encode one command.

        ``owned``: ``inst.commands`` belongs to the caller's uncommitted batch
        (no cached instance holds it), so a new command id is added in place
        rather than into a copy: copying grows with the instance's history.
        """
        wf = inst.workflow
        routing_key = inst.key or iid
        ctx = Context(
            iid,
            meta.workflow,
            flags=self._flag_reader(routing_key),
            configs=self._config_reader(wf, routing_key),
        )
        if inst.flags:
            ctx.pinned.update(inst.flags)
        try:
            events = list(wf.decide(inst.state, command, ctx))
        except CommandRejected as exc:
            if self.health is not None:
                self.health.rejected(wf.name, wf.version, ctx.pinned)
            raise CommandRejected(
                exc.reason, instance_id=iid, command=command
            ) from None
        except NonstopError:
            raise
        except Exception as exc:
            if self.health is not None:
                self.health.crashed(wf.name, wf.version, ctx.pinned)
            raise WorkflowCodeError(wf.ref, iid, "decide", exc) from exc
        state = inst.state
        try:
            for e in events:
                state = wf.evolve(state, e)
        except Exception as exc:
            if self.health is not None:
                self.health.crashed(wf.name, wf.version, ctx.pinned)
            raise WorkflowCodeError(wf.ref, iid, "evolve", exc) from exc
        now = now_micros()
        encode = self.codec.encode
        records: list[NewRecord] = []
        position = inst.position
        # The digest of the state after the decision rides on its last record.
        final = position + len(first) + len(events) + len(last)
        digest = _digest(state) if self.digests else None
        # The decision's idempotency key rides on its first record.
        key = new_key() if meta.command_id is None else None
        for e in first:
            position += 1
            name, data = encode(
                e,
                meta,
                recorded_at=now,
                key=key,
                digest=digest if position == final else None,
            )
            key = None
            records.append(NewRecord(iid, position, name, data))
        recorded = ctx.recorded or None  # stored with the decision's first event
        for e in events:
            position += 1
            name, data = encode(
                e,
                meta,
                recorded_at=now,
                ctx=recorded,
                key=key,
                digest=digest if position == final else None,
            )
            recorded = key = None
            records.append(NewRecord(iid, position, name, data))
        for e in last:  # system events the reducer does not fold
            position += 1
            name, data = encode(
                e,
                meta,
                recorded_at=now,
                key=key,
                digest=digest if position == final else None,
            )
            key = None
            records.append(NewRecord(iid, position, name, data))
        if ctx.requests or (records and wf.terminal(state)):
            _attach_outbox(records, ctx, iid, meta.workflow, wf.terminal(state))
        commands = inst.commands
        if meta.command_id is not None and records:
            if owned:
                commands[meta.command_id] = position
            else:
                commands = {**commands, meta.command_id: position}
        flags = inst.flags
        if records and len(ctx.pinned) != len(flags or ()):
            flags = ctx.pinned
        return Instance(wf, state, position, commands, inst.key, flags), records

    def cancel(
        self,
        iid: str,
        inst: Instance,
        reason: str,
        by: str,
        command_id: str | None,
    ) -> Decided | InstanceInfo:
        """Decide cancelling ``inst``: ``on_cancel`` events, then the system event.

        The workflow's ``on_cancel`` events come first when it has one, then
        ``nonstop.Cancelled``. A repeated command id is answered.

        Raises:
            CommandRejected: the instance is not running, the reason is empty,
                or ``on_cancel`` refused.
            WorkflowCodeError: ``on_cancel`` or ``evolve`` raised.
        """
        if command_id is not None and command_id in inst.commands:
            return inst.info(iid, applied=False)
        wf = inst.workflow
        event = Cancelled(wf.name, wf.version, reason, by)
        if not reason.strip():
            raise CommandRejected(
                "a cancel needs a reason (who asked and why is audited); "
                "give one with --reason",
                instance_id=iid,
                command=event,
            )
        status = inst.status
        if status != "running":
            raise CommandRejected(
                f"the instance is {status}; only a running instance can be "
                "cancelled (nothing was written)",
                instance_id=iid,
                command=event,
            )
        meta = Metadata(wf.ref, command_id)
        if wf.on_cancel is None:
            name, body = self.codec.encode(
                event,
                meta,
                recorded_at=now_micros(),
                key=_key(command_id),
                digest=_digest(inst.state) if self.digests else None,
            )
            position = inst.position + 1
            commands = inst.commands
            if command_id is not None:
                commands = {**commands, command_id: position}
            new = Instance(
                wf, inst.state, position, commands, inst.key, inst.flags, True
            )
            ops = with_end((), iid)
            return new, [NewRecord(iid, position, name, body, tuple(ops))]
        # decide() runs on_cancel as the decider of this one command.
        handled = dataclasses.replace(wf, decide=wf.on_cancel)
        new, records = self.decide(
            iid, Instance(handled, *_rest(inst)), event, meta, last=[event]
        )
        new.workflow = wf
        new.cancelled = True
        if records and not wf.terminal(new.state):
            last = records[-1]
            ops = with_end(last.outbox, iid)
            records[-1] = NewRecord(
                last.stream_id, last.position, last.type, last.data, tuple(ops)
            )
        return new, records

    def migration(
        self,
        iid: str,
        inst: Instance,
        version: int,
        mapper: Callable[[Any], Any],
        by: str,
        reason: str,
    ) -> tuple[Instance, NewRecord]:
        """Decide moving ``inst`` to ``version`` with ``mapper(state)``.

        Raises:
            UnknownWorkflow: ``version`` is not registered.
            MigrationError: not running, already there, or the mapper failed.
        """
        old = inst.workflow
        new_wf = self.registry.get(old.name, version)
        status = inst.status
        if status != "running":
            raise MigrationError(iid, new_wf.ref, f"the instance is {status}")
        if version == old.version:
            raise MigrationError(iid, new_wf.ref, "it already runs that version")
        try:
            mapped = mapper(inst.state)
            data = _encoder.encode(mapped)
            state = msgspec.msgpack.decode(data, type=new_wf.state_type)
            new_status = new_wf.status(state)
        except Exception as exc:  # the mapper is user code
            raise MigrationError(
                iid, new_wf.ref, f"the mapper failed: {exc!r}"
            ) from exc
        if new_status != "running":
            raise MigrationError(
                iid, new_wf.ref, f"the mapped state would be {new_status}"
            )
        event = Migrated(old.name, old.version, version, data, by, reason)
        name, body = self.codec.encode(
            event,
            Metadata(new_wf.ref),
            recorded_at=now_micros(),
            key=new_key(),
            digest=_digest(state) if self.digests else None,
        )
        position = inst.position + 1
        new = Instance(new_wf, state, position, inst.commands, inst.key, inst.flags)
        return new, NewRecord(iid, position, name, body)

    def _config_reader(self, wf: Workflow[Any], key: str) -> ConfigReader | None:
        if wf.config is None:
            return None
        router = self.router
        if router is None:
            return _defaults(wf)
        return functools.partial(router.config, wf, key)

    def _flag_reader(self, key: str) -> Callable[[str, str, Any], Any] | None:
        router = self.router
        if router is None:
            return None
        return lambda kind, name, default: router.evaluate(kind, name, key, default)


def _defaults(wf: Workflow[Any]) -> ConfigReader:
    """The config of an engine without a router: the type's defaults (v0)."""
    assert wf.config is not None
    made = _default_config(wf.config)

    def read(version: int | None) -> tuple[int, Any]:
        if version:
            raise ConfigError(
                f"{wf.ref}: the instance recorded config v{version}, which an "
                "engine without the deployments registry cannot read; open the "
                "engine with deployments"
            )
        return 0, made

    return read


_DEFAULTS: dict[type[Any], Any] = {}


def _default_config(config_type: type[Any]) -> Any:
    made = _DEFAULTS.get(config_type)
    if made is None:
        made = _DEFAULTS[config_type] = decode_config(config_type, {})
    return made


def _digest(state: Any) -> int | None:
    """The state's digest; None for a state msgspec cannot encode."""
    try:
        return state_digest(state)
    except (TypeError, ValueError, OverflowError):
        return None


def _attach_outbox(
    records: list[NewRecord],
    ctx: Context,
    iid: str,
    workflow: str,
    ended: bool,
) -> None:
    """Put the decision's outbox operations on its last record.

    An ended instance's pending timers are cancelled in the same transaction.

    Raises:
        WorkflowDefinitionError: effects or timers were asked for by a decision
            that records no event (they ride with its events).
    """
    if not records:
        raise WorkflowDefinitionError(
            f"{workflow} asked for effects or timers for {iid!r} in a decision "
            "that records no event; return at least one event with them"
        )
    last = records[-1]
    ops = ctx.requests.ops(iid, workflow, last.position)
    if ended:
        ops = with_end(ops, iid)
    records[-1] = NewRecord(
        last.stream_id, last.position, last.type, last.data, tuple(ops)
    )


def _key(command_id: str | None) -> str | None:
    return new_key() if command_id is None else None


def _rest(inst: Instance) -> tuple[Any, ...]:
    return (inst.state, inst.position, inst.commands, inst.key, inst.flags)


def _encode_input(value: Any) -> bytes:
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise CommandRejected(
            f"the start input {type(value).__name__} cannot be stored ({exc}); "
            "use a msgspec.Struct, dataclass or plain data"
        ) from None
