"""``assert_replay_stable``: a workflow's state is the same however it is rebuilt.

The commands are decided one by one as the engine decides them (a rejected
command writes nothing and is skipped; the start input first), and every
decision is encoded into stored records exactly as the engine writes them.
Then three laws are checked:

1. the state folded from those records by the engine's one replay rule
   (:class:`engine.core.replay.Replay`) equals the live state;
2. a restart after any decision (a reload from the records, and from a snapshot
   of the state encoded and read back) decides the remaining commands into the
   same events and ends in the same state;
3. given the code of the same ``workflow@version`` once more (``new``: a
   refactor, a hotfix), the records the old code wrote fold into the same state
   after every event under the new code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from engine.core.codec import EventCodec
from engine.core.errors import CommandRejected, UnknownWorkflow, WorkflowDefinitionError
from engine.core.events import EventTypeRegistry, Metadata, Started, default_event_types
from engine.core.replay import Instance, RecordRow, Replay, WorkflowLookup
from engine.core.workflow import Workflow, fold
from engine.testing.scenario import EPOCH, FixedContext
from upcasters import UpcasterRegistry, default_upcasters

__all__ = ["assert_replay_stable"]


@dataclass(frozen=True)
class _Decision:
    index: int
    """The command's index in the list given."""
    events: list[Any]
    """What it decided (empty: rejected, or the instance was finished)."""
    position: int
    """Position of the last record after it."""


class _Run:
    """Decides commands as the engine does and writes the records it would."""

    def __init__(
        self,
        workflow: Workflow[Any],
        codec: EventCodec,
        instance_id: str,
        options: Mapping[str, Any],
    ) -> None:
        self.workflow = workflow
        self.codec = codec
        self.iid = instance_id
        self.options = options
        self.rows: list[RecordRow] = []

    def start(self, command: Any) -> Any | None:
        """Decide the start; None when it is rejected (nothing is written)."""
        wf = self.workflow
        started = Started(
            workflow=wf.name,
            version=wf.version,
            input_type=type(command).__name__,
            input=msgspec.msgpack.encode(command),
        )
        decided = self.decide(wf.initial(), command)
        if decided is None:
            return None
        self._write([started], None)
        self._write(*decided)
        return fold(wf, wf.initial(), decided[0])

    def decide(self, state: Any, command: Any) -> tuple[list[Any], list[Any]] | None:
        """``(events, recorded context)``; None when rejected or finished."""
        wf = self.workflow
        if self.rows and wf.terminal(state):
            return None  # the engine refuses commands to a finished instance
        ctx = FixedContext(self.iid, wf.ref, config_type=wf.config, **self.options)
        try:
            return list(wf.decide(state, command, ctx)), ctx.recorded
        except CommandRejected:
            return None

    def _write(self, events: Sequence[Any], recorded: list[Any] | None) -> None:
        meta = Metadata(self.workflow.ref)
        for e in events:
            position = len(self.rows) + 1
            name, data = self.codec.encode(
                e, meta, recorded_at=position, ctx=recorded or None
            )
            recorded = None
            self.rows.append((self.iid, position, position, name, data))

    def run(
        self, commands: Sequence[Any], state: Any, first: int
    ) -> tuple[Any, list[_Decision]]:
        """Decide ``commands[first:]`` from ``state``, writing the records."""
        out: list[_Decision] = []
        for index in range(first, len(commands)):
            decided = self.decide(state, commands[index])
            if decided is not None:
                self._write(*decided)
                state = fold(self.workflow, state, decided[0])
            events = decided[0] if decided is not None else []
            out.append(_Decision(index, events, len(self.rows)))
        return state, out


def assert_replay_stable(
    workflow: Workflow[Any],
    commands: Sequence[Any],
    *,
    new: Workflow[Any] | None = None,
    types: EventTypeRegistry | None = None,
    upcasters: UpcasterRegistry | None = None,
    now: datetime = EPOCH,
    random: float = 0.5,
    flags: Mapping[str, Any] | None = None,
    config: Any = None,
) -> None:
    """Assert that ``workflow`` rebuilds the same state from its log, every way.

    Args:
        workflow: The version under test.
        commands: The start input, then the commands (as :func:`commands`
            draws them); rejected ones are skipped.
        new: Another code of the same ``name@version``: the old records must
            fold into the same states under it.
        types: Event types (the process-wide registry by default).
        upcasters: Upcaster chains (the process-wide registry by default).
        now: What ``ctx.now()`` returns to the decider.
        random: What ``ctx.random()`` returns.
        flags: Flag values by name (others get their default).
        config: What ``ctx.config`` returns (the config type's defaults
            without it).

    Raises:
        AssertionError: a law does not hold; the message names the command or
            the position where it breaks.
        WorkflowDefinitionError: ``new`` is not the same ``name@version``.
    """
    if new is not None and new.ref != workflow.ref:
        raise WorkflowDefinitionError(
            f"assert_replay_stable(new=...) compares two codes of one version; got "
            f"{workflow.ref} and {new.ref} (a new version reads old events through "
            "migration, not replay)"
        )
    codec = EventCodec(types if types is not None else default_event_types())
    codec.use_upcasters(upcasters if upcasters is not None else default_upcasters())
    options = {
        "now": now,
        "random": random,
        "flags": dict(flags or {}),
        "config": config,
    }
    live = _Run(workflow, codec, "replay-check", options)
    if not commands:
        return
    state = live.start(commands[0])
    if state is None:
        return  # the start was rejected: no instance, nothing to replay
    start_rows = len(live.rows)
    state, decisions = live.run(commands, state, 1)
    replay = Replay(codec, _lookup(workflow))
    _check_fold(workflow, replay, live.rows, state)
    cuts = [(0, start_rows), *((d.index, d.position) for d in decisions)]
    for index, position in cuts[:-1]:
        _check_restart(live, replay, commands, index + 1, position, decisions, state)
    if new is not None:
        _check_new_code(workflow, new, codec, live.rows)


def _lookup(workflow: Workflow[Any]) -> WorkflowLookup:
    def get(name: str, version: int) -> Workflow[Any]:
        if (name, version) != (workflow.name, workflow.version):
            raise UnknownWorkflow(name, version, [workflow.ref])
        return workflow

    return get


def _check_fold(
    workflow: Workflow[Any], replay: Replay, rows: list[RecordRow], state: Any
) -> None:
    folded = replay.replay(rows[0][0], rows).state
    if folded != state:
        raise AssertionError(
            f"{workflow.ref}: the state folded from the log is not the live state\n"
            f"  live:     {state!r}\n  replayed: {folded!r}"
        )


def _check_restart(
    live: _Run,
    replay: Replay,
    commands: Sequence[Any],
    first: int,
    position: int,
    decisions: list[_Decision],
    final: Any,
) -> None:
    wf = live.workflow
    where = f"{wf.ref}: restarted after position {position} (before command {first})"
    loaded = replay.replay(live.iid, live.rows[:position]).state
    try:
        snapshot = msgspec.msgpack.decode(
            msgspec.msgpack.encode(loaded), type=wf.state_type
        )
    except (msgspec.EncodeError, msgspec.ValidationError, TypeError) as exc:
        raise AssertionError(
            f"{where}: the state cannot be snapshotted: {exc}"
        ) from None
    if snapshot != loaded:
        raise AssertionError(
            f"{where}: a snapshot of the state reads back different\n"
            f"  state:    {loaded!r}\n  snapshot: {snapshot!r}"
        )
    again = _Run(wf, live.codec, live.iid, live.options)
    again.rows = list(live.rows[:position])
    state, redone = again.run(commands, snapshot, first)
    before = {d.index: d.events for d in decisions}
    for d in redone:
        if d.events != before[d.index]:
            raise AssertionError(
                f"{where}: command {d.index} {commands[d.index]!r} decided "
                f"{d.events!r}, first {before[d.index]!r}"
            )
    if state != final:
        raise AssertionError(
            f"{where}: the final state differs\n  first:   {final!r}\n"
            f"  restart: {state!r}"
        )


def _check_new_code(
    old: Workflow[Any], new: Workflow[Any], codec: EventCodec, rows: list[RecordRow]
) -> None:
    iid = rows[0][0]
    before = _states(Replay(codec, _lookup(old)), iid, rows)
    after = _states(Replay(codec, _lookup(new)), iid, rows)
    for row, a, b in zip(rows, before, after, strict=True):
        if a != b:
            raise AssertionError(
                f"{old.ref}: the new code folds the old records differently from "
                f"position {row[1]} ({row[3]})\n  old code: {a!r}\n  new code: {b!r}"
            )


def _states(replay: Replay, iid: str, rows: list[RecordRow]) -> list[Any]:
    inst: Instance = replay.replay(iid, rows[:1])
    out = [inst.state]
    for row in rows[1:]:
        inst = replay.fold(iid, inst, [row])
        out.append(inst.state)
    return out
