"""Deploy with proof: verify a version's code against its instances first.

A version already deployed may only take new code (a "hotfix") when replaying
its instances under that code reproduces every recorded state digest
(``verified``), or when an operator overrides the check with a reason
(``forced``, ``skipped``); the registry records which. A first deployment of
a version that already has instances (started from the app's own registry)
is verified the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from engine.core.errors import DeployError, VerifyError, VerifyFailed
from engine.core.workflow import WorkflowRegistry
from engine.deploy.code import version_fingerprint
from engine.deploy.registry import Deployments, load_source
from engine.deploy.verify import Selection, VerifyReport, describe, verify_version
from engine.store import EventStore

__all__ = ["GuardOutcome", "deploy_guarded"]

Check = Literal["verified", "forced", "skipped", "no instances"]


@dataclass(frozen=True)
class GuardOutcome:
    """What :func:`deploy_guarded` did."""

    action: Literal["deployed", "redeployed"]
    """A new deployment, or new code for a deployed version."""
    check: Check
    """What let it through."""
    fingerprint: str
    """The recorded fingerprint of the code."""
    report: VerifyReport | None
    """The verification, when one ran."""


def deploy_guarded(
    deployments: Deployments,
    store: EventStore | str,
    workflow: str,
    version: int,
    source: str,
    *,
    registry: WorkflowRegistry | None = None,
    canary: float | None = None,
    by: str | None = None,
    reason: str = "",
    replace: bool = False,
    force: bool = False,
    skip_verify: bool = False,
    jobs: int = 1,
    instances: Selection = "all",
    progress: Callable[[int, int], None] | None = None,
) -> GuardOutcome:
    """Deploy ``workflow@version`` from ``source``, verifying it first if needed.

    Args:
        deployments: The registry.
        store: The store (a URL lets ``jobs`` > 1 use worker processes).
        workflow: Workflow name.
        version: The version.
        source: ``MOD:ATTR`` of the (new) code.
        registry: The code that wrote the stored histories (for migrations
            between versions and for the diffs).
        canary: A canary share in percent (a first deployment only).
        by: Who.
        reason: Why; required with ``force`` or ``skip_verify``.
        replace: See :meth:`Deployments.deploy`.
        force: Record changed code even if verification fails (not run).
        skip_verify: Do not verify (recorded as ``skipped``).
        jobs: Verification worker processes.
        instances: Which instances the verification replays (every one by
            default; a number samples that many).
        progress: Verification progress, ``progress(done, total)``.

    Raises:
        VerifyFailed: an instance replays differently; nothing was written.
        VerifyError: ``force``/``skip_verify`` without a reason.
        DeployError: the version is deployed with this very code.
    """
    if (force or skip_verify) and not reason.strip():
        flag = "--force" if force else "--skip-verify"
        raise VerifyError(
            f"{flag} needs --reason WHY: overriding the replay check is audited"
        )
    candidate = load_source(source, workflow, version)
    fp = version_fingerprint(candidate)
    known = deployments.refresh().workflow(workflow).deployments.get(version)
    redeploy = known is not None and known.state != "failed"
    if redeploy and known is not None and known.fingerprint == fp:
        raise DeployError(
            f"{workflow}@{version} is already deployed with this code "
            f"(fingerprint {fp[:8]}); versions are immutable: deploy a change as "
            "a new version"
        )
    if redeploy and canary is not None:
        raise DeployError(
            f"{workflow}@{version} is deployed: new code for it keeps its routing; "
            "drop --canary (or deploy the change as a new version with --canary)"
        )
    check: Check = "forced" if force else "skipped"
    report: VerifyReport | None = None
    if not (force or skip_verify):
        report = verify_version(
            store,
            candidate,
            registry,
            instances=instances,
            jobs=jobs,
            progress=progress,
        )
        if not report.ok:
            raise VerifyFailed(candidate.ref, [describe(d) for d in report.divergences])
        check = "verified" if report.instances else "no instances"
    if redeploy:
        deployments.redeploy(
            workflow, version, source, fp, check=check, by=by, reason=reason
        )
        return GuardOutcome("redeployed", check, fp, report)
    deployments.deploy(
        workflow,
        version,
        source,
        canary=canary,
        by=by,
        reason=reason,
        check=False,
        replace=replace,
        fingerprint=fp,
        verified="" if check == "no instances" else check,
    )
    return GuardOutcome("deployed", check, fp, report)
