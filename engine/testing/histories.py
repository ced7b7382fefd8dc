"""Stored histories as test fixtures: export them, replay them in a test suite.

``nonstop export`` (:func:`export_histories`) writes one JSON line per
instance::

    {"instance_id": ..., "workflow": ..., "version": ..., "status": ...,
     "raw": false, "events": [{"position": 1, "type": "nonstop.Started",
     "schema": 1, "digest": null, "data": {...}, "ctx": null,
     "command_id": ...}, ...]}

``raw: false`` (the default) holds every event decoded and upcast to today's
schema, as JSON; ``raw: true`` holds the stored envelope bytes (base64 in
``data``), so the user's own upcasters run again on replay. ``digest`` is the
state digest recorded on the last event of each decision (null elsewhere).

:func:`replay_histories` folds each history with the one replay rule under the
code of the user's registry and compares every recorded digest, like a
replayer over downloaded histories: the first instance whose state differs
raises :class:`~engine.core.errors.ReplayDiverged` naming the instance, the
event position and type, and the state difference.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

import msgspec

from engine.core.codec import EventCodec
from engine.core.digest import state_digest
from engine.core.errors import ReplayDiverged, UnknownEventType, UnknownInstance
from engine.core.events import RecordedEvent
from engine.core.replay import Instance, RecordRow, Replay
from engine.core.verify import Divergence, check_stream, recorded_digest, state_diff
from engine.core.workflow import ListingStatus, WorkflowRegistry
from engine.store import EventStore

__all__ = ["ExportedEvent", "History", "export_histories", "replay_histories"]


class ExportedEvent(msgspec.Struct, omit_defaults=True):
    """One event of an exported history."""

    position: int
    """Position in the stream."""
    type: str
    """Type name (today's, unless raw)."""
    data: Any
    """The payload as JSON (upcast), or the stored envelope as base64 (raw)."""
    schema: int = 0
    """Schema version of ``data`` (0 for raw)."""
    digest: int | None = None
    """State digest recorded with it (the last event of a decision)."""
    ctx: list[Any] | None = None
    """Recorded context values (upcast only)."""
    command_id: str | None = None
    """Command id (upcast only)."""
    recorded_at: int = 0
    """Microseconds since the epoch (upcast only)."""
    workflow: str = ""
    """``name@version`` that wrote it (upcast only)."""
    state: Any = None
    """With ``digest``: the state there as the exporting code folded it (for
    the difference a divergence shows)."""


class History(msgspec.Struct):
    """One exported instance: a line of the file."""

    instance_id: str
    workflow: str
    version: int
    status: str
    raw: bool
    events: list[ExportedEvent]


_line = msgspec.json.Decoder(History)
_json = msgspec.json.Encoder()


def _select(
    store: EventStore, codec: EventCodec, workflow: str, version: int | None
) -> list[str]:
    from engine.core.replay import MIGRATED, STARTED

    found: dict[str, None] = {}
    for row in store.iter_all(types=(STARTED, MIGRATED), page=5_000):
        for e in codec.decode(*row):
            ev = e.event
            at = ev.version if e.type == STARTED else ev.to_version
            if ev.workflow == workflow and (version is None or at == version):
                found[e.stream_id] = None
    return list(found)


def _exported(
    rule: Replay, sid: str, rows: list[RecordRow], raw: bool
) -> tuple[list[ExportedEvent], Instance]:
    """The events of one stream as exported, and the instance they fold into."""
    out: list[ExportedEvent] = []
    inst: Instance | None = None
    for row in rows:
        digest = recorded_digest(row[4])
        decoded = rule.codec.decode(*row)
        for e in decoded:
            inst = rule.apply(inst, e)
        state = msgspec.to_builtins(inst.state) if digest and inst else None
        if raw:
            data = base64.b64encode(bytes(row[4])).decode()
            out.append(ExportedEvent(row[1], row[3], data, digest=digest, state=state))
            continue
        for i, e in enumerate(decoded):
            last = i == len(decoded) - 1
            out.append(
                ExportedEvent(
                    e.position,
                    e.type,
                    msgspec.to_builtins(e.event),
                    e.schema,
                    digest if last else None,
                    e.ctx,
                    e.command_id,
                    e.recorded_at,
                    e.workflow,
                    state if last else None,
                )
            )
    if inst is None:
        raise UnknownInstance(sid)
    return out, inst


def export_histories(
    store: EventStore,
    registry: WorkflowRegistry,
    path: str | Path,
    workflow: str,
    *,
    version: int | None = None,
    status: ListingStatus | None = None,
    limit: int | None = None,
    raw: bool = False,
    codec: EventCodec | None = None,
) -> int:
    """Write the histories of ``workflow``'s instances to ``path`` (JSON lines).

    Args:
        store: The event store.
        registry: The code that folds them (for the status filter).
        path: The file written.
        workflow: Workflow name.
        version: Only instances started on or migrated to this version.
        status: Only instances with this status now.
        limit: At most this many instances.
        raw: Stored envelope bytes rather than upcast events.
        codec: Decodes and upcasts (default: default types and upcasters).

    Returns:
        How many histories were written.
    """
    if codec is None:
        from upcasters import default_upcasters

        codec = EventCodec()
        codec.use_upcasters(default_upcasters())
    rule = Replay(codec, registry.get)
    ids = _select(store, codec, workflow, version)
    written = 0
    with open(path, "wb") as out:
        for start in range(0, len(ids), 1_000):
            if limit is not None and written >= limit:
                break
            for rows in store.iter_streams(ids[start : start + 1_000]):
                for sid, group in groupby(rows, key=itemgetter(0)):
                    if limit is not None and written >= limit:
                        break
                    events, inst = _exported(rule, sid, list(group), raw)
                    now = inst.status
                    if status is not None and now != status:
                        continue
                    wf = inst.workflow
                    h = History(sid, wf.name, wf.version, now, raw, events)
                    out.write(_json.encode(h) + b"\n")
                    written += 1
    return written


def _histories(path: str | Path) -> Iterator[History]:
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield _line.decode(line)
                except msgspec.DecodeError as exc:
                    raise msgspec.DecodeError(f"{path}:{n}: {exc}") from None


def _raw_rows(h: History) -> list[RecordRow]:
    return [
        (h.instance_id, e.position, 0, e.type, base64.b64decode(e.data))
        for e in h.events
    ]


def _fold_upcast(rule: Replay, codec: EventCodec, h: History) -> Divergence | None:
    inst: Instance | None = None
    for e in h.events:
        try:
            cls = codec.types.by_name(e.type).cls
        except UnknownEventType:
            return Divergence(
                h.instance_id, e.position, e.type, e.digest, None, "unknown event type"
            )
        try:
            event = msgspec.convert(e.data, cls, strict=False)
        except msgspec.ValidationError as exc:
            detail = f"does not fit today's {e.type}: {exc}"
            return Divergence(h.instance_id, e.position, e.type, e.digest, None, detail)
        rec = RecordedEvent(
            h.instance_id,
            e.position,
            0,
            e.type,
            e.schema,
            e.schema,
            event,
            e.recorded_at,
            e.workflow,
            e.command_id,
            None,
            None,
            e.ctx,
        )
        try:
            inst = rule.apply(inst, rec)
        except Exception as exc:  # the replay error names what broke
            kind = type(exc).__name__
            detail = f"{kind}: {exc}"
            return Divergence(h.instance_id, e.position, e.type, e.digest, None, detail)
        if e.digest is not None and state_digest(inst.state) != e.digest:
            got = state_digest(inst.state)
            diff = _diff(e.state, inst.state)
            return Divergence(h.instance_id, e.position, e.type, e.digest, got, diff)
    return None


def _diff(recorded: Any, replayed: Any) -> str:
    """Recorded (exported) vs replayed state, when the export has the state."""
    if recorded is None:
        return ""
    return state_diff(recorded, msgspec.to_builtins(replayed))


def _with_diff(rule: Replay, h: History, d: Divergence) -> Divergence:
    at = [e for e in h.events if e.position == d.position]
    if not at or at[-1].state is None:
        return d
    rows = [r for r in _raw_rows(h) if r[1] <= d.position]
    state = rule.replay(h.instance_id, rows).state
    return msgspec.structs.replace(d, diff=_diff(at[-1].state, state))


def replay_histories(
    path: str | Path,
    registry: WorkflowRegistry,
    *,
    codec: EventCodec | None = None,
    mode: Literal["first", "all"] = "first",
) -> int:
    """Replay every history of ``path`` under ``registry``; compare digests.

    Args:
        path: A file written by ``nonstop export``.
        registry: The code under test (every version the histories use).
        codec: Decodes raw histories with the user's upcasters (default:
            default types and the process-wide upcasters).
        mode: ``first`` raises at the first divergent instance; ``all``
            checks every history and raises naming the first, with the count.

    Returns:
        How many histories replayed identically.

    Raises:
        ReplayDiverged: a history folds to a different state (instance,
            position, event type, state difference).
    """
    if codec is None:
        from upcasters import default_upcasters

        codec = EventCodec()
        codec.use_upcasters(default_upcasters())
    rule = Replay(codec, registry.get)
    ok = 0
    bad: list[Divergence] = []
    for h in _histories(path):
        if h.raw:
            found = check_stream(rule, h.instance_id, _raw_rows(h))
            d = found if isinstance(found, Divergence) else None
            if d is not None and not d.diff:
                d = _with_diff(rule, h, d)
        else:
            d = _fold_upcast(rule, codec, h)
        if d is None:
            ok += 1
            continue
        bad.append(d)
        if mode == "first":
            break
    if bad:
        d = bad[0]
        detail = d.diff or (
            f"the replayed state's digest {d.replayed:016x} differs from the "
            f"recorded {d.recorded:016x}"
            if d.replayed is not None and d.recorded is not None
            else "the state differs from the one recorded"
        )
        if len(bad) > 1:
            detail += f" ({len(bad)} histories diverge)"
        raise ReplayDiverged(d.instance_id, d.position, d.event_type, detail)
    return ok
