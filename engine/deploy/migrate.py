"""Migration of in-flight instances from one version to another.

Each instance is migrated on its own (one ``nonstop.Migrated`` event, appended
at its expected stream position): a mapper that fails for one instance writes
nothing for it and is reported; the others proceed. Checked against the
deployments registry, a target that was never deployed (or failed, or retired)
is refused before anything is written, and the run is added to the registry's
audit trail (``nonstop.InstancesMigrated``: counts, versions, mapper, who, why).

A run reports progress after each instance and can be stopped between two
instances (``stop``): the instance in flight is finished, the rest are left
running ``from_version``. Running it again selects only the instances still on
``from_version``, so it goes on where it stopped and never migrates one twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from engine.core.errors import DeployError, NonstopError
from engine.deploy.registry import Deployments
from engine.deploy.view import DeployView
from engine.runtime import Engine

__all__ = ["MigrationReport", "MigrationResult", "migrate_instances"]

Outcome = Literal["migrated", "would migrate", "failed"]


@dataclass(frozen=True)
class MigrationResult:
    """What happened (or would happen) to one instance."""

    instance_id: str
    """The instance."""
    outcome: Outcome
    """migrated, would migrate (dry run) or failed."""
    detail: str
    """The new state in short, or the error."""


@dataclass(frozen=True)
class MigrationReport:
    """The outcome of one migration run."""

    workflow: str
    """Workflow name."""
    from_version: int
    """Source version."""
    to_version: int
    """Target version."""
    dry_run: bool
    """True when nothing was written."""
    results: list[MigrationResult] = field(default_factory=list)
    """One per selected instance, in start order."""
    stopped: bool = False
    """True when ``stop`` ended the run before every instance was done."""
    remaining: list[str] = field(default_factory=list)
    """The selected instances left untouched by a stopped run, in start order."""

    def count(self, outcome: Outcome) -> int:
        """How many instances had ``outcome``."""
        return sum(1 for r in self.results if r.outcome == outcome)


def _identity(state: Any) -> Any:
    return state


async def migrate_instances(
    engine: Engine,
    workflow: str,
    from_version: int,
    to_version: int,
    mapper: Callable[[Any], Any] | None = None,
    *,
    instance_ids: Sequence[str] | None = None,
    dry_run: bool = False,
    registry: DeployView | Deployments | None = None,
    by: str = "",
    reason: str = "",
    mapper_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> MigrationReport:
    """Migrate the running instances of ``workflow@from_version`` to ``to_version``.

    Args:
        engine: The engine whose registry holds both versions.
        workflow: Workflow name.
        from_version: Only instances running this version are selected.
        to_version: The version they move to.
        mapper: ``mapper(old_state) -> new_state`` (the state as is by default:
            it must then fit the new version's state type).
        instance_ids: Only these instances (all running ones by default); an
            id not running ``from_version`` is reported failed.
        dry_run: Report what would happen, write nothing.
        registry: The deployments registry (or a view of it): a target never
            deployed there, failed or retired is refused. Given the registry
            itself, a run that is not a dry run is also audited there.
        by: Who migrates (stored in each event and in the audit).
        reason: Why (stored in each event and in the audit).
        mapper_name: How the audit names the mapper (default: its
            ``module:qualname``).
        progress: Called as ``progress(done, total)`` once the instances are
            selected and after each one (migrated or failed).
        stop: Checked before each instance: once set, the run ends there
            (the instance in flight was finished) and the report lists the
            ones left in ``remaining``.

    Raises:
        DeployError: the target is the source, or never deployed, failed or
            retired in ``registry``.
        UnknownWorkflow: a version is not registered with the engine.
    """
    if from_version == to_version:
        raise DeployError(
            f"cannot migrate {workflow} from v{from_version} to itself; "
            "pick another --to version"
        )
    view = registry.refresh() if isinstance(registry, Deployments) else registry
    if view is not None:
        _check_target(view, workflow, to_version)
    engine.registry.get(workflow, from_version)
    engine.registry.get(workflow, to_version)
    running = await engine.instances(
        workflow=workflow, version=from_version, status="running"
    )
    selected = [i.instance_id for i in running]
    report = MigrationReport(workflow, from_version, to_version, dry_run)
    if instance_ids is not None:
        wanted = set(instance_ids)
        missing = [i for i in instance_ids if i not in set(selected)]
        selected = [i for i in selected if i in wanted]
        for iid in missing:
            report.results.append(
                MigrationResult(
                    iid, "failed", f"not a running {workflow}@{from_version} instance"
                )
            )
    fn = mapper or _identity
    total = len(selected)
    if progress is not None:
        progress(0, total)
    for n, iid in enumerate(selected):
        if stop is not None and stop.is_set():
            report = replace(report, stopped=True, remaining=selected[n:])
            break
        report.results.append(
            await _migrate_one(engine, iid, to_version, fn, dry_run, by, reason)
        )
        if progress is not None:
            progress(n + 1, total)
    if isinstance(registry, Deployments) and not dry_run and report.results:
        registry.record_migration(
            workflow,
            from_version,
            to_version,
            migrated=report.count("migrated"),
            failed=report.count("failed"),
            mapper=_name(mapper) if mapper_name is None else mapper_name,
            by=by or None,
            reason=reason,
        )
    return report


async def _migrate_one(
    engine: Engine,
    iid: str,
    to_version: int,
    fn: Callable[[Any], Any],
    dry_run: bool,
    by: str,
    reason: str,
) -> MigrationResult:
    try:
        info = await engine.migrate(
            iid, to_version, fn, dry_run=dry_run, by=by, reason=reason
        )
    except NonstopError as exc:
        return MigrationResult(iid, "failed", str(exc))
    outcome: Outcome = "would migrate" if dry_run else "migrated"
    detail = f"{info.status} at position {info.position}: {info.state!r}"
    return MigrationResult(iid, outcome, detail[:200])


def _check_target(view: DeployView, workflow: str, version: int) -> None:
    wd = view.workflow(workflow)
    d = wd.deployments.get(version)
    if d is None:
        known = ", ".join(f"v{v}" for v in sorted(wd.deployments)) or "none"
        raise DeployError(
            f"cannot migrate to {workflow}@{version}: it was never deployed "
            f"(deployed: {known}); nothing was written. Deploy it first (nonstop "
            f"deploy {workflow} {version} --source MOD:ATTR), so that every "
            "worker can run the migrated instances"
        )
    if d.state in ("failed", "retired"):
        raise DeployError(f"cannot migrate to {workflow}@{version}: it is {d.state}")


def _name(mapper: Callable[[Any], Any] | None) -> str:
    if mapper is None:
        return ""
    module = getattr(mapper, "__module__", None) or "?"
    return f"{module}:{getattr(mapper, '__qualname__', repr(mapper))}"
