"""The rollout controller: judge each window, record the decision, route.

:class:`Rollouts` is the API over one store (start, pause, resume, abort, and
:meth:`Rollouts.tick`, one pass of judging). :class:`RolloutController` runs
ticks in a thread while it holds the store's controller lease, so exactly one
process on a store acts.

A decision is appended to ``nonstop.rollouts`` at the position the
controller read (a fence: a controller that lost the lease and acts late
conflicts and gives up) and only then applied to routing through
:class:`~engine.deploy.Deployments` (``promote`` / ``rollback``, with the
numbers in the reason, so they show in ``nonstop audit``). Routing is
reconciled with the recorded decisions on every tick, so a controller that
dies between the two is finished by the next one.

It is longer than most modules: the operator commands, the judging pass and
the reconciling of routing (versions, flags, configs) all act on one folded
view of ``nonstop.rollouts`` under one fold lock, and write at the position
that view read; split, that fence would span modules.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.core.codec import EventCodec
from engine.core.errors import ConcurrencyConflict, NonstopError, RolloutError
from engine.core.events import Metadata, now_micros
from engine.deploy import Deployments, default_user, percent_to_bp
from engine.deploy.configadmin import canary_config, promote_config, rollback_config
from engine.health.analysis import analyze, decide, with_checks
from engine.health.counters import DEFAULT_BUCKET_SECONDS
from engine.health.events import (
    ROLLOUT_STREAM,
    RolloutAborted,
    RolloutDecided,
    RolloutPaused,
    RolloutResumed,
    RolloutStarted,
)
from engine.health.lease import Lease
from engine.health.promql import PromQL, metric_checks, render
from engine.health.rollout import Rollout, RolloutPlan, RolloutView
from engine.health.window import read_window
from engine.store import EventStore, NewRecord

__all__ = ["RolloutController", "Rollouts"]

log = logging.getLogger("nonstop.rollout")
_ATTEMPTS = 10


class Rollouts:
    """Rollout plans on one store.

    Args:
        store: The event store (left open by :meth:`close`).
        clock: Seconds since the epoch.
        bucket_seconds: Width of the health buckets engines flush.
        settle: Seconds a window end trails the clock, so that every engine
            has flushed its counts (at least the engines' flush interval).
        name: Names this process in decisions (host:pid).
    """

    def __init__(
        self,
        store: EventStore,
        *,
        clock: Callable[[], float] = time.time,
        bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
        settle: float = 2.0,
        name: str | None = None,
        codec: EventCodec | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.bucket_seconds = bucket_seconds
        self.settle = settle
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.codec = codec if codec is not None else EventCodec()
        self.deployments = Deployments(store, poll_interval=0.0, codec=self.codec)
        self._view = RolloutView()
        # A controller thread and an operator (or a test) may share this object:
        # one fold at a time, so no event is applied twice.
        self._fold_lock = threading.Lock()

    # ------------------------------------------------------------ reading

    def refresh(self) -> RolloutView:
        """Fold the rollout events written since the last refresh (thread-safe)."""
        with self._fold_lock:
            view = self._view
            for r in self.store.iter_stream(ROLLOUT_STREAM, after=view.position):
                for e in self.codec.decode(
                    ROLLOUT_STREAM, r.position, r.global_position, r.type, r.data
                ):
                    view.apply(r.position, e.event)
            return view

    def status(self, workflow: str) -> Rollout:
        """The newest rollout of ``workflow``.

        Raises:
            RolloutError: it never had one.
        """
        found = self.refresh().latest(workflow)
        if found is None:
            raise RolloutError(
                f"{workflow} has no rollout; start one with nonstop rollout start "
                f"{workflow} VERSION"
            )
        return found

    # ------------------------------------------------------------ operator

    def start(
        self,
        plan: RolloutPlan,
        *,
        source: str | None = None,
        by: str | None = None,
        reason: str = "",
    ) -> Rollout:
        """Route the plan's first share to the candidate and record the plan.

        The candidate is deployed from ``source`` when it is not deployed yet.

        Raises:
            RolloutError: the workflow has a rollout in progress, or no stable
                version to compare with.
            DeployError: the deployment or routing change was refused.
        """
        user = by or default_user()
        wf, version = plan.workflow, plan.version
        view = self.refresh()
        if (busy := view.active(wf)) is not None:
            raise RolloutError(
                f"{wf} has rollout #{busy.number} of v{busy.plan.version} in "
                f"progress ({busy.status}); abort it first (nonstop rollout abort {wf})"
            )
        wd = self.deployments.refresh().workflow(wf)
        routing = wd.effective()
        if plan.flag:
            known = self.deployments.view.flags.get(plan.flag)
            if known is None or known.kind != "percentage":
                raise RolloutError(
                    f"flag {plan.flag!r} is not a percentage flag; define it with "
                    f"nonstop flags set {plan.flag} --percent 0 first"
                )
        elif plan.config:
            routing = None
        elif routing is None or routing.stable == version:
            raise RolloutError(
                f"{wf} has no stable version other than v{version} to compare "
                f"with; deploy a baseline first (nonstop deploy {wf} V --source ...)"
            )
        baseline = 0 if plan.flag or routing is None else routing.stable
        if plan.config:
            baseline = self._config_baseline(wf, version)
        self._try_queries(plan, baseline)
        now = self.clock()
        started = RolloutStarted(
            view.position + 1,
            wf,
            version,
            baseline,
            list(plan.steps),
            plan.interval,
            plan.min_sample,
            plan.max_error_rate,
            plan.max_latency_ratio,
            plan.failure_limit,
            plan.deadline,
            now,
            user,
            reason,
            plan.flag,
            plan.prometheus,
            list(plan.metrics),
            plan.config,
        )
        self._append(started, view.position)
        why = f"rollout #{started.rollout}: first step {plan.steps[0]:g} %"
        if plan.config:
            canary_config(
                self.deployments, wf, version, plan.steps[0], by=user, reason=why
            )
        elif plan.flag:
            self.deployments.set_flag(
                plan.flag, "percentage", percent=plan.steps[0], by=user, reason=why
            )
        elif version in wd.deployments and wd.deployments[version].state != "failed":
            self.deployments.promote(
                wf, version, percent=plan.steps[0], by=user, reason=why
            )
        else:
            if source is None:
                raise RolloutError(
                    f"{wf}@{version} is not deployed; pass --source MOD:ATTR"
                )
            self.deployments.deploy(
                wf, version, source, canary=plan.steps[0], by=user, reason=why
            )
        return self.status(wf)

    def _config_baseline(self, workflow: str, version: int) -> int:
        """The current config version a ramp of config ``version`` is judged against.

        Raises:
            RolloutError: ``version`` is not stored, is current already, or
                another canary is in the way.
        """
        wc = self.deployments.refresh().configs.get(workflow)
        if wc is None or version not in wc.versions:
            raise RolloutError(
                f"{workflow} has no config v{version}; store it first with nonstop "
                f"config set {workflow} --file F --canary 0"
            )
        if wc.current == version:
            raise RolloutError(f"config v{version} of {workflow} is current already")
        if wc.canary is not None and wc.canary != version:
            raise RolloutError(
                f"{workflow} has config v{wc.canary} as a canary; promote or roll it "
                "back first (nonstop config promote|rollback)"
            )
        return wc.current

    def pause(self, workflow: str, *, by: str | None = None, reason: str = "") -> None:
        """Stop judging windows of ``workflow``'s rollout (routing stays).

        Raises:
            RolloutError: no running rollout.
        """
        r = self._active(workflow, "running")
        self._append(RolloutPaused(r.number, by or default_user(), reason))

    def resume(self, workflow: str, *, by: str | None = None, reason: str = "") -> None:
        """Judge windows again, from now on.

        Raises:
            RolloutError: no paused rollout.
        """
        r = self._active(workflow, "paused")
        event = RolloutResumed(r.number, self.clock(), by or default_user(), reason)
        self._append(event)

    def abort(self, workflow: str, *, by: str | None = None, reason: str = "") -> None:
        """Roll the candidate back now and end the rollout.

        Raises:
            RolloutError: no rollout in progress.
        """
        r = self._active(workflow, None)
        user = by or default_user()
        self._append(RolloutAborted(r.number, user, reason))
        self._reconcile(self.refresh().rollouts[r.number])

    def _active(self, workflow: str, status: str | None) -> Rollout:
        r = self.refresh().active(workflow)
        if r is None or (status is not None and r.status != status):
            what = "in progress" if status is None else status
            raise RolloutError(
                f"{workflow} has no rollout {what}; see nonstop rollout status "
                f"{workflow}"
            )
        return r

    # ---------------------------------------------------------- judging

    def tick(
        self, *, may_act: Callable[[], bool] = lambda: True
    ) -> list[RolloutDecided]:
        """Judge every running rollout whose window is due, and act.

        Args:
            may_act: Asked before each write; False stops (the lease is gone).

        Returns:
            The decisions recorded by this tick.
        """
        out: list[RolloutDecided] = []
        view = self.refresh()
        for r in list(view.rollouts.values()):
            if not may_act():
                break
            if r.active or self._unapplied(r, view):
                self._reconcile(r)
            if r.status != "running":
                continue
            decided = self._judge(r, view.position)
            if decided is not None:
                out.append(decided)
                view = self.refresh()
                self._reconcile(view.rollouts[r.number])
        return out

    def _unapplied(self, r: Rollout, view: RolloutView) -> bool:
        """True for an ended rollout whose last decision routing does not show.

        Only the newest rollout of a workflow counts, and only when no routing
        change of the workflow came after its decision (a controller died
        between recording and routing).
        """
        if not r.decisions or view.latest(r.plan.workflow) is not r:
            return False
        wf = r.plan.workflow
        if r.plan.flag:
            wf = f"flag:{r.plan.flag}"
        elif r.plan.config:
            wf = f"config:{wf}"
        changed = [a.at for a in self.deployments.view.audit if a.subject == wf]
        return not changed or changed[-1] < r.decisions[-1].window_end * 1e6

    def _try_queries(self, plan: RolloutPlan, baseline: int) -> None:
        """Run each metric query once: a plan Prometheus refuses is not started.

        Raises:
            RolloutError: the server does not answer or refuses a query.
        """
        if not plan.metrics:
            return
        server = PromQL(plan.prometheus)
        values = _query_values(plan, plan.subject[1], baseline)
        for m in plan.metrics:
            try:
                server.value(render(m.query, **values))
            except RolloutError as exc:
                raise RolloutError(
                    f"metric check {m.name!r} cannot be evaluated, so the plan was "
                    f"not started: {exc}"
                ) from None

    def _window_end(self) -> float:
        b = self.bucket_seconds
        return float(int((self.clock() - self.settle) // b * b))

    def _judge(self, r: Rollout, position: int) -> RolloutDecided | None:
        plan = r.plan
        end = self._window_end()
        overdue = self.clock() > r.started_at + plan.deadline
        if end - r.judged_to < plan.interval and not overdue:
            return None
        start = r.window_from
        args: dict[str, Any] = {"bucket_seconds": self.bucket_seconds}
        subject, candidate, baseline = plan.subject
        if baseline < 0:
            baseline = r.baseline
        cand = read_window(self.store, subject, candidate, start, end, **args)
        base = read_window(self.store, subject, baseline, start, end, **args)
        analysis = analyze(cand, base, plan.thresholds)
        if plan.metrics:
            values = _query_values(plan, candidate, baseline)
            extra = metric_checks(plan.metrics, PromQL(plan.prometheus), values)
            analysis = with_checks(analysis, extra)
        d = decide(
            analysis,
            r.progress,
            steps=plan.steps,
            failure_limit=plan.failure_limit,
            overdue=overdue,
        )
        share = 0.0 if d.action == "rollback" else plan.steps[d.progress.step]
        event = RolloutDecided(
            r.number,
            plan.workflow,
            d.action,
            analysis.verdict,
            d.progress.step,
            share,
            d.progress.failures,
            analysis.samples,
            analysis.baseline_samples,
            analysis.error_rate,
            analysis.baseline_error_rate,
            analysis.latency_ratio,
            start,
            max(end, start),
            d.reason,
            self.name,
        )
        try:
            self._append(event, position)
        except ConcurrencyConflict:
            log.info("rollout #%s changed under this controller; next tick", r.number)
            return None
        log.info(
            "rollout #%s %s@%s: %s (%s)",
            r.number,
            plan.workflow,
            plan.version,
            d.action,
            d.reason,
        )
        return event

    def _reconcile(self, r: Rollout) -> None:
        """Make routing match the rollout's recorded state (idempotent)."""
        wf, version = r.plan.workflow, r.plan.version
        wd = self.deployments.refresh().workflow(wf)
        routing = wd.routing
        why = self._why(r)
        if r.plan.flag:
            self._reconcile_flag(r, why)
            return
        if r.plan.config:
            self._reconcile_config(r, why)
            return
        if routing is None:
            return
        if r.status in ("rolled_back", "aborted"):
            if routing.canary == version:
                self.deployments.rollback(wf, by=self.name, reason=why)
            elif routing.stable == version and routing.canary is None:
                log.warning("rollout #%s: v%s is already stable", r.number, version)
            return
        if r.status == "completed":
            if routing.stable != version:
                self.deployments.promote(wf, version, by=self.name, reason=why)
            return
        want = percent_to_bp(r.share)
        if routing.canary == version and routing.canary_bp < want:
            self.deployments.promote(
                wf, version, percent=r.share, by=self.name, reason=why
            )

    def _reconcile_flag(self, r: Rollout, why: str) -> None:
        name = r.plan.flag
        flag = self.deployments.view.flags.get(name)
        if flag is None:
            return
        if r.status in ("rolled_back", "aborted"):
            if not flag.killed:
                self.deployments.kill_flag(name, by=self.name, reason=why)
            return
        if not flag.killed and flag.percent_bp < percent_to_bp(r.share):
            self.deployments.set_flag(
                name, "percentage", percent=r.share, by=self.name, reason=why
            )

    def _reconcile_config(self, r: Rollout, why: str) -> None:
        wf, version = r.plan.workflow, r.plan.version
        wc = self.deployments.view.configs.get(wf)
        if wc is None:
            return
        if r.status in ("rolled_back", "aborted"):
            if wc.canary == version:
                rollback_config(self.deployments, wf, by=self.name, reason=why)
            return
        if r.status == "completed":
            if wc.canary == version:
                promote_config(self.deployments, wf, by=self.name, reason=why)
            return
        if wc.canary == version and wc.canary_bp < percent_to_bp(r.share):
            canary_config(
                self.deployments, wf, version, r.share, by=self.name, reason=why
            )

    @staticmethod
    def _why(r: Rollout) -> str:
        """The reason routing changes carry: the last decision and its numbers."""
        last = r.decisions[-1] if r.decisions else None
        why = f"rollout #{r.number}"
        if r.status == "aborted":
            return f"{why}: aborted"
        if last is not None:
            why += (
                f": {last.action} ({last.verdict}; samples {last.samples}, error "
                f"rate {last.error_rate:.2%} vs {last.baseline_error_rate:.2%}"
                + (
                    f", latency ratio {last.latency_ratio:.2f}"
                    if last.latency_ratio is not None
                    else ""
                )
                + f"): {last.reason}"
            )
        return why

    # ---------------------------------------------------------- writing

    def _append(self, event: Any, after: int | None = None) -> None:
        """Append ``event`` to the rollouts stream after position ``after``.

        With ``after`` None (an operator's command), a conflict re-reads and
        retries; with a position, a conflict is raised (the controller's fence).
        """
        for _ in range(_ATTEMPTS):
            pos = self.refresh().position if after is None else after
            name, data = self.codec.encode(
                event, Metadata(ROLLOUT_STREAM), recorded_at=now_micros()
            )
            try:
                self.store.append([NewRecord(ROLLOUT_STREAM, pos + 1, name, data)])
            except ConcurrencyConflict:
                if after is not None:
                    raise
                continue
            self.refresh()
            return
        raise RolloutError(
            f"the rollouts stream kept changing under this command ({_ATTEMPTS} "
            "attempts); retry"
        )


def _query_values(
    plan: RolloutPlan, candidate: int, baseline: int
) -> dict[str, object]:
    """What ``$workflow``, ``$version``, ``$baseline``, ``$interval`` stand for."""
    return {
        "workflow": plan.workflow,
        "version": candidate,
        "baseline": baseline,
        "interval": f"{max(1, round(plan.interval))}s",
    }


class RolloutController:
    """Runs :meth:`Rollouts.tick` while holding the store's controller lease.

    Args:
        rollouts: The rollouts of the store.
        ttl: Seconds the lease lasts; a controller that dies is replaced
            within ``ttl + poll``.
        poll: Seconds between two passes (lease renewal and judging).
    """

    def __init__(
        self, rollouts: Rollouts, *, ttl: float = 10.0, poll: float | None = None
    ):
        if ttl <= 0:
            raise RolloutError(f"lease ttl {ttl!r} must be > 0 seconds")
        self.rollouts = rollouts
        self.poll = poll if poll is not None else ttl / 4
        self.lease = Lease(rollouts.store, rollouts.name, ttl=ttl, clock=rollouts.clock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        """Passes made while holding the lease."""

    def step(self) -> list[RolloutDecided]:
        """One pass: take or renew the lease, and judge if it is held."""
        try:
            if not self.lease.acquire():
                return []
            margin = self.lease.ttl / 4
            self.ticks += 1
            return self.rollouts.tick(may_act=lambda: self.lease.held(margin))
        except NonstopError as exc:
            log.warning("rollout controller pass failed: %s", exc)
            return []

    def run(self) -> None:
        """Pass every ``poll`` seconds until :meth:`stop` (blocking)."""
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.poll)
        self.lease.release()

    def start(self) -> None:
        """Run in a daemon thread."""
        self._thread = threading.Thread(
            target=self.run, name="nonstop-rollout", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, release the lease and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
