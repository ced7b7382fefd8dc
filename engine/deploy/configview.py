"""A workflow's config documents and their routing, folded from events (pure).

Version 0 is the config type's defaults (no document set). ``current`` is the
version instances get; a canary version, when set, goes to the share of
routing keys whose bucket (scope ``config:WORKFLOW``, the same hashing as
version canaries) is below its share, so raising the share only moves more
keys onto it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from engine.deploy.events import ConfigChanged
from engine.deploy.routing import bucket

__all__ = ["ConfigChange", "ConfigVersion", "WorkflowConfig"]


@dataclass(frozen=True)
class ConfigChange:
    """One entry of a workflow's config history."""

    at: int
    """When (µs since the epoch)."""
    action: str
    """set, promote or rollback."""
    added: int
    """The version the change added (0: none)."""
    before: int
    """The current version before the change."""
    after: int
    """The current version after it."""
    canary: int | None
    """The canary version after it."""
    canary_bp: int
    """The canary's share after it, in basis points."""
    by: str
    """Who."""
    reason: str
    """Why."""


@dataclass(frozen=True)
class ConfigVersion:
    """One stored config document."""

    version: int
    """Its number, from 1 up, per workflow."""
    document: bytes
    """Canonical JSON."""
    at: int
    """When it was set (µs since the epoch)."""
    by: str
    """Who set it."""
    reason: str
    """Why."""

    def table(self) -> dict[str, object]:
        """The document as a table of fields."""
        out: dict[str, object] = msgspec.json.decode(self.document)
        return out


@dataclass
class WorkflowConfig:
    """Every config version of one workflow and which one instances get."""

    workflow: str
    """Workflow name."""
    versions: dict[int, ConfigVersion] = field(default_factory=dict)
    """Every stored document, by version."""
    current: int = 0
    """The version instances get (0: defaults)."""
    canary: int | None = None
    """A version a share of new readers gets."""
    canary_bp: int = 0
    """The canary's share in basis points."""
    previous: list[int] = field(default_factory=list)
    """Earlier current versions, newest last: where a rollback goes."""
    changes: list[ConfigChange] = field(default_factory=list)
    """Every change, oldest first."""

    @property
    def latest(self) -> int:
        """The highest stored version (0 when none)."""
        return max(self.versions, default=0)

    def version_for(self, key: str) -> int:
        """The version an instance with routing key ``key`` reads now."""
        if self.canary is not None and (
            bucket(f"config:{self.workflow}", key) < self.canary_bp
        ):
            return self.canary
        return self.current

    def rollback_target(self) -> int | None:
        """Where a rollback goes: off the canary, else the previous current."""
        if self.canary is not None:
            return self.current
        for version in reversed(self.previous):
            if version != self.current:
                return version
        return None

    def describe(self) -> str:
        """The routing in a few words."""
        text = f"v{self.current}" if self.current else "defaults (v0)"
        if self.canary is not None:
            text += f", canary v{self.canary} at {self.canary_bp / 100:g} %"
        return text

    def table(self, version: int) -> dict[str, object]:
        """The document of ``version`` (empty for 0, the defaults)."""
        return self.versions[version].table() if version else {}

    def apply(self, at: int, e: ConfigChanged) -> None:
        """Fold one change."""
        before = self.current
        if e.version:
            self.versions[e.version] = ConfigVersion(
                e.version, e.document, at, e.by, e.reason
            )
        if e.current != self.current:
            if e.action == "rollback":
                while self.previous and self.previous[-1] != e.current:
                    self.previous.pop()
                if self.previous:
                    self.previous.pop()
            else:
                self.previous.append(self.current)
        self.current = e.current
        self.canary = e.canary
        self.canary_bp = e.canary_bp if e.canary is not None else 0
        self.changes.append(
            ConfigChange(
                at,
                e.action,
                e.version,
                before,
                e.current,
                e.canary,
                self.canary_bp,
                e.by,
                e.reason,
            )
        )
