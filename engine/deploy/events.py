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
    "CONFIG_STATUS_PREFIX",
    "CONFIG_STREAM_PREFIX",
    "DEPLOY_STREAM_PREFIX",
    "FLAGS_STREAM",
    "INDEX_STREAM",
    "REGISTRY_TYPES",
    "CodeMismatch",
    "ConfigChanged",
    "ConfigReported",
    "Deployed",
    "DeploymentFailed",
    "FlagChanged",
    "InstancesMigrated",
    "Redeployed",
    "RegistryStream",
    "Retired",
    "Routed",
    "config_status_stream",
    "config_stream",
    "deploy_stream",
]

DEPLOY_STREAM_PREFIX = "nonstop.deploy:"
"""Stream id prefix of a workflow's deployments."""
FLAGS_STREAM = "nonstop.flags"
"""Stream id of every flag change."""
INDEX_STREAM = "nonstop.registry"
"""Stream id of the index of the registry's workflow streams."""
CONFIG_STREAM_PREFIX = "nonstop.config:"
"""Stream id prefix of a workflow's config documents (listed in the index)."""
CONFIG_STATUS_PREFIX = "nonstop.config-status:"
"""Stream id prefix of the engines' reports of the config they run."""


def config_stream(workflow: str) -> str:
    """The stream holding ``workflow``'s config documents and their routing."""
    return f"{CONFIG_STREAM_PREFIX}{workflow}"


def config_status_stream(workflow: str) -> str:
    """The stream of the engines' reports on ``workflow``'s config."""
    return f"{CONFIG_STATUS_PREFIX}{workflow}"


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


@event("nonstop.ConfigChanged")
class ConfigChanged(msgspec.Struct, frozen=True):
    """A config change of ``workflow``: maybe a new document, and its routing.

    ``version`` and ``document`` are set when the change adds a document
    (``set``); every change carries the routing after it.
    """

    workflow: str
    action: str
    """set, promote or rollback."""
    version: int
    """The version this change adds, 0 when it adds none."""
    document: bytes
    """The added document as canonical JSON (empty when none)."""
    current: int
    """The version instances get (0: the type's defaults)."""
    canary: int | None
    """A version a share of instances gets, if any."""
    canary_bp: int
    """The canary's share in basis points."""
    by: str
    reason: str = ""


@event("nonstop.ConfigReported")
class ConfigReported(msgspec.Struct, frozen=True):
    """What one engine runs of ``workflow``'s config, written when it changes."""

    workflow: str
    worker: str
    """host:pid of the engine."""
    applied: int
    """The newest config version it decodes and serves."""
    refused: int = 0
    """A newer version its code cannot decode (0: none)."""
    error: str = ""
    """Why it refused ``refused``."""


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
    "nonstop.ConfigChanged",
)
"""Type names a registry view folds (read from the global order)."""
