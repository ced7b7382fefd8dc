"""Operator changes of versions: deploy, redeploy, promote, roll back, retire.

:class:`RegistryOperations` holds them for
:class:`~engine.deploy.registry.Deployments`; each goes through the
serialised write of :class:`~engine.deploy.writes.RegistryWrites`.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.core.errors import (
    CanaryActive,
    DeployError,
    RetireRefused,
)
from engine.deploy.code import version_fingerprint
from engine.deploy.events import (
    Deployed,
    Redeployed,
    Retired,
    Routed,
    deploy_stream,
)
from engine.deploy.routing import Routing, percent_to_bp
from engine.deploy.view import DeployView
from engine.deploy.writes import RegistryWrites, default_user, load_source
from engine.stats import StatsSource
from engine.store import EventStore

__all__ = ["RegistryOperations", "pending_outbox"]

log = logging.getLogger("nonstop.deploy")


class RegistryOperations(RegistryWrites):
    """Deploy, promote, roll back and retire versions (a base of ``Deployments``)."""

    # ----------------------------------------------------------- writing

    def deploy(
        self,
        workflow: str,
        version: int,
        source: str,
        *,
        canary: float | None = None,
        by: str | None = None,
        reason: str = "",
        check: bool = True,
        replace: bool = False,
        fingerprint: str | None = None,
        verified: str = "",
    ) -> Routing:
        """Deploy ``workflow@version`` from ``source`` and route new instances to it.

        Without ``canary`` it takes every new instance; with it, that share (in
        percent) beside the current stable version. The first deployment of a
        workflow takes every new instance.

        Args:
            workflow: Workflow name.
            version: The version deployed.
            source: ``package.module:attr`` naming it.
            canary: Its share of new instances in percent (all when None).
            by: Who deploys (default: the login name).
            reason: Why (kept in the audit trail).
            check: Import ``source`` here first.
            replace: Let a canary take the place of another active canary
                (which then drains; the change names it in the audit trail).
            fingerprint: Its code fingerprint (computed from ``source`` when
                ``check``; empty otherwise).
            verified: What the replay check said, when the version already
                had instances (see :func:`engine.deploy.guard.deploy_guarded`).

        Returns:
            The routing read back from the store after the write.

        Raises:
            DeploySourceError: ``check`` and ``source`` does not load.
            CanaryActive: another canary is active and ``replace`` is False.
            DeployConflict: another change of the workflow's routing won the
                race; nothing was written.
            DeployError: the version is deployed already (and not failed), or a
                canary is asked for a workflow with no stable version.
        """
        if check:
            wf = load_source(source, workflow, version)
            if fingerprint is None:
                fingerprint = version_fingerprint(wf)
        fp = fingerprint or ""
        bp = percent_to_bp(canary) if canary is not None else None
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            wd = view.workflow(workflow)
            known = wd.deployments.get(version)
            if known is not None and known.state != "failed":
                raise DeployError(
                    f"{workflow}@{version} is already deployed ({known.state}); "
                    "versions are immutable: deploy the change as a new version, "
                    "or promote this one"
                )
            current = wd.effective()
            if bp is None or bp == 10_000:
                routing = Routing(version)
            elif current is None or current.stable == version:
                raise DeployError(
                    f"{workflow} has no stable version to run a canary beside; "
                    f"deploy {workflow}@{version} without --canary first"
                )
            else:
                routing = Routing(current.stable, version, bp)
            replaced = _replaced_canary(workflow, current, routing, replace)
            return [
                Deployed(workflow, version, source, user, reason, fp, verified),
                _routed(workflow, "deploy", routing, user, reason, replaced),
            ]

        self._change(deploy_stream(workflow), make)
        return self._routing(workflow)

    def redeploy(
        self,
        workflow: str,
        version: int,
        source: str,
        fingerprint: str,
        *,
        check: str,
        by: str | None = None,
        reason: str = "",
    ) -> None:
        """Record new code for deployed ``workflow@version`` (routing unchanged).

        The caller proves the change safe first (``check``: ``verified``) or
        says why it did not (``forced``, ``skipped``, with ``reason``); see
        :func:`engine.deploy.guard.deploy_guarded`.

        Raises:
            DeployError: the version is not deployed, or records this code.
            DeployConflict: another change of the workflow won the race.
        """
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            known = view.workflow(workflow).deployments.get(version)
            if known is None or known.state == "failed":
                raise DeployError(
                    f"{workflow}@{version} is not deployed; deploy it instead"
                )
            if known.fingerprint == fingerprint:
                raise DeployError(
                    f"{workflow}@{version} is already deployed with this code"
                )
            return [
                Redeployed(
                    workflow,
                    version,
                    source,
                    fingerprint,
                    known.fingerprint,
                    check,
                    user,
                    reason,
                )
            ]

        self._change(deploy_stream(workflow), make)

    def promote(
        self,
        workflow: str,
        version: int,
        *,
        percent: float = 100.0,
        by: str | None = None,
        reason: str = "",
        replace: bool = False,
    ) -> Routing:
        """Give ``version`` ``percent`` of new instances (all by default).

        Returns:
            The routing read back from the store after the write.

        Raises:
            CanaryActive: ``version`` would become a canary beside another
                active canary and ``replace`` is False.
            DeployConflict: another change of the workflow's routing won the
                race; nothing was written.
            DeployError: the version is not deployed, failed or retired.
        """
        bp = percent_to_bp(percent)
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            wd = view.workflow(workflow)
            d = wd.deployments.get(version)
            if d is None or not wd.usable(version):
                state = "not deployed" if d is None else d.state
                raise DeployError(
                    f"cannot promote {workflow}@{version}: it is {state}; "
                    f"deploy it first (nonstop deploy {workflow} {version} "
                    "--source MOD:ATTR)"
                )
            current = wd.effective()
            if bp == 10_000 or current is None or current.stable == version:
                routing = Routing(version)
            else:
                routing = Routing(current.stable, version, bp)
            replaced = _replaced_canary(workflow, current, routing, replace)
            return [_routed(workflow, "promote", routing, user, reason, replaced)]

        self._change(deploy_stream(workflow), make)
        return self._routing(workflow)

    def rollback(
        self, workflow: str, *, by: str | None = None, reason: str = ""
    ) -> Routing:
        """Send new instances back to the previous version (drop a canary first).

        Running instances are not touched: they stay on their pinned version.

        Returns:
            The routing read back from the store after the write.

        Raises:
            DeployConflict: another change of the workflow's routing won the
                race; nothing was written.
            DeployError: there is nothing to roll back to.
        """
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            target = view.workflow(workflow).rollback_target()
            if target is None:
                raise DeployError(
                    f"{workflow} has no previous version to roll back to; "
                    "deploy or promote the version you want instead"
                )
            return [_routed(workflow, "rollback", target, user, reason)]

        self._change(deploy_stream(workflow), make)
        return self._routing(workflow)

    def retire(
        self,
        workflow: str,
        version: int,
        stats: StatsSource,
        *,
        by: str | None = None,
        reason: str = "",
    ) -> None:
        """Retire a drained version.

        Raises:
            RetireRefused: the version still gets new instances, instances
                of it still run, or effects or timers it asked for are pending
                or failed (the count is in the message).
            DeployError: the version is not deployed or already retired.
        """
        user = by or default_user()
        running = sum(
            s.running for s in stats.version_stats(workflow) if s.version == version
        )
        outbox = pending_outbox(self.store, f"{workflow}@{version}")

        def make(view: DeployView) -> list[Any]:
            wd = view.workflow(workflow)
            d = wd.deployments.get(version)
            if d is None or d.state == "retired":
                state = "not deployed" if d is None else "already retired"
                raise DeployError(f"cannot retire {workflow}@{version}: it is {state}")
            r = wd.effective()
            if r is not None and r.share_bp(version):
                raise RetireRefused(
                    f"cannot retire {workflow}@{version}: it still gets "
                    f"{r.share_bp(version) / 100:g} % of new instances; promote "
                    "another version or roll back first"
                )
            if running:
                raise RetireRefused(
                    f"cannot retire {workflow}@{version}: {running} instance(s) "
                    "still run on it; wait until they finish or migrate them "
                    f"(nonstop migrate {workflow} --from {version} --to V)"
                )
            if outbox:
                raise RetireRefused(
                    f"cannot retire {workflow}@{version}: {outbox} still wait in "
                    "its outbox and are delivered to its logic; let the runner "
                    "finish them, or retry or cancel the failed ones "
                    "(nonstop effects list --failed)"
                )
            return [Retired(workflow, version, user, reason)]

        self._change(deploy_stream(workflow), make)


def _replaced_canary(
    workflow: str, current: Routing | None, new: Routing, replace: bool
) -> int | None:
    """The active canary ``new`` takes the place of, if any.

    Raises:
        CanaryActive: there is one and ``replace`` is False.
    """
    if current is None or current.canary is None or new.canary is None:
        return None
    if current.canary == new.canary:
        return None
    if not replace:
        raise CanaryActive(
            f"{workflow} already has a canary: v{current.canary} at "
            f"{current.canary_bp / 100:g} % ({current.describe()}); promote or "
            f"roll it back first, or pass --replace to put v{new.canary} in its "
            f"place (v{current.canary} then drains)"
        )
    return current.canary


def _routed(
    workflow: str,
    action: str,
    routing: Routing,
    by: str,
    reason: str,
    replaced: int | None = None,
) -> Routed:
    bp = routing.canary_bp if routing.canary is not None else 0
    return Routed(
        workflow, action, routing.stable, routing.canary, bp, by, reason, replaced
    )


def pending_outbox(store: EventStore, ref: str) -> str:
    """What ``ref`` (``name@version``) still has pending or failed in the outbox.

    Returns:
        E.g. ``"2 effect(s), 1 timer(s)"``; empty when there is nothing.
    """
    try:
        pending = store.outbox().pending()
    except NotImplementedError:
        return ""
    counts = {"effect": 0, "timer": 0}
    for p in pending:
        if p.workflow == ref:
            counts[p.kind] += p.count
    return ", ".join(f"{n} {kind}(s)" for kind, n in counts.items() if n)
