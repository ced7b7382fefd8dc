"""Declaring a projection: name, version, tables, handled event types, handlers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.core.errors import EventDecodeError, ProjectionDefinitionError
from engine.core.events import RecordedEvent
from projections._db import Tx

__all__ = [
    "ALL",
    "BatchHandler",
    "Handler",
    "Projection",
    "Setup",
    "Undecodable",
]

Handler = Callable[[Tx, RecordedEvent], None]
"""``handler(tx, event)``: apply one event to the read model."""
BatchHandler = Callable[[Tx, Iterable[RecordedEvent]], None]
"""``handler(tx, events)``: apply a batch of events (in global order) at once.

``events`` is an iterator, decoded as it is consumed: iterate it once (make a
list if you need two passes)."""
Setup = Callable[[Tx], None]
"""``setup(tx)``: create the tables (``tx.table(NAME)``) and indexes of one build."""
F = TypeVar("F", bound=Callable[..., Any])

ALL = "*"
"""Pass to :meth:`Projection.on` to handle every event type."""


@dataclass(frozen=True, slots=True)
class Undecodable:
    """The ``event`` of a stored event that cannot be decoded.

    Only a projection declared with ``undecodable=True`` receives it (others
    stop at such an event); the :class:`~engine.core.events.RecordedEvent`
    keeps the stored type name, stream id and positions.
    """

    error: EventDecodeError
    """Why it cannot be decoded (it names the stream and position)."""


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
# A table may not start with v<digit>: its view would collide with a build table.
_TABLE = re.compile(r"^(?!v\d)[a-z][a-z0-9_]{0,19}$")


class Projection:
    """A read model folded from the global event order.

    Args:
        name: Lower-case identifier (``[a-z][a-z0-9_]*``, at most 30 characters);
            readers query the views ``<name>_<table>``.
        version: Bump it when the handlers or tables change: the new version is
            built beside the serving one and switched to when it has caught up.
        tables: The logical table names ``setup`` creates (``tx.table(NAME)``).
        keep: Keep the tables of the previous build after a switch (default:
            drop them in the switch transaction).
        undecodable: Hand an event that cannot be decoded to the handlers as a
            :class:`RecordedEvent` whose ``event`` is an :class:`Undecodable`
            (default: the projection stops at it, see ``nonstop projections``).

    Example:
        >>> totals = Projection("totals", version=1, tables=["by_workflow"])
        >>> @totals.setup
        ... def create(tx):
        ...     tx.execute(f"CREATE TABLE {tx.table('by_workflow')} (...)")
        >>> @totals.on("nonstop.Started")
        ... def started(tx, e):
        ...     tx.execute(f"UPDATE {tx.table('by_workflow')} SET ...", (...))
    """

    def __init__(
        self,
        name: str,
        *,
        version: int = 1,
        tables: Sequence[str],
        keep: bool = False,
        undecodable: bool = False,
    ) -> None:
        if not _NAME.match(name):
            raise ProjectionDefinitionError(
                f"projection name {name!r} must match [a-z][a-z0-9_]* (at most "
                "30 characters): it becomes part of table names"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ProjectionDefinitionError(
                f"projection {name!r}: version {version!r} must be an int >= 1"
            )
        bad = [t for t in tables if not _TABLE.match(t)]
        if bad or not tables or len(set(tables)) != len(tables):
            raise ProjectionDefinitionError(
                f"projection {name!r}: tables {list(tables)!r} must be distinct "
                "names matching [a-z][a-z0-9_]* (at most 20 characters, not "
                "starting with v and a digit), at least one"
            )
        self.name = name
        self.version = version
        self.tables = tuple(tables)
        self.keep = keep
        self.undecodable = undecodable
        self._setup: Setup | None = None
        self._handlers: dict[str, Handler] = {}
        self._batch: BatchHandler | None = None
        self._batch_types: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"Projection({self.name!r}, version={self.version})"

    def setup(self, fn: Setup) -> Setup:
        """Decorator: the function creating a build's tables and indexes."""
        self._setup = fn
        return fn

    def on(self, *types: str) -> Callable[[F], F]:
        """Decorator: handle events of these type names (:data:`ALL` for any).

        Type names are the stored ones, including system events such as
        ``nonstop.Started``. Events are decoded and upcast before the handler
        sees them.
        """
        if not types:
            raise ProjectionDefinitionError(
                f"projection {self.name!r}: on() needs at least one type name"
            )

        def wrap(fn: F) -> F:
            if self._batch is not None:
                raise ProjectionDefinitionError(
                    f"projection {self.name!r} has a batch handler; it cannot also "
                    "have per-event handlers"
                )
            for t in types:
                if t in self._handlers:
                    raise ProjectionDefinitionError(
                        f"projection {self.name!r}: type {t!r} already has a handler"
                    )
                self._handlers[t] = fn
            return fn

        return wrap

    def on_batch(self, *types: str) -> Callable[[BatchHandler], BatchHandler]:
        """Decorator: one function gets whole batches of these types (or ALL).

        For fast read models: aggregate in memory, write once per batch. When
        the function raises, the batch is retried one event at a time to name
        the failing event.
        """

        def wrap(fn: BatchHandler) -> BatchHandler:
            if self._handlers or self._batch is not None:
                raise ProjectionDefinitionError(
                    f"projection {self.name!r} already has handlers; a batch handler "
                    "must be its only one"
                )
            self._batch = fn
            self._batch_types = None if ALL in types or not types else frozenset(types)
            return fn

        return wrap

    @property
    def per_event(self) -> bool:
        """True when it has per-event handlers (no batch handler)."""
        return self._batch is None

    @property
    def types(self) -> tuple[str, ...]:
        """The type names read from the store; empty means every type."""
        if self._batch is not None:
            return tuple(sorted(self._batch_types or ()))
        if ALL in self._handlers:
            return ()
        return tuple(sorted(self._handlers))

    def check(self) -> None:
        """Raise :class:`ProjectionDefinitionError` if it cannot run."""
        if self._setup is None:
            raise ProjectionDefinitionError(
                f"projection {self.name!r} has no setup function; decorate one "
                "with @projection.setup to create its tables"
            )
        if self._batch is None and not self._handlers:
            raise ProjectionDefinitionError(
                f"projection {self.name!r} has no handlers; decorate one with "
                "@projection.on(TYPE) or @projection.on_batch()"
            )

    def create(self, tx: Tx) -> None:
        """Create one build's tables (``tx`` is bound to the build)."""
        self.check()
        assert self._setup is not None
        self._setup(tx)

    def apply(self, tx: Tx, events: Iterable[RecordedEvent]) -> None:
        """Apply events in global order (``tx`` is bound to the build)."""
        if self._batch is not None:
            wanted = self._batch_types
            if wanted is not None:
                events = (e for e in events if e.type in wanted)
            self._batch(tx, events)
            return
        handlers = self._handlers
        every = handlers.get(ALL)
        for e in events:
            fn = handlers.get(e.type, every)
            if fn is not None:
                fn(tx, e)
