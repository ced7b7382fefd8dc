"""Deployments: registry, routing, flags, rollback and migration of instances.

The registry is event-sourced in the same store as the instances. An engine
built with a :class:`Deployments` router (see :func:`open_engine`) routes new
instances by it, loads newly deployed versions without a restart, and answers
``ctx.flag`` / ``ctx.variant`` from it.
"""

from __future__ import annotations

from typing import Any

from engine.core.errors import (
    CanaryActive,
    DeployConflict,
    DeployError,
    DeploySourceError,
    FlagError,
    RetireRefused,
)
from engine.core.workflow import WorkflowRegistry
from engine.deploy.flags import Flag, FlagKind
from engine.deploy.migrate import MigrationReport, MigrationResult, migrate_instances
from engine.deploy.registry import Deployments, default_user, load_source
from engine.deploy.routing import BUCKETS, Routing, bucket, percent_to_bp
from engine.deploy.stats import ScanStats, engine_stats
from engine.deploy.view import AuditEntry, Deployment, DeploymentState, DeployView
from engine.runtime import Engine
from engine.store import EventStore, open_store

__all__ = [
    "BUCKETS",
    "AuditEntry",
    "CanaryActive",
    "DeployConflict",
    "DeployError",
    "DeploySourceError",
    "DeployView",
    "Deployment",
    "DeploymentState",
    "Deployments",
    "Flag",
    "FlagError",
    "FlagKind",
    "MigrationReport",
    "MigrationResult",
    "RetireRefused",
    "Routing",
    "ScanStats",
    "bucket",
    "default_user",
    "engine_stats",
    "load_source",
    "migrate_instances",
    "open_engine",
    "percent_to_bp",
    "with_deployed",
]


def open_engine(
    store: EventStore | str,
    registry: WorkflowRegistry,
    *,
    poll_interval: float = 0.25,
    **options: Any,
) -> Engine:
    """An :class:`Engine` routed by the deployments registry in its store.

    Args:
        store: An open store or a URL (opened once, shared by both).
        registry: Workflow definitions; new deployments are loaded into it.
        poll_interval: Seconds after which a start re-reads the registry.
        **options: Passed to :class:`Engine`.
    """
    opened = open_store(store) if isinstance(store, str) else store
    router = Deployments(opened, poll_interval=poll_interval)
    return Engine(opened, registry, router=router, **options)


def with_deployed(
    registry: WorkflowRegistry, store: EventStore | str
) -> WorkflowRegistry:
    """``registry`` plus every version deployed in ``store`` that imports here.

    For tools that read instances of any version (the command line); a version
    that does not import is left out quietly, and not marked failed.
    """
    with Deployments(store) as deployments:
        deployments.load_deployed(registry)
    return registry
