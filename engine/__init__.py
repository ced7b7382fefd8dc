"""nonstop: an event-sourced workflow engine you can update without downtime.

``import engine`` is cheap: the public names below load on first use (module
``__getattr__``), so importing the package, its pure core (``engine.core``) or
``upcasters`` pulls no database driver. ``from engine import Engine`` works as
before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine.core import errors as _errors

if TYPE_CHECKING:
    from engine.core.codec import (
        EventCodec,
    )
    from engine.core.effects import (
        EffectCompleted,
        EffectFailed,
    )
    from engine.core.errors import (
        AlreadyReplayed,
        AppendModeMismatch,
        AppLoadError,
        BrokerUnavailable,
        CanaryActive,
        CommandInputError,
        CommandRejected,
        CommitInDoubt,
        ConcurrencyConflict,
        ConfigError,
        ConflictRetriesExhausted,
        ConsoleError,
        ConsoleTokensError,
        CorruptStream,
        DeadLetterNotFound,
        DeployConflict,
        DeployError,
        DeploySourceError,
        DuplicateRegistration,
        EventDecodeError,
        EventFromNewerCode,
        FlagError,
        InstanceExists,
        InvalidPage,
        MapperLoadError,
        MappingError,
        MappingLoadError,
        MigrationError,
        MissingExtra,
        NonstopError,
        ProjectionDefinitionError,
        ProjectionError,
        ProjectionsLoadError,
        ProjectionStateError,
        PublishBlocked,
        PublishUsageError,
        ReadModelUnavailable,
        ReplayDiverged,
        RetireRefused,
        RolloutError,
        SchemaLockError,
        SkipRefused,
        SnapshotMigrationError,
        StoreNotFound,
        StoreUnavailable,
        UnknownEventType,
        UnknownInstance,
        UnknownProjection,
        UnknownWorkflow,
        UnsupportedFieldType,
        UpcastChainError,
        VerifyError,
        VerifyFailed,
        WorkflowCodeError,
        WorkflowDefinitionError,
    )
    from engine.core.events import (
        EventTypeRegistry,
        RecordedEvent,
        event,
    )
    from engine.core.replay import (
        InstanceInfo,
    )
    from engine.core.workflow import (
        Context,
        ListingStatus,
        Status,
        Workflow,
        WorkflowRegistry,
        fold,
    )
    from engine.deploy import (
        Deployments,
        open_engine,
    )
    from engine.runtime import (
        Engine,
        InstancePage,
        Router,
        Send,
        Start,
    )
    from engine.runtime.handlers import (
        ManualClock,
        effect_handler,
    )
    from engine.store import (
        EventStore,
        Tracking,
        open_store,
    )
    from engine.sync import (
        SyncEngine,
    )

_WHERE: dict[str, str] = {
    # every error, from the one error module (pure: loads no driver)
    **dict.fromkeys(_errors.__all__, "engine.core.errors"),
    "EventTypeRegistry": "engine.core.events",
    "RecordedEvent": "engine.core.events",
    "event": "engine.core.events",
    "EventCodec": "engine.core.codec",
    "Context": "engine.core.workflow",
    "ListingStatus": "engine.core.workflow",
    "Status": "engine.core.workflow",
    "Workflow": "engine.core.workflow",
    "WorkflowRegistry": "engine.core.workflow",
    "fold": "engine.core.workflow",
    "InstanceInfo": "engine.core.replay",
    "Engine": "engine.runtime",
    "InstancePage": "engine.runtime",
    "Router": "engine.runtime",
    "Send": "engine.runtime",
    "Start": "engine.runtime",
    "SyncEngine": "engine.sync",
    "EffectCompleted": "engine.core.effects",
    "EffectFailed": "engine.core.effects",
    "ManualClock": "engine.runtime.handlers",
    "effect_handler": "engine.runtime.handlers",
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
    "CanaryActive",
    "CommandInputError",
    "CommandRejected",
    "CommitInDoubt",
    "ConcurrencyConflict",
    "ConfigError",
    "ConflictRetriesExhausted",
    "ConsoleError",
    "ConsoleTokensError",
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
    "MissingExtra",
    "NonstopError",
    "ProjectionDefinitionError",
    "ProjectionError",
    "ProjectionStateError",
    "ProjectionsLoadError",
    "SkipRefused",
    "PublishUsageError",
    "PublishBlocked",
    "ReadModelUnavailable",
    "ReplayDiverged",
    "RetireRefused",
    "RolloutError",
    "SchemaLockError",
    "SnapshotMigrationError",
    "StoreNotFound",
    "AppendModeMismatch",
    "StoreUnavailable",
    "UnknownEventType",
    "UnknownInstance",
    "InvalidPage",
    "UnknownProjection",
    "UnknownWorkflow",
    "UnsupportedFieldType",
    "UpcastChainError",
    "VerifyError",
    "VerifyFailed",
    "WorkflowCodeError",
    "WorkflowDefinitionError",
    # events
    "EventTypeRegistry",
    "RecordedEvent",
    "event",
    "EventCodec",
    # workflows
    "Context",
    "ListingStatus",
    "Status",
    "Workflow",
    "WorkflowRegistry",
    "fold",
    # runtime
    "InstanceInfo",
    "Engine",
    "InstancePage",
    "Router",
    "Send",
    "Start",
    "SyncEngine",
    # effects and timers
    "EffectCompleted",
    "EffectFailed",
    "ManualClock",
    "effect_handler",
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
