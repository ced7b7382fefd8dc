"""The events of the deployments registry and of feature flags.

They live in the same store as the instances, in reserved streams:
``nonstop.deploy:WORKFLOW`` per workflow and ``nonstop.flags`` for all flags.
``nonstop.registry`` lists the workflow streams (one :class:`RegistryStream`
each, written with a workflow's first change), so that a cold read of the
registry reads its streams by id and never scans the global order.
Each carries who made the change and why (the audit trail); when is the
envelope's ``recorded_at``.
"""

from __future__ import annotations

import msgspec

from engine.core.events import event

__all__ = [
    "DEPLOY_STREAM_PREFIX",
    "FLAGS_STREAM",
    "INDEX_STREAM",
    "REGISTRY_TYPES",
    "CodeMismatch",
    "Deployed",
    "DeploymentFailed",
    "FlagChanged",
    "InstancesMigrated",
    "Redeployed",
    "RegistryStream",
    "Retired",
    "Routed",
    "deploy_stream",
]

DEPLOY_STREAM_PREFIX = "nonstop.deploy:"
"""Stream id prefix of a workflow's deployments."""
FLAGS_STREAM = "nonstop.flags"
"""Stream id of every flag change."""
INDEX_STREAM = "nonstop.registry"
"""Stream id of the index of the registry's workflow streams."""


def deploy_stream(workflow: str) -> str:
    """The stream holding ``workflow``'s deployments."""
    return f"{DEPLOY_STREAM_PREFIX}{workflow}"


@event("nonstop.Deployed")
class Deployed(msgspec.Struct, frozen=True):
    """``workflow@version`` was deployed from ``source``."""

    workflow: str
    version: int
    source: str
    """``package.module:attr`` naming the Workflow."""
    by: str
    reason: str = ""
    fingerprint: str = ""
    """The code fingerprint of the version (:mod:`engine.core.fingerprint`);
    empty in deployments recorded before fingerprints existed."""
    check: str = ""
    """What the replay check said when the version already had instances:
    ``verified``, ``forced`` or ``skipped``; empty when it had none."""


@event("nonstop.Redeployed")
class Redeployed(msgspec.Struct, frozen=True):
    """``workflow@version`` was deployed again with changed code (a hotfix).

    Routing is unchanged. ``check`` says what let it through: ``verified``
    (replaying its instances under the new code matched every recorded
    digest), ``forced`` (``--force``) or ``skipped`` (``--skip-verify``).
    """

    workflow: str
    version: int
    source: str
    fingerprint: str
    previous: str
    """The fingerprint it replaces."""
    check: str
    by: str
    reason: str = ""


@event("nonstop.CodeMismatch")
class CodeMismatch(msgspec.Struct, frozen=True):
    """A worker runs ``workflow@version`` with other code than the recorded one.

    Written once per worker and pair of fingerprints, when the worker's
    registry refresh finds it.
    """

    workflow: str
    version: int
    worker: str
    """``host:pid`` of the worker."""
    recorded: str
    """The fingerprint the registry records."""
    loaded: str
    """The fingerprint of the code the worker runs."""
    by: str


@event("nonstop.Routed")
class Routed(msgspec.Struct, frozen=True):
    """New instances of ``workflow`` are routed anew (deploy, promote, rollback)."""

    workflow: str
    action: str
    """deploy, promote or rollback."""
    stable: int
    canary: int | None
    canary_bp: int
    """The canary's share in basis points."""
    by: str
    reason: str = ""
    replaced: int | None = None
    """A canary this change took the place of (``--replace``), if any."""


@event("nonstop.DeploymentFailed")
class DeploymentFailed(msgspec.Struct, frozen=True):
    """A worker could not load ``workflow@version``; nothing is routed to it."""

    workflow: str
    version: int
    error: str
    worker: str
    by: str


@event("nonstop.Retired")
class Retired(msgspec.Struct, frozen=True):
    """``workflow@version`` has no running instance and is retired."""

    workflow: str
    version: int
    by: str
    reason: str = ""


@event("nonstop.FlagChanged")
class FlagChanged(msgspec.Struct, frozen=True):
    """A flag's whole definition after a change (set, kill, revive)."""

    name: str
    action: str
    """set, kill or revive."""
    kind: str
    enabled: bool
    percent_bp: int
    variants: list[tuple[str, int]]
    killed: bool
    by: str
    reason: str = ""


@event("nonstop.InstancesMigrated")
class InstancesMigrated(msgspec.Struct, frozen=True):
    """Running instances of ``workflow`` were moved from one version to another."""

    workflow: str
    from_version: int
    to_version: int
    migrated: int
    """How many instances moved."""
    failed: int
    """How many were selected but not moved (the mapper or the write failed)."""
    mapper: str
    """``package.module:attr`` of the state mapper, empty for the identity."""
    by: str
    reason: str = ""


@event("nonstop.RegistryStream")
class RegistryStream(msgspec.Struct, frozen=True):
    """``stream`` belongs to the registry (an entry of ``nonstop.registry``)."""

    stream: str


REGISTRY_TYPES = (
    "nonstop.Deployed",
    "nonstop.Redeployed",
    "nonstop.CodeMismatch",
    "nonstop.Routed",
    "nonstop.DeploymentFailed",
    "nonstop.Retired",
    "nonstop.FlagChanged",
    "nonstop.InstancesMigrated",
    "nonstop.RegistryStream",
)
"""Type names a registry view folds (read from the global order)."""
