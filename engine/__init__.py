"""nonstop: an event-sourced workflow engine you can update without downtime."""

from engine.deploy import Deployments, open_engine
from engine.errors import (
    CommandRejected,
    ConcurrencyConflict,
    ConflictRetriesExhausted,
    DuplicateRegistration,
    EventDecodeError,
    InstanceExists,
    MigrationError,
    NonstopError,
    StoreUnavailable,
    UnknownEventType,
    UnknownInstance,
    UnknownWorkflow,
    WorkflowCodeError,
    WorkflowDefinitionError,
)
from engine.events import EventCodec, EventTypeRegistry, RecordedEvent, event
from engine.runtime import Engine, InstanceInfo, Router, Send, Start
from engine.store import EventStore, Tracking, open_store
from engine.sync import SyncEngine
from engine.workflow import Context, Status, Workflow, WorkflowRegistry, fold

__all__ = [
    # errors
    "CommandRejected",
    "ConcurrencyConflict",
    "ConflictRetriesExhausted",
    # workflows
    "Context",
    "Deployments",
    "DuplicateRegistration",
    # runtime
    "Engine",
    # storage
    "EventCodec",
    "EventDecodeError",
    "EventStore",
    "EventTypeRegistry",
    "InstanceExists",
    "InstanceInfo",
    "MigrationError",
    "NonstopError",
    "RecordedEvent",
    "Router",
    "Send",
    "Start",
    "Status",
    "StoreUnavailable",
    "SyncEngine",
    "Tracking",
    "UnknownEventType",
    "UnknownInstance",
    "UnknownWorkflow",
    "Workflow",
    "WorkflowCodeError",
    "WorkflowDefinitionError",
    "WorkflowRegistry",
    "event",
    "fold",
    "open_engine",
    "open_store",
]
