"""What callers hand the runtime: start and send requests, and the router port."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from engine.core.workflow import Workflow, WorkflowRegistry

__all__ = ["Router", "Send", "Start"]


class Start(msgspec.Struct, frozen=True):
    """A start request, for :meth:`Engine.handle_batch`."""

    workflow: str
    """Workflow name."""
    input: Any
    """The start input, passed to ``decide`` as the first command."""
    instance_id: str | None = None
    """Id to give the instance (a new UUID when omitted)."""
    version: int | None = None
    """Pin this version instead of the current one."""
    command_id: str | None = None
    """Makes the start idempotent."""
    routing_key: str | None = None
    """Business key for routing."""
    correlation_id: str | None = None
    """Correlation id."""


class Send(msgspec.Struct, frozen=True):
    """A command for an existing instance, for :meth:`Engine.handle_batch`."""

    instance_id: str
    """Target instance."""
    command: Any
    """The command, passed to ``decide``."""
    command_id: str | None = None
    """Makes the command idempotent: a repeat is answered, not applied."""
    correlation_id: str | None = None
    """Correlation id."""
    causation_id: str | None = None
    """Causation id."""


class Router(Protocol):
    """Picks the version of new instances and evaluates feature flags.

    :mod:`engine.deploy` implements it from the deployments registry in the
    store; an engine without a router uses ``WorkflowRegistry.current_version``.
    """

    def attach(self, registry: WorkflowRegistry) -> None:
        """Bind the engine's workflow registry (new deployments load into it)."""

    def refresh_due(self) -> bool:
        """True when the in-memory routing may be stale and should be re-read."""

    def refresh(self) -> object:
        """Re-read routing and flags from the store (blocking; thread-safe)."""

    def route(self, workflow: str, key: str) -> int | None:
        """The version a new instance with routing key ``key`` gets, if routed."""

    def evaluate(self, kind: str, name: str, key: str, default: Any) -> Any:
        """Value of flag ``name`` (kind ``flag`` or ``variant``) for ``key``."""

    def config(
        self, workflow: Workflow[Any], key: str, version: int | None
    ) -> tuple[int, Any]:
        """``(version, typed config)`` of ``workflow`` for ``key`` (ConfigReader)."""
