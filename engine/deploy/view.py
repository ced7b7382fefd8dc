"""The registry as folded from its events: deployments, routing, flags (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from engine.deploy.configview import WorkflowConfig
from engine.deploy.events import (
    FLAGS_STREAM,
    CodeMismatch,
    ConfigChanged,
    Deployed,
    DeploymentFailed,
    FlagChanged,
    InstancesMigrated,
    Redeployed,
    RegistryStream,
    Retired,
    Routed,
)
from engine.deploy.flags import Flag, FlagKind
from engine.deploy.routing import Routing, bucket

__all__ = [
    "AuditEntry",
    "DeployView",
    "Deployment",
    "DeploymentState",
    "WorkflowDeployments",
]

DeploymentState = Literal["active", "draining", "drained", "retired", "failed"]
"""Lifecycle of a deployment. ``drained`` is ``draining`` with no running
instance left; it is derived from instance counts, not stored."""


@dataclass(frozen=True)
class Deployment:
    """The registry's record of one ``workflow@version``."""

    workflow: str
    """Workflow name."""
    version: int
    """Version."""
    source: str
    """``package.module:attr`` of its code."""
    state: DeploymentState
    """active (gets new instances), draining, retired or failed."""
    deployed_at: int
    """When it was deployed (µs since the epoch)."""
    by: str
    """Who deployed it."""
    error: str | None = None
    """Why it failed to load, when failed."""
    fingerprint: str = ""
    """Fingerprint of its code as last (re)deployed; empty if not recorded."""
    mismatched: tuple[str, ...] = ()
    """Workers that reported running other code than ``fingerprint``."""


@dataclass(frozen=True)
class AuditEntry:
    """One change of the registry: when, who, why."""

    at: int
    """When (µs since the epoch)."""
    subject: str
    """``workflow`` or ``flag:NAME``."""
    action: str
    """deploy, promote, rollback, failed, retire, migrate, set, kill, revive."""
    detail: str
    """What changed, in words."""
    by: str
    """Who."""
    reason: str
    """Why."""


@dataclass
class WorkflowDeployments:
    """Everything the registry knows about one workflow."""

    name: str
    """Workflow name."""
    deployments: dict[int, Deployment] = field(default_factory=dict)
    """Every deployed version."""
    routing: Routing | None = None
    """Where new instances go (None before the first deployment)."""
    previous: list[int] = field(default_factory=list)
    """Earlier stable versions, newest last: where a rollback goes."""
    replaced: int | None = None
    """The canary the last routing change took the place of, if it did."""

    def effective(self) -> Routing | None:
        """The routing with failed or retired versions left out."""
        r = self.routing
        if r is None:
            return None
        usable = self.usable
        if r.canary is not None and not usable(r.canary):
            r = Routing(r.stable)
        if usable(r.stable):
            return r
        for version in reversed(self.previous):
            if usable(version):
                return Routing(version)
        return None

    def usable(self, version: int) -> bool:
        """True when ``version`` is deployed and neither failed nor retired."""
        d = self.deployments.get(version)
        return d is not None and d.state in ("active", "draining")

    def rollback_target(self) -> Routing | None:
        """Where a rollback sends new instances, or None if nowhere."""
        r = self.routing
        if r is None:
            return None
        if r.canary is not None:
            return Routing(r.stable)
        for version in reversed(self.previous):
            if version != r.stable and self.usable(version):
                return Routing(version)
        return None


@dataclass
class DeployView:
    """The folded registry. Apply events in global order with :meth:`apply`."""

    workflows: dict[str, WorkflowDeployments] = field(default_factory=dict)
    """By workflow name."""
    flags: dict[str, Flag] = field(default_factory=dict)
    """By flag name."""
    audit: list[AuditEntry] = field(default_factory=list)
    """Every change, oldest first."""
    positions: dict[str, int] = field(default_factory=dict)
    """Last position of each registry stream (for optimistic concurrency)."""
    seen: int = 0
    """The global position folded up to."""
    streams: set[str] = field(default_factory=set)
    """The workflow streams listed in the registry's index stream."""
    configs: dict[str, WorkflowConfig] = field(default_factory=dict)
    """Config documents and their routing, by workflow name."""
    flag_history: dict[str, list[Flag]] = field(default_factory=dict)
    """Every definition of each flag, oldest first (definition N is [N-1])."""

    def workflow(self, name: str) -> WorkflowDeployments:
        """The deployments of ``name`` (empty when it has none)."""
        return self.workflows.get(name) or WorkflowDeployments(name)

    def route(self, workflow: str, key: str) -> int | None:
        """The version a new instance with routing key ``key`` gets, if routed."""
        wd = self.workflows.get(workflow)
        r = wd.effective() if wd is not None else None
        if r is None:
            return None
        return r.version_for(bucket(workflow, key))

    def evaluate(self, kind: str, name: str, key: str, default: Any) -> Any:
        """Flag ``name`` for ``key``; ``default`` when no such flag exists."""
        f = self.flags.get(name)
        if f is None:
            return default
        return f.evaluate(kind, key, default)

    def apply(
        self, stream_id: str, position: int, global_position: int, at: int, e: Any
    ) -> None:
        """Fold one registry event."""
        self.positions[stream_id] = position
        self.seen = max(self.seen, global_position)
        if stream_id == FLAGS_STREAM and isinstance(e, FlagChanged):
            self._flag(at, e)
            return
        if isinstance(e, RegistryStream):
            self.streams.add(e.stream)
        elif isinstance(e, Deployed):
            wd = self.workflows.setdefault(e.workflow, WorkflowDeployments(e.workflow))
            wd.deployments[e.version] = Deployment(
                e.workflow,
                e.version,
                e.source,
                "draining",
                at,
                e.by,
                fingerprint=e.fingerprint,
            )
            checked = f" ({e.check})" if e.check else ""
            detail = f"v{e.version} from {e.source}{checked}"
            self._log(at, e.workflow, "deploy", detail, e)
        elif isinstance(e, Redeployed):
            wd = self.workflows.setdefault(e.workflow, WorkflowDeployments(e.workflow))
            d = wd.deployments.get(e.version)
            if d is not None:
                wd.deployments[e.version] = replace(
                    d, source=e.source, fingerprint=e.fingerprint, mismatched=()
                )
            detail = (
                f"v{e.version} code {e.previous[:8] or '-'} -> {e.fingerprint[:8]} "
                f"from {e.source} ({e.check})"
            )
            self._log(at, e.workflow, "redeploy", detail, e)
        elif isinstance(e, CodeMismatch):
            wd = self.workflows.setdefault(e.workflow, WorkflowDeployments(e.workflow))
            d = wd.deployments.get(e.version)
            if d is not None and d.fingerprint == e.recorded:
                workers = tuple(sorted({*d.mismatched, e.worker}))
                wd.deployments[e.version] = replace(d, mismatched=workers)
            detail = (
                f"v{e.version} runs code {e.loaded[:8]} on {e.worker}, "
                f"recorded {e.recorded[:8]}"
            )
            self._log(at, e.workflow, "code mismatch", detail, e)
        elif isinstance(e, Routed):
            self._routed(at, e)
        elif isinstance(e, DeploymentFailed):
            wd = self.workflows.setdefault(e.workflow, WorkflowDeployments(e.workflow))
            d = wd.deployments.get(e.version)
            if d is not None:
                wd.deployments[e.version] = replace(d, state="failed", error=e.error)
            detail = f"v{e.version} failed on {e.worker}: {e.error}"
            self._log(at, e.workflow, "failed", detail, e)
        elif isinstance(e, Retired):
            wd = self.workflows.setdefault(e.workflow, WorkflowDeployments(e.workflow))
            d = wd.deployments.get(e.version)
            if d is not None:
                wd.deployments[e.version] = replace(d, state="retired")
            self._log(at, e.workflow, "retire", f"v{e.version} retired", e)
        elif isinstance(e, ConfigChanged):
            wc = self.configs.setdefault(e.workflow, WorkflowConfig(e.workflow))
            wc.apply(at, e)
            detail = f"v{e.version} added; " if e.version else ""
            self._log(at, f"config:{e.workflow}", e.action, detail + wc.describe(), e)
        elif isinstance(e, InstancesMigrated):
            self.workflows.setdefault(e.workflow, WorkflowDeployments(e.workflow))
            detail = (
                f"{e.migrated} instance(s) v{e.from_version} -> v{e.to_version}"
                f"{f', {e.failed} failed' if e.failed else ''}, mapper "
                f"{e.mapper or 'none (state as is)'}"
            )
            self._log(at, e.workflow, "migrate", detail, e)

    def _routed(self, at: int, e: Routed) -> None:
        wd = self.workflows.setdefault(e.workflow, WorkflowDeployments(e.workflow))
        old = wd.routing
        new = Routing(e.stable, e.canary, e.canary_bp if e.canary is not None else 0)
        if old is not None and old.stable != new.stable:
            if e.action == "rollback":
                while wd.previous and wd.previous[-1] != new.stable:
                    wd.previous.pop()
                if wd.previous:
                    wd.previous.pop()
            else:
                wd.previous.append(old.stable)
        wd.routing = new
        wd.replaced = e.replaced
        routed = {new.stable} | ({new.canary} if new.canary is not None else set())
        for version, d in wd.deployments.items():
            if d.state in ("failed", "retired"):
                continue
            state: DeploymentState = "active" if version in routed else "draining"
            if d.state != state:
                wd.deployments[version] = replace(d, state=state)
        detail = new.describe()
        if e.replaced is not None:
            detail += f" (replaces canary v{e.replaced})"
        self._log(at, e.workflow, e.action, detail, e)

    def _flag(self, at: int, e: FlagChanged) -> None:
        kind: FlagKind = e.kind  # type: ignore[assignment]
        flag = Flag(
            e.name,
            kind,
            e.enabled,
            e.percent_bp,
            tuple((n, w) for n, w in e.variants),
            e.killed,
        )
        self.flags[e.name] = flag
        self.flag_history.setdefault(e.name, []).append(flag)
        self._log(at, f"flag:{e.name}", e.action, flag.describe(), e)

    def _log(self, at: int, subject: str, action: str, detail: str, e: Any) -> None:
        reason = str(getattr(e, "reason", ""))
        self.audit.append(AuditEntry(at, subject, action, detail, e.by, reason))
