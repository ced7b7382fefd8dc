"""The events health flushes and rollouts write, and where they live.

Health counts go to reserved streams, one per ``workflow@version`` per time
bucket::

    nonstop.health:WORKFLOW@VERSION:BUCKET_SECONDS:BUCKET_START

``BUCKET_START`` is the bucket's start in whole seconds since the epoch. Every
engine appends one :class:`HealthFlushed` per bucket it counted in to that
bucket's stream, so a window of ``W`` seconds reads ``W / BUCKET_SECONDS``
small streams, whatever the size of the log. Rollouts live in one stream,
``nonstop.rollouts``; the controller's lease in ``nonstop.lease:rollout``.
"""

from __future__ import annotations

import msgspec

from engine.core.events import event
from engine.health.analysis import Counts

__all__ = [
    "HEALTH_STREAM_PREFIX",
    "LEASE_STREAM",
    "ROLLOUT_STREAM",
    "HealthFlushed",
    "LeaseTaken",
    "MetricCheck",
    "RolloutAborted",
    "RolloutDecided",
    "RolloutPaused",
    "RolloutResumed",
    "RolloutStarted",
    "health_stream",
]

HEALTH_STREAM_PREFIX = "nonstop.health:"
"""Stream id prefix of the health buckets."""
ROLLOUT_STREAM = "nonstop.rollouts"
"""Stream id of every rollout plan and decision."""
LEASE_STREAM = "nonstop.lease:rollout"
"""Stream id of the rollout controller's lease."""


def health_stream(workflow: str, version: int, bucket_seconds: int, start: int) -> str:
    """The stream of ``workflow@version``'s bucket starting at ``start``."""
    return f"{HEALTH_STREAM_PREFIX}{workflow}@{version}:{bucket_seconds}:{start}"


class MetricCheck(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A check of a rollout window by a PromQL query (an external metric).

    The query may use ``$workflow``, ``$version`` (the candidate), ``$baseline``
    and ``$interval`` (the plan's window, e.g. ``60s``); it must return one
    number. The check fails when that number is above ``max`` or below ``min``.
    """

    name: str
    """Shown in decisions and the audit."""
    query: str
    """PromQL, evaluated at the end of each window."""
    max: float | None = None
    """Highest value that passes."""
    min: float | None = None
    """Lowest value that passes."""

    @property
    def bounds(self) -> str:
        """``min X, max Y`` as set."""
        parts = [] if self.min is None else [f"min {self.min:g}"]
        return ", ".join(parts + ([] if self.max is None else [f"max {self.max:g}"]))


@event("nonstop.HealthFlushed")
class HealthFlushed(msgspec.Struct, frozen=True):
    """One engine's counts of one ``workflow@version`` in one time bucket."""

    workflow: str
    version: int
    bucket_start: int
    """Start of the bucket, seconds since the epoch."""
    engine: str
    """The engine that counted (host:pid)."""
    counts: Counts


@event("nonstop.RolloutStarted")
class RolloutStarted(msgspec.Struct, frozen=True):
    """A rollout plan for ``workflow@version`` begins (its first step is routed)."""

    rollout: int
    """Number of the rollout (its position in the rollouts stream)."""
    workflow: str
    version: int
    baseline: int
    """The stable version it is compared with."""
    steps: list[float]
    """Shares in percent, the last one 100."""
    interval: float
    """Seconds per window."""
    min_sample: int
    max_error_rate: float
    max_latency_ratio: float
    failure_limit: int
    deadline: float
    """Seconds from the start after which the rollout is rolled back."""
    at: float
    """When it started (seconds since the epoch)."""
    by: str
    reason: str = ""
    flag: str = ""
    """A flag ramp: the flag's name (``version`` is then 0)."""
    prometheus: str = ""
    """Base URL of the Prometheus server the metric checks query."""
    metrics: list[MetricCheck] = []
    """PromQL checks of every window, beside the store's health counts."""
    config: bool = False
    """A config ramp: ``version`` is the workflow's config version rolled out
    and ``baseline`` the config version it is compared with."""


@event("nonstop.RolloutDecided")
class RolloutDecided(msgspec.Struct, frozen=True):
    """The controller judged one window and acted."""

    rollout: int
    workflow: str
    action: str
    """advance, hold, rollback or complete."""
    verdict: str
    """pass, fail or inconclusive."""
    step: int
    """Step index after the action."""
    share: float
    """Candidate share in percent after the action."""
    failures: int
    samples: int
    baseline_samples: int
    error_rate: float
    baseline_error_rate: float
    latency_ratio: float | None
    window_start: float
    window_end: float
    reason: str
    by: str
    """The controller that decided (host:pid)."""


@event("nonstop.RolloutPaused")
class RolloutPaused(msgspec.Struct, frozen=True):
    """An operator paused a rollout: no window is judged until resumed."""

    rollout: int
    by: str
    reason: str = ""


@event("nonstop.RolloutResumed")
class RolloutResumed(msgspec.Struct, frozen=True):
    """An operator resumed a paused rollout."""

    rollout: int
    at: float
    by: str
    reason: str = ""


@event("nonstop.RolloutAborted")
class RolloutAborted(msgspec.Struct, frozen=True):
    """An operator aborted a rollout; the candidate was rolled back."""

    rollout: int
    by: str
    reason: str = ""


@event("nonstop.LeaseTaken")
class LeaseTaken(msgspec.Struct, frozen=True):
    """``holder`` holds the controller lease until ``expires`` (epoch seconds)."""

    holder: str
    at: float
    """When it was taken or renewed (epoch seconds)."""
    expires: float
