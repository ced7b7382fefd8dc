"""Prometheus exposition of the health counters (the ``nonstop[metrics]`` extra).

Metric names follow the Prometheus conventions:

- ``nonstop_commands_total{workflow,version,outcome}``: outcome is
  ``accepted``, ``rejected`` or ``crashed``;
- ``nonstop_command_seconds{workflow,version}``: histogram of send/start
  latency (decide and commit);
- ``nonstop_instances_started_total``, ``nonstop_instances_completed_total``,
  ``nonstop_instances_failed_total`` ``{workflow,version}``;
- ``nonstop_projection_lag{projection}``: events of the global order a
  projection has not processed yet, and ``nonstop_log_head`` (read from the
  store when scraped, see :class:`StoreLagCollector`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from engine.errors import NonstopError
from engine.health.analysis import LATENCY_BOUNDS
from engine.store import EventStore

try:
    import prometheus_client
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise NonstopError(
        "Prometheus metrics need prometheus_client: pip install 'nonstop[metrics]'"
    ) from exc

__all__ = ["PrometheusSink", "StoreLagCollector", "serve"]


class PrometheusSink:
    """Counters and histograms of every engine in this process.

    Args:
        registry: Where the metrics are registered.
    """

    _default: PrometheusSink | None = None
    _default_lock = threading.Lock()

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.registry = registry
        labels = ("workflow", "version")
        self.commands = prometheus_client.Counter(
            "nonstop_commands",
            "Commands decided, by outcome (accepted, rejected, crashed).",
            (*labels, "outcome"),
            registry=registry,
        )
        self.seconds = prometheus_client.Histogram(
            "nonstop_command_seconds",
            "Latency of send/start: decide and commit.",
            labels,
            buckets=LATENCY_BOUNDS,
            registry=registry,
        )
        self.started = prometheus_client.Counter(
            "nonstop_instances_started", "Instances started.", labels, registry=registry
        )
        self.completed = prometheus_client.Counter(
            "nonstop_instances_completed",
            "Instances that completed.",
            labels,
            registry=registry,
        )
        self.failed = prometheus_client.Counter(
            "nonstop_instances_failed",
            "Instances that failed.",
            labels,
            registry=registry,
        )
        # Labelled children looked up once per version, not per command.
        self._children: dict[tuple[str, int], tuple[Any, ...]] = {}

    @classmethod
    def default(cls) -> PrometheusSink:
        """The sink registered in ``prometheus_client``'s default registry."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls(prometheus_client.REGISTRY)
            return cls._default

    def _of(self, workflow: str, version: int) -> tuple[Any, ...]:
        found = self._children.get((workflow, version))
        if found is None:
            v = str(version)
            found = (
                self.commands.labels(workflow, v, "accepted"),
                self.seconds.labels(workflow, v),
                self.started.labels(workflow, v),
                self.completed.labels(workflow, v),
                self.failed.labels(workflow, v),
            )
            self._children[(workflow, version)] = found
        return found

    def accepted(
        self, workflow: str, version: int, start: bool, status: str, seconds: float
    ) -> None:
        """See :meth:`engine.health.Sink.accepted`."""
        commands, hist, started, completed, failed = self._of(workflow, version)
        commands.inc()
        hist.observe(seconds)
        if start:
            started.inc()
        if status == "completed":
            completed.inc()
        elif status == "failed":
            failed.inc()

    def refused(self, workflow: str, version: int, outcome: str) -> None:
        """See :meth:`engine.health.Sink.refused`."""
        self.commands.labels(workflow, str(version), outcome).inc()


class StoreLagCollector(Collector):
    """Lag of tracked consumers, read from the store at each scrape.

    Args:
        store: The event store.
        projections: Tracking names of the projections to report.
    """

    def __init__(self, store: EventStore, projections: Sequence[str] = ()) -> None:
        self.store = store
        self.projections = list(projections)

    def collect(self) -> Iterator[GaugeMetricFamily]:
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
