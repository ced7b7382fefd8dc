"""nonstop: an event-sourced workflow engine you can update without downtime.

``import engine`` is cheap: the public names below load on first use (module
``__getattr__``), so importing the package, its pure core (``engine.core``) or
``upcasters`` pulls no database driver. ``from engine import Engine`` works as
before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.core.errors import (
        AlreadyReplayed as AlreadyReplayed,
    )
    from engine.core.errors import (
        AppLoadError as AppLoadError,
    )
    from engine.core.errors import (
        BrokerUnavailable as BrokerUnavailable,
    )
    from engine.core.errors import (
        CommandRejected as CommandRejected,
    )
    from engine.core.errors import (
        CommitInDoubt as CommitInDoubt,
    )
    from engine.core.errors import (
        ConcurrencyConflict as ConcurrencyConflict,
    )
    from engine.core.errors import (
        ConflictRetriesExhausted as ConflictRetriesExhausted,
    )
    from engine.core.errors import (
        CorruptStream as CorruptStream,
    )
    from engine.core.errors import (
        DeadLetterNotFound as DeadLetterNotFound,
    )
    from engine.core.errors import (
        DeployConflict as DeployConflict,
    )
    from engine.core.errors import (
        DeployError as DeployError,
    )
    from engine.core.errors import (
        DeploySourceError as DeploySourceError,
    )
    from engine.core.errors import (
        DuplicateRegistration as DuplicateRegistration,
    )
    from engine.core.errors import (
        EventDecodeError as EventDecodeError,
    )
    from engine.core.errors import (
        EventFromNewerCode as EventFromNewerCode,
    )
    from engine.core.errors import (
        FlagError as FlagError,
    )
    from engine.core.errors import (
        InstanceExists as InstanceExists,
    )
    from engine.core.errors import (
        MapperLoadError as MapperLoadError,
    )
    from engine.core.errors import (
        MappingError as MappingError,
    )
    from engine.core.errors import (
        MappingLoadError as MappingLoadError,
    )
    from engine.core.errors import (
        MigrationError as MigrationError,
    )
    from engine.core.errors import (
        NonstopError as NonstopError,
    )
    from engine.core.errors import (
        ProjectionDefinitionError as ProjectionDefinitionError,
    )
    from engine.core.errors import (
        ProjectionError as ProjectionError,
    )
    from engine.core.errors import (
        ProjectionsLoadError as ProjectionsLoadError,
    )
    from engine.core.errors import (
        ProjectionStateError as ProjectionStateError,
    )
    from engine.core.errors import (
        ReadModelUnavailable as ReadModelUnavailable,
    )
    from engine.core.errors import (
        RetireRefused as RetireRefused,
    )
    from engine.core.errors import (
        SchemaLockError as SchemaLockError,
    )
    from engine.core.errors import (
        SnapshotMigrationError as SnapshotMigrationError,
    )
    from engine.core.errors import (
        StoreUnavailable as StoreUnavailable,
    )
    from engine.core.errors import (
        UnknownEventType as UnknownEventType,
    )
    from engine.core.errors import (
        UnknownInstance as UnknownInstance,
    )
    from engine.core.errors import (
        UnknownProjection as UnknownProjection,
    )
    from engine.core.errors import (
        UnknownWorkflow as UnknownWorkflow,
    )
    from engine.core.errors import (
        UnsupportedFieldType as UnsupportedFieldType,
    )
    from engine.core.errors import (
        UpcastChainError as UpcastChainError,
    )
    from engine.core.errors import (
        WorkflowCodeError as WorkflowCodeError,
    )
    from engine.core.errors import (
        WorkflowDefinitionError as WorkflowDefinitionError,
    )
    from engine.core.events import (
        EventCodec as EventCodec,
    )
    from engine.core.events import (
        EventTypeRegistry as EventTypeRegistry,
    )
    from engine.core.events import (
        RecordedEvent as RecordedEvent,
    )
    from engine.core.events import (
        event as event,
    )
    from engine.core.workflow import (
        Context as Context,
    )
    from engine.core.workflow import (
        Status as Status,
    )
    from engine.core.workflow import (
        Workflow as Workflow,
    )
    from engine.core.workflow import (
        WorkflowRegistry as WorkflowRegistry,
    )
    from engine.core.workflow import (
        fold as fold,
    )
    from engine.deploy import (
        Deployments as Deployments,
    )
    from engine.deploy import (
        open_engine as open_engine,
    )
    from engine.runtime import (
        Engine as Engine,
    )
    from engine.runtime import (
        InstanceInfo as InstanceInfo,
    )
    from engine.runtime import (
        Router as Router,
    )
    from engine.runtime import (
        Send as Send,
    )
    from engine.runtime import (
        Start as Start,
    )
    from engine.store import (
        EventStore as EventStore,
    )
    from engine.store import (
        Tracking as Tracking,
    )
    from engine.store import (
        open_store as open_store,
    )
    from engine.sync import (
        SyncEngine as SyncEngine,
    )

_WHERE: dict[str, str] = {
    "AlreadyReplayed": "engine.core.errors",
    "AppLoadError": "engine.core.errors",
    "BrokerUnavailable": "engine.core.errors",
    "CommandRejected": "engine.core.errors",
    "CommitInDoubt": "engine.core.errors",
    "ConcurrencyConflict": "engine.core.errors",
    "ConflictRetriesExhausted": "engine.core.errors",
    "CorruptStream": "engine.core.errors",
    "DeadLetterNotFound": "engine.core.errors",
    "DeployConflict": "engine.core.errors",
    "DeployError": "engine.core.errors",
    "DeploySourceError": "engine.core.errors",
    "DuplicateRegistration": "engine.core.errors",
    "EventDecodeError": "engine.core.errors",
    "EventFromNewerCode": "engine.core.errors",
    "FlagError": "engine.core.errors",
    "InstanceExists": "engine.core.errors",
    "MapperLoadError": "engine.core.errors",
    "MappingError": "engine.core.errors",
    "MappingLoadError": "engine.core.errors",
    "MigrationError": "engine.core.errors",
    "NonstopError": "engine.core.errors",
    "ProjectionDefinitionError": "engine.core.errors",
    "ProjectionError": "engine.core.errors",
    "ProjectionStateError": "engine.core.errors",
    "ProjectionsLoadError": "engine.core.errors",
    "ReadModelUnavailable": "engine.core.errors",
    "RetireRefused": "engine.core.errors",
    "SchemaLockError": "engine.core.errors",
    "SnapshotMigrationError": "engine.core.errors",
    "StoreUnavailable": "engine.core.errors",
    "UnknownEventType": "engine.core.errors",
    "UnknownInstance": "engine.core.errors",
    "UnknownProjection": "engine.core.errors",
    "UnknownWorkflow": "engine.core.errors",
    "UnsupportedFieldType": "engine.core.errors",
    "UpcastChainError": "engine.core.errors",
    "WorkflowCodeError": "engine.core.errors",
    "WorkflowDefinitionError": "engine.core.errors",
    "EventCodec": "engine.core.events",
    "EventTypeRegistry": "engine.core.events",
    "RecordedEvent": "engine.core.events",
    "event": "engine.core.events",
    "Context": "engine.core.workflow",
    "Status": "engine.core.workflow",
    "Workflow": "engine.core.workflow",
    "WorkflowRegistry": "engine.core.workflow",
    "fold": "engine.core.workflow",
    "Engine": "engine.runtime",
    "InstanceInfo": "engine.core.replay",
    "Router": "engine.runtime",
    "Send": "engine.runtime",
    "Start": "engine.runtime",
    "SyncEngine": "engine.sync",
    "EventStore": "engine.store",
    "Tracking": "engine.store",
    "open_store": "engine.store",
    "Deployments": "engine.deploy",
    "open_engine": "engine.deploy",
}

__all__ = [  # noqa: RUF022 (grouped by layer, not sorted)
    # errors
    "AlreadyReplayed",
    "AppLoadError",
    "BrokerUnavailable",
    "CommandRejected",
    "CommitInDoubt",
    "ConcurrencyConflict",
    "ConflictRetriesExhausted",
    "CorruptStream",
    "DeadLetterNotFound",
    "DeployConflict",
    "DeployError",
    "DeploySourceError",
    "DuplicateRegistration",
    "EventDecodeError",
    "EventFromNewerCode",
    "FlagError",
    "InstanceExists",
    "MapperLoadError",
    "MappingError",
    "MappingLoadError",
    "MigrationError",
    "NonstopError",
    "ProjectionDefinitionError",
    "ProjectionError",
    "ProjectionStateError",
    "ProjectionsLoadError",
    "ReadModelUnavailable",
    "RetireRefused",
    "SchemaLockError",
    "SnapshotMigrationError",
    "StoreUnavailable",
    "UnknownEventType",
    "UnknownInstance",
    "UnknownProjection",
    "UnknownWorkflow",
    "UnsupportedFieldType",
    "UpcastChainError",
    "WorkflowCodeError",
    "WorkflowDefinitionError",
    # events
    "EventCodec",
    "EventTypeRegistry",
    "RecordedEvent",
    "event",
    # workflows
    "Context",
    "Status",
    "Workflow",
    "WorkflowRegistry",
    "fold",
    # runtime
    "Engine",
    "InstanceInfo",
    "Router",
    "Send",
    "Start",
    # sync facade
    "SyncEngine",
    # storage
    "EventStore",
    "Tracking",
    "open_store",
    # deployments
    "Deployments",
    "open_engine",
]


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` on first access and cache the value."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
