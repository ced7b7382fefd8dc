"""Feature flags: boolean, percentage and variant, with sticky bucketing (pure).

A percentage flag is on for keys whose bucket (scope ``flag:NAME``, see
:mod:`engine.deploy.routing`) is below ``percent * 100``, so raising the share
only turns it on for more keys. A variant flag splits the buckets by its
weights, in the order given. A killed flag is off (``ctx.flag`` gives False,
``ctx.variant`` gives the caller's default) whatever its definition says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from engine.core.errors import FlagError
from engine.deploy.routing import BUCKETS, bucket

__all__ = ["Flag", "FlagKind"]

FlagKind = Literal["boolean", "percentage", "variant"]


@dataclass(frozen=True)
class Flag:
    """The definition of one flag."""

    name: str
    """Flag name, as passed to ``ctx.flag`` / ``ctx.variant``."""
    kind: FlagKind
    """boolean, percentage or variant."""
    enabled: bool = False
    """For a boolean flag: on or off."""
    percent_bp: int = 0
    """For a percentage flag: the share of keys it is on for, in basis points."""
    variants: tuple[tuple[str, int], ...] = field(default=())
    """For a variant flag: (variant, weight in basis points), summing to 10,000."""
    killed: bool = False
    """The kill switch: when set, the flag is off for everyone."""

    def __post_init__(self) -> None:
        if self.kind not in ("boolean", "percentage", "variant"):
            raise FlagError(
                f"flag {self.name!r}: kind {self.kind!r} must be boolean, "
                "percentage or variant"
            )
        if not 0 <= self.percent_bp <= BUCKETS:
            raise FlagError(
                f"flag {self.name!r}: share {self.percent_bp / 100:g} % must be "
                "between 0 and 100"
            )
        if self.kind == "variant":
            total = sum(w for _, w in self.variants)
            if (
                not self.variants
                or total != BUCKETS
                or any(w < 0 for _, w in self.variants)
            ):
                raise FlagError(
                    f"flag {self.name!r}: variant weights {self.describe()} must be "
                    "non-negative and add up to 100 %"
                )

    def evaluate(self, kind: str, key: str, default: Any) -> Any:
        """The value for routing key ``key``, asked as ``flag`` or ``variant``.

        Raises:
            FlagError: a boolean question to a variant flag or the reverse.
        """
        if kind == "variant":
            if self.kind != "variant":
                raise FlagError(f"flag {self.name!r} is {self.kind}, not a variant")
            if self.killed:
                return default
            b = bucket(f"flag:{self.name}", key)
            upto = 0
            for name, weight in self.variants:
                upto += weight
                if b < upto:
                    return name
            return default  # pragma: no cover - weights add up to BUCKETS
        if self.kind == "variant":
            raise FlagError(f"flag {self.name!r} is a variant flag; use ctx.variant")
        if self.killed:
            return False
        if self.kind == "boolean":
            return self.enabled
        return bucket(f"flag:{self.name}", key) < self.percent_bp

    def describe(self) -> str:
        """The definition in a few words (for ``nonstop flags list``)."""
        if self.kind == "boolean":
            what = "on" if self.enabled else "off"
        elif self.kind == "percentage":
            what = f"{self.percent_bp / 100:g} %"
        else:
            what = ", ".join(f"{n}: {w / 100:g} %" for n, w in self.variants)
        return f"{what} (killed)" if self.killed else what
