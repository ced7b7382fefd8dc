"""State digests: a short, stable fingerprint of an instance's state (pure).

The decider stores the digest of the state after each decision in the
envelope of that decision's last event (``Envelope.digest``). ``nonstop
verify`` replays the stream under candidate code and compares the state after
each recorded decision with it: a different digest means the candidate code
folds the history into a different state.

The digest is BLAKE2b with an 8-byte output over the canonical msgpack encoding
of the state (``order="deterministic"``: dict keys and sets sorted), read as an
unsigned big-endian integer. Two states that encode the same get the same
digest, whatever Python objects hold them (a tuple and a list, a state decoded
from a snapshot or a ``nonstop.Migrated`` event and one folded from events).
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

import msgspec

__all__ = ["canonical", "digest_of", "state_digest"]

_encoder = msgspec.msgpack.Encoder(order="deterministic")
_from_bytes = int.from_bytes
_blank = blake2b(digest_size=8)
"""Copied for each digest: cheaper than building a new hash object."""


def canonical(state: Any) -> bytes:
    """The canonical msgpack encoding of ``state`` (what the digest covers)."""
    return _encoder.encode(state)


def digest_of(data: bytes) -> int:
    """BLAKE2b-64 of ``data`` as an unsigned integer."""
    h = _blank.copy()
    h.update(data)
    return _from_bytes(h.digest(), "big")


def state_digest(state: Any) -> int:
    """BLAKE2b-64 of the canonical encoding of ``state``, as an unsigned integer.

    Raises:
        TypeError: ``state`` is not msgspec-encodable.
    """
    h = _blank.copy()
    h.update(_encoder.encode(state))
    return _from_bytes(h.digest(), "big")
