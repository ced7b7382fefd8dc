"""Per-version instance counts: the contract between deployments and read models.

Deployments (drain, retire, ``nonstop versions``) need, per workflow version, how
many instances run, completed and failed, and how old the oldest running one is.
A :class:`StatsSource` answers that; the engine can scan the log for it, and the
built-in instances projection answers from its read model without a scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["StatsSource", "VersionStats"]


@dataclass(frozen=True)
class VersionStats:
    """Instance counts of one ``workflow@version``."""

    workflow: str
    """The workflow name."""
    version: int
    """The workflow version."""
    running: int
    """Instances neither completed, failed nor cancelled."""
    completed: int
    """Instances that completed."""
    failed: int
    """Instances that failed."""
    oldest_running_started_us: int | None
    """When the oldest running instance started (µs since the epoch), or None."""
    cancelled: int = 0
    """Instances an operator cancelled (finished, like completed and failed)."""
    unreadable: int = 0
    """Instances whose stored events cannot be replayed (not counted as running;
    ``nonstop instances --status unreadable`` names their errors)."""


class StatsSource(Protocol):
    """Anything that reports :class:`VersionStats` (sync; may do I/O)."""

    def version_stats(self, workflow: str | None = None) -> list[VersionStats]:
        """Counts per version, sorted by (workflow, version).

        Args:
            workflow: only this workflow's versions when given.
        """
        ...
