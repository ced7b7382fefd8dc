"""Replay verification: does candidate code fold a history the same? (pure).

Every decision stores the digest of the state it produced on its last event
(:mod:`engine.core.digest`). :func:`check_stream` folds a stream with the one
replay rule (:class:`~engine.core.replay.Replay`) one decision at a time and
compares the state after each with the recorded digest; the first decision
whose state differs (or whose replay raises) is the stream's
:class:`Divergence`. Events written before digests existed are folded without
a check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from engine.core.digest import state_digest
from engine.core.errors import NonstopError, UnknownInstance
from engine.core.replay import Instance, RecordRow, Replay, error_text

__all__ = [
    "Divergence",
    "check_stream",
    "recorded_digest",
    "state_diff",
]

_fields = msgspec.msgpack.Decoder(list[msgspec.Raw])
_digest_field = msgspec.msgpack.Decoder(int | None)
_DIGEST_INDEX = 9
"""Index of ``digest`` in the array-like ``Envelope``."""
_SHORT = 240


class Divergence(msgspec.Struct, frozen=True):
    """The first recorded decision a candidate code folds differently."""

    instance_id: str
    """The instance (stream id)."""
    position: int
    """Position of the event that carries the digest (the decision's last)."""
    event_type: str
    """Type name of that event."""
    recorded: int | None
    """The digest recorded at write time."""
    replayed: int | None
    """The digest of the candidate's state there; None when replay failed."""
    diff: str
    """Recorded (old) vs replayed (new) state, shortened; or the replay error."""


def recorded_digest(data: bytes) -> int | None:
    """The state digest stored in an envelope, or None (not a decision's last).

    Read from the tail when it is unambiguous: an envelope of ten items
    (``0x9a``) ends with its digest, a msgpack nil (``0xc0``) or an unsigned
    int, and a digest is a uint64 (``0xcf`` and eight bytes) unless it is
    below 2**32. When no shorter int form's tag sits where it would start,
    the tail is nil or that uint64; anything else is decoded in full.

    Raises:
        msgspec.DecodeError: ``data`` is not an envelope.
    """
    n = len(data)
    if n > 9 and data[0] == 0x9A:
        last = data[-1]
        short = last <= 0x7F or data[-2] == 0xCC or data[-3] == 0xCD
        if not short and data[-5] != 0xCE:
            if data[-9] != 0xCF:
                if last == 0xC0:
                    return None
            elif last != 0xC0:
                return int.from_bytes(data[-8:], "big")
    elif n > 1 and data[0] == 0x99:
        return None  # nine items: written before digests existed
    return _decoded_digest(data)


def _decoded_digest(data: bytes) -> int | None:
    items = _fields.decode(data)
    if len(items) <= _DIGEST_INDEX:
        return None
    return _digest_field.decode(items[_DIGEST_INDEX])


def _short(text: str) -> str:
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def _plain(value: Any) -> Any:
    try:
        return msgspec.to_builtins(value)
    except (TypeError, ValueError):
        return repr(value)


def state_diff(old: Any, new: Any) -> str:
    """``field: old -> new`` for each differing top-level field, shortened."""
    a, b = _plain(old), _plain(new)
    if isinstance(a, dict) and isinstance(b, dict):
        parts = [
            f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b), key=str)
            if a.get(k, _MISSING) != b.get(k, _MISSING)
        ]
        if parts:
            return _short("; ".join(parts))
    return _short(f"{a!r} -> {b!r}")


_MISSING = object()


def _fold_checked(
    replay: Replay, stream_id: str, rows: Sequence[RecordRow]
) -> Divergence | tuple[Instance, int] | None:
    """Fold ``rows`` decision by decision; the first mismatch, or the end.

    Returns the :class:`Divergence`, or the instance and how many digests were
    checked, or None for an empty stream.
    """
    checked = 0
    inst: Instance | None = None
    start = 0
    for i, row in enumerate(rows):
        try:
            digest = recorded_digest(row[4])
        except msgspec.DecodeError:
            digest = None  # the replay below reports the bad bytes
        if digest is None and i + 1 < len(rows):
            continue
        try:
            if inst is None:
                started, command_id = replay.started(stream_id, rows[0])
                inst = replay.fold(
                    stream_id, replay.begin(started, command_id), rows[1 : i + 1]
                )
            else:
                inst = replay.fold(stream_id, inst, rows[start : i + 1])
        except NonstopError as exc:
            at = int(getattr(exc, "position", 0)) or row[1]
            kind = rows[at - 1][3] if 0 < at <= len(rows) else row[3]
            return Divergence(
                stream_id, at, kind, digest, None, _short(error_text(exc))
            )
        start = i + 1
        if digest is None:
            continue
        got = state_digest(inst.state)
        if got != digest:
            return Divergence(stream_id, row[1], row[3], digest, got, "")
        checked += 1
    if inst is None:
        return None
    return inst, checked


def check_stream(
    candidate: Replay,
    stream_id: str,
    rows: Sequence[RecordRow],
    *,
    baseline: Replay | None = None,
) -> Divergence | tuple[Instance, int]:
    """Replay one whole stream under ``candidate`` and check every digest.

    Args:
        candidate: The replay rule with the candidate code (workflows and
            upcasters).
        stream_id: The instance.
        rows: Its stored rows, in order, from position 1.
        baseline: The code that wrote the history, if at hand: on a
            divergence its state there is the "old" side of the diff.

    Returns:
        The first :class:`Divergence`, or the replayed instance and how many
        digests matched.

    Raises:
        UnknownInstance: ``rows`` is empty.
    """
    found = _fold_checked(candidate, stream_id, rows)
    if found is None:
        raise UnknownInstance(stream_id)
    if not isinstance(found, Divergence):
        return found
    if found.replayed is None or baseline is None:
        return found
    upto = [r for r in rows if r[1] <= found.position]
    try:
        old = baseline.replay(stream_id, upto).state
        new = candidate.replay(stream_id, upto).state
    except NonstopError:
        return found
    return msgspec.structs.replace(found, diff=state_diff(old, new))
