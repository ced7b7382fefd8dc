"""Pure analysis of health windows: two windows of counts in, a verdict out.

Nothing here does I/O or reads a clock: the rollout controller passes the
candidate's and the baseline's counts over the same window and the time, and
acts on what comes back. Only the standard library and msgspec are imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import msgspec

__all__ = [
    "LATENCY_BOUNDS",
    "Action",
    "Analysis",
    "Check",
    "Counts",
    "Decision",
    "Progress",
    "Thresholds",
    "Verdict",
    "analyze",
    "decide",
    "latency_bucket",
    "with_checks",
]

LATENCY_BOUNDS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the latency histogram; one more bucket is +Inf."""

Verdict = Literal["pass", "fail", "inconclusive"]
"""What one window says about a candidate."""
Action = Literal["advance", "hold", "rollback", "complete"]
"""What the controller does after a verdict."""


def latency_bucket(seconds: float) -> int:
    """Index of the histogram bucket ``seconds`` falls in (``le`` semantics)."""
    for i, bound in enumerate(LATENCY_BOUNDS):
        if seconds <= bound:
            return i
    return len(LATENCY_BOUNDS)


class Counts(msgspec.Struct, frozen=True):
    """Health counts of one ``workflow@version`` over some time."""

    accepted: int = 0
    """Commands (starts included) decided and committed."""
    rejected: int = 0
    """Commands the decider refused (``CommandRejected``)."""
    crashed: int = 0
    """Commands whose ``decide`` or ``evolve`` raised."""
    started: int = 0
    """Instances started."""
    completed: int = 0
    """Instances that reached ``completed``."""
    failed: int = 0
    """Instances that reached ``failed``."""
    latency: tuple[int, ...] = ()
    """Accepted commands per latency bucket (see :data:`LATENCY_BOUNDS`)."""
    latency_sum: float = 0.0
    """Sum of the latencies counted in ``latency``, in seconds."""

    @property
    def samples(self) -> int:
        """Commands decided: accepted, rejected or crashed."""
        return self.accepted + self.rejected + self.crashed

    @property
    def errors(self) -> int:
        """Rejected and crashed commands, plus instances that failed."""
        return self.rejected + self.crashed + self.failed

    @property
    def error_rate(self) -> float:
        """``errors / samples`` (0 with no sample)."""
        return self.errors / self.samples if self.samples else 0.0

    @property
    def mean_latency(self) -> float | None:
        """Mean latency of accepted commands in seconds, None with none."""
        n = sum(self.latency)
        return self.latency_sum / n if n else None

    def __add__(self, other: Counts) -> Counts:
        size = max(len(self.latency), len(other.latency))
        a = self.latency + (0,) * (size - len(self.latency))
        b = other.latency + (0,) * (size - len(other.latency))
        return Counts(
            self.accepted + other.accepted,
            self.rejected + other.rejected,
            self.crashed + other.crashed,
            self.started + other.started,
            self.completed + other.completed,
            self.failed + other.failed,
            tuple(x + y for x, y in zip(a, b, strict=True)),
            self.latency_sum + other.latency_sum,
        )


@dataclass(frozen=True)
class Thresholds:
    """The checks a candidate must pass in every window."""

    min_sample: int = 50
    """Fewer candidate samples than this make the window inconclusive."""
    max_error_rate: float = 0.02
    """A candidate error rate above this, and above the baseline's, fails."""
    max_latency_ratio: float = 1.5
    """Candidate mean latency above this times the baseline's fails (>= 1)."""


@dataclass(frozen=True)
class Check:
    """One check of one window."""

    name: str
    """``samples``, ``error_rate`` or ``latency_ratio``."""
    ok: bool | None
    """True passed, False failed, None could not be judged."""
    detail: str
    """The numbers, in words."""


@dataclass(frozen=True)
class Analysis:
    """The verdict on one window, with its numbers."""

    verdict: Verdict
    """pass, fail or inconclusive."""
    checks: tuple[Check, ...]
    """Every check made."""
    samples: int
    """Candidate samples in the window."""
    baseline_samples: int
    """Baseline samples in the window."""
    error_rate: float
    """Candidate error rate."""
    baseline_error_rate: float
    """Baseline error rate."""
    latency_ratio: float | None
    """Candidate over baseline mean latency (None without both)."""

    @property
    def reason(self) -> str:
        """The failed checks (or all of them) in one line."""
        failed = [c for c in self.checks if c.ok is False]
        return "; ".join(c.detail for c in (failed or self.checks))


def analyze(candidate: Counts, baseline: Counts, limits: Thresholds) -> Analysis:
    """Judge ``candidate`` against ``baseline`` counted over the same window.

    With fewer than ``min_sample`` candidate samples the window is
    inconclusive, whatever the numbers. Otherwise it fails when the
    candidate's error rate is above both ``max_error_rate`` and the baseline's
    rate, or when its mean latency is above ``max_latency_ratio`` times the
    baseline's (judged only when the baseline has ``min_sample`` samples too).
    A candidate whose counts equal the baseline's therefore never fails.
    """
    rate, base_rate = candidate.error_rate, baseline.error_rate
    ratio = None
    cand_lat, base_lat = candidate.mean_latency, baseline.mean_latency
    if cand_lat is not None and base_lat:
        ratio = cand_lat / base_lat
    checks: list[Check] = []
    enough = candidate.samples >= limits.min_sample
    checks.append(
        Check(
            "samples",
            enough,
            f"samples {candidate.samples} (min {limits.min_sample})",
        )
    )
    if not enough:
        return Analysis(
            "inconclusive",
            tuple(checks),
            candidate.samples,
            baseline.samples,
            rate,
            base_rate,
            ratio,
        )
    bad_rate = rate > limits.max_error_rate and rate > base_rate
    checks.append(
        Check(
            "error_rate",
            not bad_rate,
            f"error rate {rate:.2%} vs baseline {base_rate:.2%} "
            f"(max {limits.max_error_rate:.2%})",
        )
    )
    if ratio is None or baseline.samples < limits.min_sample:
        checks.append(Check("latency_ratio", None, "latency ratio not judged"))
    else:
        slow = ratio > max(limits.max_latency_ratio, 1.0)
        checks.append(
            Check(
                "latency_ratio",
                not slow,
                f"latency ratio {ratio:.2f} (max {limits.max_latency_ratio:g})",
            )
        )
    verdict: Verdict = "fail" if any(c.ok is False for c in checks) else "pass"
    return Analysis(
        verdict,
        tuple(checks),
        candidate.samples,
        baseline.samples,
        rate,
        base_rate,
        ratio,
    )


def with_checks(analysis: Analysis, extra: Sequence[Check]) -> Analysis:
    """``analysis`` with more checks of the same window (external metrics).

    A failed extra check fails the window. An extra check that could not be
    judged (no data, server unreachable) makes a passing window inconclusive:
    the rollout holds rather than advancing blind, and never rolls back for it.
    An inconclusive or failed window stays so.
    """
    if not extra:
        return analysis
    checks = analysis.checks + tuple(extra)
    verdict = analysis.verdict
    if any(c.ok is False for c in extra) and verdict != "inconclusive":
        verdict = "fail"
    elif verdict == "pass" and any(c.ok is None for c in extra):
        verdict = "inconclusive"
    return replace(analysis, verdict=verdict, checks=checks)


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands between two windows."""

    step: int = 0
    """Index into the plan's steps of the share the candidate has now."""
    failures: int = 0
    """Failed windows since the last advance."""


@dataclass(frozen=True)
class Decision:
    """What to do after one window."""

    action: Action
    """advance, hold, rollback or complete."""
    progress: Progress
    """Where the rollout stands after the action."""
    reason: str
    """Why, with the numbers."""


def decide(
    analysis: Analysis,
    progress: Progress,
    *,
    steps: tuple[float, ...],
    failure_limit: int,
    overdue: bool = False,
) -> Decision:
    """The action after a window judged ``analysis``.

    A pass advances to the next step (``complete`` when that step is the last);
    an inconclusive window holds; a failure holds until ``failure_limit``
    failures since the last advance, then rolls back. ``overdue`` (past the
    plan's deadline) rolls back unless the window completes the rollout.
    """
    reason = analysis.reason
    if analysis.verdict == "pass":
        nxt = progress.step + 1
        action: Action = "complete" if nxt >= len(steps) - 1 else "advance"
        return Decision(action, Progress(min(nxt, len(steps) - 1), 0), reason)
    if overdue:
        return Decision("rollback", progress, f"deadline passed; {reason}")
    if analysis.verdict == "inconclusive":
        return Decision("hold", progress, f"inconclusive: {reason}")
    failures = progress.failures + 1
    after = Progress(progress.step, failures)
    if failures >= failure_limit:
        return Decision(
            "rollback", after, f"failed {failures}/{failure_limit}: {reason}"
        )
    return Decision("hold", after, f"failed {failures}/{failure_limit}: {reason}")
