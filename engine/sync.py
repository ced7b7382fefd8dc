"""A synchronous facade over :class:`~engine.runtime.Engine`.

The async engine is the only implementation: the facade runs it on an event
loop in a background thread and waits for each call. Every public coroutine
method of ``Engine`` has a twin here with the same signature (a test checks
it), each one line that forwards its arguments.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from engine.core.codec import EventCodec
from engine.core.errors import NonstopError
from engine.core.events import RecordedEvent
from engine.core.replay import InstanceInfo
from engine.core.workflow import ListingStatus, WorkflowRegistry
from engine.health import Health
from engine.runtime import Engine, InstancePage, Router, Send, Start
from engine.runtime.engine import DeadLetterMaker
from engine.store import EventStore, Tracking

if TYPE_CHECKING:  # upcasters imports engine.core: no import cycle at run time
    from upcasters import UpcasterRegistry

__all__ = ["SyncEngine"]

T = TypeVar("T")


class SyncEngine:
    """Blocking twin of :class:`Engine`; same arguments, same methods."""

    def __init__(
        self,
        store: EventStore | str,
        registry: WorkflowRegistry,
        *,
        codec: EventCodec | None = None,
        upcasters: UpcasterRegistry | None = None,
        cache_size: int = 10_000,
        max_batch: int = 1_000,
        max_attempts: int = 8,
        router: Router | None = None,
        deployments: bool = True,
        health: Health | bool | None = None,
        metrics: bool = False,
        effects: bool = False,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nonstop-engine", daemon=True
        )
        self._thread.start()

        async def make() -> Engine:
            return Engine(
                store,
                registry,
                codec=codec,
                upcasters=upcasters,
                cache_size=cache_size,
                max_batch=max_batch,
                max_attempts=max_attempts,
                router=router,
                deployments=deployments,
                health=health,
                metrics=metrics,
                effects=effects,
            )

        self.engine = self._call(make())
        """The async engine it drives (on its own loop thread)."""

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def start(
        self,
        workflow: str,
        input: Any,
        *,
        instance_id: str | None = None,
        version: int | None = None,
        command_id: str | None = None,
        routing_key: str | None = None,
        correlation_id: str | None = None,
    ) -> InstanceInfo:
        """See :meth:`Engine.start`."""
        return self._call(
            self.engine.start(
                workflow,
                input,
                instance_id=instance_id,
                version=version,
                command_id=command_id,
                routing_key=routing_key,
                correlation_id=correlation_id,
            )
        )

    def send(
        self,
        instance_id: str,
        command: Any,
        *,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> InstanceInfo:
        """See :meth:`Engine.send`."""
        return self._call(
            self.engine.send(
                instance_id,
                command,
                command_id=command_id,
                correlation_id=correlation_id,
                causation_id=causation_id,
            )
        )

    def get(self, instance_id: str) -> InstanceInfo:
        """See :meth:`Engine.get`."""
        return self._call(self.engine.get(instance_id))

    def write_snapshot(
        self, instance_id: str, *, after: int = 0, replace: bool = False
    ) -> int | None:
        """See :meth:`Engine.write_snapshot`."""
        return self._call(
            self.engine.write_snapshot(instance_id, after=after, replace=replace)
        )

    def history(self, instance_id: str) -> list[RecordedEvent]:
        """See :meth:`Engine.history`."""
        return self._call(self.engine.history(instance_id))

    def instances(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: ListingStatus | None = None,
    ) -> list[InstanceInfo]:
        """See :meth:`Engine.instances`."""
        return self._call(
            self.engine.instances(workflow=workflow, version=version, status=status)
        )

    def instances_page(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: ListingStatus | None = None,
        after: int = 0,
        limit: int = 50,
    ) -> InstancePage:
        """See :meth:`Engine.instances_page`."""
        return self._call(
            self.engine.instances_page(
                workflow=workflow,
                version=version,
                status=status,
                after=after,
                limit=limit,
            )
        )

    def get_many(self, instance_ids: Iterable[str]) -> dict[str, InstanceInfo]:
        """See :meth:`Engine.get_many`."""
        return self._call(self.engine.get_many(instance_ids))

    def handle_batch(
        self,
        items: Sequence[Start | Send],
        *,
        tracking: Tracking | None = None,
        dead_letters: DeadLetterMaker | None = None,
    ) -> list[InstanceInfo | NonstopError]:
        """See :meth:`Engine.handle_batch`."""
        return self._call(
            self.engine.handle_batch(
                items, tracking=tracking, dead_letters=dead_letters
            )
        )

    def migrate(
        self,
        instance_id: str,
        version: int,
        mapper: Callable[[Any], Any],
        *,
        dry_run: bool = False,
        by: str = "",
        reason: str = "",
    ) -> InstanceInfo:
        """See :meth:`Engine.migrate`."""
        return self._call(
            self.engine.migrate(
                instance_id, version, mapper, dry_run=dry_run, by=by, reason=reason
            )
        )

    def cancel(
        self,
        instance_id: str,
        *,
        reason: str,
        by: str = "",
        command_id: str | None = None,
    ) -> InstanceInfo:
        """See :meth:`Engine.cancel`."""
        return self._call(
            self.engine.cancel(instance_id, reason=reason, by=by, command_id=command_id)
        )

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
