"""Errors of deployments, flags and migrations."""

from __future__ import annotations

from engine.errors import NonstopError

__all__ = [
    "CanaryActive",
    "DeployConflict",
    "DeployError",
    "DeploySourceError",
    "FlagError",
    "RetireRefused",
]


class DeployError(NonstopError, ValueError):
    """A deployment command is not possible in the registry's current state."""


class DeploySourceError(DeployError):
    """The ``MOD:ATTR`` of a deployment does not name the workflow version."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"cannot load deployment source {source!r}: {reason}. Pass "
            "MODULE:ATTRIBUTE naming a Workflow (or a function returning one) "
            "with that name and version, importable by every worker"
        )


class RetireRefused(DeployError):
    """A version still has running instances (or still gets new ones)."""


class DeployConflict(DeployError):
    """Another change of the same registry stream won the race; nothing written."""


class CanaryActive(DeployError):
    """A canary is asked for while another one is active (pass ``replace``)."""


class FlagError(NonstopError, ValueError):
    """A flag definition or evaluation request is malformed."""
