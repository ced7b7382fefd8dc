"""Prometheus exposition of the health counters (the ``nonstop[metrics]`` extra).

Metric names follow the Prometheus conventions:

- ``nonstop_commands_total{workflow,version,outcome}``: outcome is
  ``accepted``, ``rejected`` or ``crashed``;
- ``nonstop_command_seconds{workflow,version}``: histogram of send/start
  latency (decide and commit);
- ``nonstop_instances_started_total``, ``nonstop_instances_completed_total``,
  ``nonstop_instances_failed_total`` ``{workflow,version}``;
- ``nonstop_code_mismatch{workflow,version,recorded,loaded}``: 1 for each
  version this process runs with other code than the deployed one
  (:mod:`engine.deploy.code`);
- ``nonstop_projection_lag{projection}``: events of the global order a
  projection has not processed yet, and ``nonstop_log_head`` (read from the
  store when scraped, see :class:`StoreLagCollector`).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from engine.core.errors import NonstopError
from engine.deploy.configs import refusal_totals
from engine.health.analysis import LATENCY_BOUNDS, Counts
from engine.health.counters import Health
from engine.store import EventStore

try:
    import prometheus_client
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise NonstopError(
        "Prometheus metrics need prometheus_client: pip install 'nonstop[metrics]'"
    ) from exc

__all__ = ["HealthCollector", "StoreLagCollector", "serve"]


class HealthCollector(Collector):
    """Exposes the counts of every registered :class:`Health` at each scrape.

    Nothing is done on the commit path: a scrape reads the engines' running
    totals (:meth:`Health.totals`).
    """

    _default: HealthCollector | None = None
    _default_lock = threading.Lock()

    def __init__(self) -> None:
        self._healths: weakref.WeakSet[Health] = weakref.WeakSet()

    @classmethod
    def default(cls) -> HealthCollector:
        """The collector registered in ``prometheus_client``'s default registry."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
                prometheus_client.REGISTRY.register(cls._default)
            return cls._default

    def add(self, health: Health) -> None:
        """Expose ``health``'s counts too."""
        self._healths.add(health)

    def collect(self) -> Iterator[Metric]:
        """Yield the counters and the latency histogram."""
        sums: dict[tuple[str, int], Counts] = {}
        for h in list(self._healths):
            for key, c in h.totals().items():
                sums[key] = sums[key] + c if key in sums else c
        labels = ["workflow", "version"]
        commands = CounterMetricFamily(
            "nonstop_commands",
            "Commands decided, by outcome (accepted, rejected, crashed).",
            labels=[*labels, "outcome"],
        )
        seconds = HistogramMetricFamily(
            "nonstop_command_seconds",
            "Latency of send/start: decide and commit.",
            labels=labels,
        )
        instances = {
            name: CounterMetricFamily(
                f"nonstop_instances_{name}", f"Instances {name}.", labels=labels
            )
            for name in ("started", "completed", "failed")
        }
        for (workflow, version), c in sorted(sums.items()):
            lv = [workflow, str(version)]
            commands.add_metric([*lv, "accepted"], c.accepted)
            commands.add_metric([*lv, "rejected"], c.rejected)
            commands.add_metric([*lv, "crashed"], c.crashed)
            instances["started"].add_metric(lv, c.started)
            instances["completed"].add_metric(lv, c.completed)
            instances["failed"].add_metric(lv, c.failed)
            cumulative, buckets = 0, []
            hist = c.latency or (0,) * (len(LATENCY_BOUNDS) + 1)
            for bound, n in zip((*LATENCY_BOUNDS, math.inf), hist, strict=True):
                cumulative += n
                le = "+Inf" if bound == math.inf else repr(bound)
                buckets.append((le, float(cumulative)))
            seconds.add_metric(lv, buckets, c.latency_sum)
        yield commands
        yield seconds
        yield from instances.values()
        refused = CounterMetricFamily(
            "nonstop_config_refusals",
            "Config versions this process's code could not decode (it kept the "
            "last good one).",
            labels=["workflow", "config_version"],
        )
        for (workflow, version), n in sorted(refusal_totals().items()):
            refused.add_metric([workflow, str(version)], n)
        yield refused
        yield _code_mismatches()


def _code_mismatches() -> GaugeMetricFamily:
    """1 per version this process runs with code the registry does not record."""
    from engine.deploy.code import MISMATCHES

    gauge = GaugeMetricFamily(
        "nonstop_code_mismatch",
        "1 when this process runs a version with other code than the one deployed.",
        labels=["workflow", "version", "recorded", "loaded"],
    )
    for (workflow, version), (recorded, mine) in sorted(MISMATCHES.items()):
        gauge.add_metric([workflow, str(version), recorded[:8], mine[:8]], 1.0)
    return gauge


class StoreLagCollector(Collector):
    """Lag of tracked consumers, read from the store at each scrape.

    Args:
        store: The event store.
        projections: Tracking names of the projections to report.
    """

    def __init__(self, store: EventStore, projections: Sequence[str] = ()) -> None:
        self.store = store
        self.projections = list(projections)

    def collect(self) -> Iterator[Metric]:
        """Yield the lag gauges."""
        head = self.store.last_global_position()
        lag = GaugeMetricFamily(
            "nonstop_projection_lag",
            "Events of the global order a projection has not processed.",
            labels=["projection"],
        )
        for name in self.projections:
            done = self.store.tracking_position(name) or 0
            lag.add_metric([name], max(head - done, 0))
        yield lag
        head_gauge = GaugeMetricFamily(
            "nonstop_log_head", "The last global position of the event log."
        )
        head_gauge.add_metric([], head)
        yield head_gauge


def serve(port: int, *, addr: str = "127.0.0.1", registry: Any = None) -> Any:
    """Serve ``/metrics`` on ``addr:port`` in a background thread.

    Returns:
        The server (call ``shutdown()`` to stop it).
    """
    reg = registry if registry is not None else prometheus_client.REGISTRY
    server, _thread = prometheus_client.start_http_server(port, addr, registry=reg)
    return server
