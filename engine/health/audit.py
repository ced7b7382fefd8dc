"""Rollout decisions as audit entries, for ``nonstop audit``.

Routing changes a rollout makes (advance, complete, rollback) are registry
events and already in the deployments audit; the guard's other decisions
(holds, inconclusive windows) and the operators' starts, pauses, resumes and
aborts live in the rollouts stream. This reads that stream (its cost is the
number of rollout events, never the log) and words each event as an
:class:`~engine.deploy.view.AuditEntry`.
"""

from __future__ import annotations

from typing import Any

from engine.core.codec import EventCodec
from engine.deploy.view import AuditEntry
from engine.health.events import (
    ROLLOUT_STREAM,
    RolloutAborted,
    RolloutDecided,
    RolloutPaused,
    RolloutResumed,
    RolloutStarted,
)
from engine.store import EventStore

__all__ = ["rollout_audit"]


def rollout_audit(store: EventStore) -> list[AuditEntry]:
    """Every rollout event of ``store`` as an audit entry, oldest first."""
    codec = EventCodec()
    subjects: dict[int, str] = {}
    out: list[AuditEntry] = []
    for rec in store.read_stream(ROLLOUT_STREAM):
        for ev in codec.decode(
            rec.stream_id, rec.position, rec.global_position, rec.type, rec.data
        ):
            entry = _entry(ev.event, subjects, ev.recorded_at)
            if entry is not None:
                out.append(entry)
    return out


def _entry(e: Any, subjects: dict[int, str], at: int) -> AuditEntry | None:
    if isinstance(e, RolloutStarted):
        subjects[e.rollout] = e.workflow
        steps = ", ".join(f"{s:g} %" for s in e.steps)
        detail = (
            f"rollout {e.rollout} of {e.workflow}@{e.version} against "
            f"{e.workflow}@{e.baseline}: steps {steps}, {e.interval:g} s windows, "
            f"min sample {e.min_sample}, max error rate {e.max_error_rate:.2%}, "
            f"max latency ratio {e.max_latency_ratio:g}, failure limit "
            f"{e.failure_limit}"
        )
        return AuditEntry(at, e.workflow, "rollout start", detail, e.by, e.reason)
    if isinstance(e, RolloutDecided):
        latency = "n/a" if e.latency_ratio is None else f"{e.latency_ratio:.2f}"
        detail = (
            f"rollout {e.rollout}: {e.verdict}, share {e.share:g} %, samples "
            f"{e.samples} vs {e.baseline_samples}, error rate {e.error_rate:.2%} vs "
            f"{e.baseline_error_rate:.2%}, latency ratio {latency}, failures "
            f"{e.failures}"
        )
        return AuditEntry(at, e.workflow, f"rollout {e.action}", detail, e.by, e.reason)
    for kind, action in (
        (RolloutPaused, "rollout pause"),
        (RolloutResumed, "rollout resume"),
        (RolloutAborted, "rollout abort"),
    ):
        if isinstance(e, kind):
            subject = subjects.get(e.rollout, "")
            detail = f"rollout {e.rollout}"
            return AuditEntry(at, subject, action, detail, e.by, e.reason)
    return None
