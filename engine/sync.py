"""A synchronous facade over :class:`~engine.runtime.Engine`.

The async engine is the only implementation: the facade runs it on an event
loop in a background thread and waits for each call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from engine.core.errors import NonstopError
from engine.core.events import RecordedEvent
from engine.core.workflow import Status, WorkflowRegistry
from engine.runtime import Engine, InstanceInfo, Send, Start
from engine.store import EventStore, Tracking

__all__ = ["SyncEngine"]

T = TypeVar("T")


class SyncEngine:
    """Blocking twin of :class:`Engine`; same arguments, same methods."""

    def __init__(
        self, store: EventStore | str, registry: WorkflowRegistry, **options: Any
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nonstop-engine", daemon=True
        )
        self._thread.start()
        self.engine = self._call(_make(store, registry, options))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def start(self, workflow: str, input: Any, **options: Any) -> InstanceInfo:
        """See :meth:`Engine.start`."""
        return self._call(self.engine.start(workflow, input, **options))

    def send(self, instance_id: str, command: Any, **options: Any) -> InstanceInfo:
        """See :meth:`Engine.send`."""
        return self._call(self.engine.send(instance_id, command, **options))

    def get(self, instance_id: str) -> InstanceInfo:
        """See :meth:`Engine.get`."""
        return self._call(self.engine.get(instance_id))

    def history(self, instance_id: str) -> list[RecordedEvent]:
        """See :meth:`Engine.history`."""
        return self._call(self.engine.history(instance_id))

    def instances(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: Status | None = None,
    ) -> list[InstanceInfo]:
        """See :meth:`Engine.instances`."""
        return self._call(
            self.engine.instances(workflow=workflow, version=version, status=status)
        )

    def handle_batch(
        self, items: Sequence[Start | Send], *, tracking: Tracking | None = None
    ) -> list[InstanceInfo | NonstopError]:
        """See :meth:`Engine.handle_batch`."""
        return self._call(self.engine.handle_batch(items, tracking=tracking))

    def close(self) -> None:
        """Close the engine and stop its loop thread."""
        try:
            self._call(self.engine.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make(
    store: EventStore | str, registry: WorkflowRegistry, options: dict[str, Any]
) -> Engine:
    return Engine(store, registry, **options)
