"""Rollout plans and their state, folded from the ``nonstop.rollouts`` stream.

A plan moves a candidate ``workflow@version`` through shares of new instances
(``steps``, the last one 100 %). The controller (:mod:`engine.health.controller`)
judges each window of ``interval`` seconds and records its decision here
before it changes routing through the deployments registry.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import msgspec

from engine.core.errors import RolloutError
from engine.health.analysis import Progress, Thresholds
from engine.health.events import (
    MetricCheck,
    RolloutAborted,
    RolloutDecided,
    RolloutPaused,
    RolloutResumed,
    RolloutStarted,
)

__all__ = [
    "MetricCheck",
    "Rollout",
    "RolloutPlan",
    "RolloutStatus",
    "RolloutView",
    "config_subject",
    "flag_subject",
    "parse_duration",
]

RolloutStatus = Literal["running", "paused", "completed", "rolled_back", "aborted"]


def flag_subject(workflow: str, flag: str) -> str:
    """The health subject of ``workflow``'s instances by value of ``flag``.

    Counted as ``SUBJECT@1`` (flag on) and ``SUBJECT@0`` (flag off).
    """
    return f"{workflow}+flag:{flag}"


def config_subject(workflow: str) -> str:
    """The health subject of ``workflow``'s instances by config version read.

    Counted as ``SUBJECT@1`` (the config version rolled out) and ``SUBJECT@0``
    (the version it is compared with), for instances whose decisions read a
    pinned ``ctx.config``.
    """
    return f"{workflow}+config"


def parse_duration(text: str | float) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``2h`` or ``500ms``.

    Raises:
        RolloutError: not a positive duration.
    """
    if isinstance(text, int | float):
        value = float(text)
    else:
        s = text.strip().lower()
        scale = 1.0
        for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if s.endswith(suffix):
                s, scale = s[: -len(suffix)], mult
                break
        try:
            value = float(s) * scale
        except ValueError:
            value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise RolloutError(
            f"duration {text!r} is not a positive number of seconds; write it "
            "like 90, 90s, 5m or 2h"
        )
    return value


@dataclass(frozen=True)
class RolloutPlan:
    """How to roll out ``workflow@version``."""

    workflow: str
    """Workflow name."""
    version: int
    """The candidate version."""
    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    """Shares of new instances in percent, increasing, the last one 100."""
    interval: float = 60.0
    """Seconds per window judged."""
    min_sample: int = 50
    """Fewer candidate commands in a window make it inconclusive (it waits)."""
    max_error_rate: float = 0.02
    """Highest candidate error rate tolerated above the baseline's."""
    max_latency_ratio: float = 1.5
    """Highest candidate / baseline mean latency."""
    failure_limit: int = 2
    """Failed windows (since the last advance) that roll back."""
    deadline: float = 1800.0
    """Seconds after the start past which a rollout that is not done rolls back."""
    flag: str = ""
    """Ramp this percentage flag instead of a version: instances with it on
    are the candidate, with it off the baseline; a rollback kills it."""
    prometheus: str = ""
    """Base URL of a Prometheus server (``http://host:9090``) for ``metrics``."""
    metrics: tuple[MetricCheck, ...] = ()
    """PromQL checks of every window, beside the store's health counts."""
    config: bool = False
    """Ramp the workflow's config version ``version`` (stored by ``nonstop
    config set``) instead of a code version: instances that read it are the
    candidate, those that read the current config the baseline; a rollback
    takes the canary away."""

    def __post_init__(self) -> None:
        s = self.steps
        bad = None
        if not s or s[-1] != 100 or len(s) < 2:
            bad = "must have at least two shares and end with 100"
        elif any(not 0 < x <= 100 for x in s) or list(s) != sorted(set(s)):
            bad = "must increase strictly, each share in (0, 100]"
        if bad is not None:
            raise RolloutError(
                f"steps {','.join(f'{x:g}' for x in s)} {bad} (e.g. 5,25,50,100)"
            )
        for name, ok in (
            ("interval", self.interval > 0),
            ("min_sample", self.min_sample >= 1),
            ("max_error_rate", 0 <= self.max_error_rate <= 1),
            ("max_latency_ratio", self.max_latency_ratio >= 1),
            ("failure_limit", self.failure_limit >= 1),
            ("deadline", self.deadline > 0),
        ):
            if not ok:
                raise RolloutError(
                    f"plan {name} {getattr(self, name)!r} is out of range: interval "
                    "and deadline > 0, min_sample and failure_limit >= 1, "
                    "max_error_rate in [0, 1], max_latency_ratio >= 1"
                )
        self._check_metrics()
        if self.config and self.flag:
            raise RolloutError(
                "a plan ramps a version, a flag or a config, not both a flag and "
                "a config"
            )
        if self.config and self.version < 1:
            raise RolloutError(
                f"a config ramp needs the config version to roll out (>= 1), got "
                f"{self.version}"
            )

    def _check_metrics(self) -> None:
        names = [m.name for m in self.metrics]
        for m in self.metrics:
            bad = None
            if not m.name.strip() or not m.query.strip():
                bad = "needs a name and a query"
            elif m.max is None and m.min is None:
                bad = "needs a bound (max or min)"
            elif names.count(m.name) > 1:
                bad = "is named twice"
            elif m.min is not None and m.max is not None and m.min > m.max:
                bad = f"has min {m.min:g} above max {m.max:g}"
            if bad is not None:
                raise RolloutError(f"metric check {m.name!r} {bad}")
        url = self.prometheus
        if self.metrics and not url.startswith(("http://", "https://")):
            raise RolloutError(
                f"metric checks need the Prometheus server's URL, got {url!r} "
                "(e.g. --prometheus http://127.0.0.1:9090)"
            )

    @property
    def subject(self) -> tuple[str, int, int]:
        """(health subject, candidate version, baseline version or -1).

        ``-1`` stands for the rollout's recorded baseline version.
        """
        if self.flag:
            return flag_subject(self.workflow, self.flag), 1, 0
        if self.config:
            return config_subject(self.workflow), 1, 0
        return self.workflow, self.version, -1

    @property
    def thresholds(self) -> Thresholds:
        """The checks of every window."""
        return Thresholds(self.min_sample, self.max_error_rate, self.max_latency_ratio)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> RolloutPlan:
        """A plan from a TOML or JSON file (keys as the fields; durations as text).

        Raises:
            RolloutError: the file cannot be read or a key is unknown.
        """
        p = Path(path)
        try:
            text = p.read_text()
            data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise RolloutError(f"cannot read the plan file {str(p)!r}: {exc}") from None
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutPlan:
        """A plan from plain data (steps as a list or ``5,25,100``).

        Raises:
            RolloutError: an unknown key or a value of the wrong kind.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RolloutError(
                f"unknown plan key(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}"
            )
        d = dict(data)
        try:
            if isinstance(d.get("steps"), str):
                d["steps"] = [float(x) for x in d["steps"].split(",")]
            if "steps" in d:
                d["steps"] = tuple(float(x) for x in d["steps"])
            for k in ("interval", "deadline"):
                if k in d:
                    d[k] = parse_duration(d[k])
            for k in ("version", "min_sample", "failure_limit"):
                if k in d:
                    d[k] = int(d[k])
            for k in ("max_error_rate", "max_latency_ratio"):
                if k in d:
                    d[k] = float(d[k])
            if "metrics" in d:
                d["metrics"] = tuple(
                    msgspec.convert(m, MetricCheck, strict=False) for m in d["metrics"]
                )
        except msgspec.ValidationError as exc:
            raise RolloutError(f"plan metric check does not fit: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise RolloutError(f"plan value does not fit: {exc}") from None
        return cls(**d)


@dataclass
class Rollout:
    """One rollout as folded from its events."""

    number: int
    """Its number (the position of its start in the rollouts stream)."""
    plan: RolloutPlan
    """The plan."""
    baseline: int
    """The stable version it is compared with."""
    started_at: float
    """When it started (epoch seconds)."""
    by: str
    """Who started it."""
    status: RolloutStatus = "running"
    """running, paused, completed, rolled_back or aborted."""
    progress: Progress = field(default_factory=Progress)
    """Current step and failures."""
    window_from: float = 0.0
    """Start of the next window to judge (epoch seconds); an inconclusive
    window does not move it, so samples add up until there are enough."""
    judged_to: float = 0.0
    """End of the last window judged (the next is due ``interval`` later)."""
    decisions: list[RolloutDecided] = field(default_factory=list)
    """Every decision, oldest first."""

    @property
    def share(self) -> float:
        """The candidate's share now, in percent (0 once rolled back)."""
        if self.status in ("rolled_back", "aborted"):
            return 0.0
        return self.plan.steps[self.progress.step]

    @property
    def active(self) -> bool:
        """True while running or paused."""
        return self.status in ("running", "paused")


@dataclass
class RolloutView:
    """Every rollout of a store, folded from ``nonstop.rollouts``."""

    rollouts: dict[int, Rollout] = field(default_factory=dict)
    """By number."""
    position: int = 0
    """The stream position folded up to."""

    def active(self, workflow: str) -> Rollout | None:
        """The running or paused rollout of ``workflow``, if any."""
        for r in self.rollouts.values():
            if r.plan.workflow == workflow and r.active:
                return r
        return None

    def latest(self, workflow: str) -> Rollout | None:
        """The newest rollout of ``workflow``, if any."""
        found = [r for r in self.rollouts.values() if r.plan.workflow == workflow]
        return found[-1] if found else None

    def apply(self, position: int, e: Any) -> None:
        """Fold one event of the rollouts stream."""
        self.position = position
        if isinstance(e, RolloutStarted):
            plan = RolloutPlan(
                e.workflow,
                e.version,
                tuple(e.steps),
                e.interval,
                e.min_sample,
                e.max_error_rate,
                e.max_latency_ratio,
                e.failure_limit,
                e.deadline,
                e.flag,
                e.prometheus,
                tuple(e.metrics),
                e.config,
            )
            self.rollouts[e.rollout] = Rollout(
                e.rollout,
                plan,
                e.baseline,
                e.at,
                e.by,
                window_from=e.at,
                judged_to=e.at,
            )
            return
        r = self.rollouts.get(getattr(e, "rollout", -1))
        if r is None:
            return
        if isinstance(e, RolloutDecided):
            r.decisions.append(e)
            r.progress = Progress(e.step, e.failures)
            r.judged_to = max(r.judged_to, e.window_end)
            if e.verdict != "inconclusive":
                r.window_from = max(r.window_from, e.window_end)
            if e.action == "rollback":
                r.status = "rolled_back"
            elif e.action == "complete":
                r.status = "completed"
        elif isinstance(e, RolloutPaused) and r.status == "running":
            r.status = "paused"
        elif isinstance(e, RolloutResumed) and r.status == "paused":
            r.status = "running"
            r.window_from = max(r.window_from, e.at)
            r.judged_to = max(r.judged_to, e.at)
        elif isinstance(e, RolloutAborted) and r.active:
            r.status = "aborted"
