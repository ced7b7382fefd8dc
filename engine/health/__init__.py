"""Health signals per ``workflow@version`` and guarded rollouts.

Each :class:`~engine.runtime.Engine` built with ``health=True`` (or
``metrics=True``) counts commands and instances per version and flushes the
counts to reserved streams of its store (:mod:`engine.health.counters`); any
process reads a window summed over every engine (:func:`read_window`). The
rollout controller (:mod:`engine.health.controller`) compares a candidate
with its baseline over the same window (:mod:`engine.health.analysis`, pure)
and advances, holds or rolls back through the deployments registry.
"""

from __future__ import annotations

from engine.health.analysis import (
    LATENCY_BOUNDS,
    Analysis,
    Check,
    Counts,
    Decision,
    Progress,
    Thresholds,
    analyze,
    decide,
)
from engine.health.counters import DEFAULT_BUCKET_SECONDS, Health
from engine.health.window import bucket_starts, read_window
from engine.store import EventStore

__all__ = [
    "DEFAULT_BUCKET_SECONDS",
    "LATENCY_BOUNDS",
    "Analysis",
    "Check",
    "Counts",
    "Decision",
    "Health",
    "Progress",
    "Thresholds",
    "analyze",
    "bucket_starts",
    "decide",
    "engine_health",
    "read_window",
]


def engine_health(
    store: EventStore, health: Health | bool | None, metrics: bool
) -> Health | None:
    """The health object of an engine built with ``health=`` and ``metrics=``.

    ``metrics=True`` adds the Prometheus exposition (``nonstop[metrics]``) to
    it, creating one with the defaults when ``health`` is not given.
    """
    if isinstance(health, Health):
        found = health
    elif health or metrics:
        found = Health(store)
    else:
        return None
    if metrics:
        from engine.health.prometheus import HealthCollector

        HealthCollector.default().add(found)
    return found
