"""Sticky routing of new instances: the hash, the buckets and the policy (pure).

A routing key (the instance id, or a business key given at start) is hashed
with BLAKE2b (8-byte digest) over ``"{scope}/{key}"`` (the scope is the
workflow name, or ``flag:NAME`` for a flag) and taken modulo
:data:`BUCKETS` (10,000). A canary of ``p`` percent takes the buckets below
``p * 100``: raising ``p`` only adds buckets, so a key that was in the canary
stays there, and the same key always lands in the same bucket on every
process and every run.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from engine.core.errors import DeployError

__all__ = ["BUCKETS", "Routing", "bucket", "percent_to_bp"]

BUCKETS = 10_000
"""Buckets per scope; a share of 1 % is 100 buckets (a basis point is one)."""


def bucket(scope: str, key: str) -> int:
    """The bucket of ``key`` in ``scope``, uniform in ``[0, BUCKETS)``."""
    digest = hashlib.blake2b(f"{scope}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def percent_to_bp(percent: float) -> int:
    """A share in percent (0 to 100, two decimals at most) as basis points.

    Raises:
        DeployError: the share is outside 0..100 or finer than 0.01 %.
    """
    ok = math.isfinite(percent) and 0 <= percent <= 100
    bp = round(percent * 100) if ok else -1
    if not ok or abs(bp - percent * 100) > 1e-6:
        raise DeployError(
            f"share {percent!r} % must be between 0 and 100 with at most two "
            "decimals (0.01 % is the smallest step)"
        )
    return bp


@dataclass(frozen=True)
class Routing:
    """Which version a new instance of one workflow gets.

    Keys whose bucket is below ``canary_bp`` go to ``canary``; all others to
    ``stable``.
    """

    stable: int
    """The version most new instances get."""
    canary: int | None = None
    """A version tried on a share of new instances, if any."""
    canary_bp: int = 0
    """The canary's share in basis points (100 = 1 %)."""

    def version_for(self, key_bucket: int) -> int:
        """The version for a key in bucket ``key_bucket``."""
        if self.canary is not None and key_bucket < self.canary_bp:
            return self.canary
        return self.stable

    def share_bp(self, version: int) -> int:
        """The share of new instances ``version`` gets, in basis points."""
        share = 0
        if version == self.stable:
            share += BUCKETS - (self.canary_bp if self.canary is not None else 0)
        if version == self.canary:
            share += self.canary_bp
        return share

    def describe(self) -> str:
        """``v1: 90 %, v2: 10 %`` or ``v2: 100 %``."""
        if self.canary is None:
            return f"v{self.stable}: 100 %"
        return (
            f"v{self.stable}: {(BUCKETS - self.canary_bp) / 100:g} %, "
            f"v{self.canary}: {self.canary_bp / 100:g} %"
        )
