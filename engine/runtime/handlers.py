"""Effect handlers registered per effect type and version, and the time source.

``@effect_handler("ChargeCard", version=1)`` registers a function (async or
sync) that performs an effect a decider asked for with ``ctx.request``. It is
called with the request and, when it takes a second parameter, the
idempotency key (the outbox id, ``instance@position#n``): the same key on
every delivery of the same request, for the far side to deduplicate.
"""

from __future__ import annotations

import inspect
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from engine.core.errors import DuplicateRegistration, WorkflowDefinitionError
from engine.store.retry import Backoff

__all__ = [
    "Clock",
    "EffectHandlers",
    "Handler",
    "ManualClock",
    "SystemClock",
    "default_handlers",
    "effect_handler",
]


class Clock(Protocol):
    """Where the timer service and the runner read the time."""

    def now(self) -> int:
        """Microseconds since the Unix epoch."""


class SystemClock:
    """The wall clock."""

    def now(self) -> int:
        """Microseconds since the Unix epoch."""
        return time.time_ns() // 1000


class ManualClock:
    """A clock tests move by hand (it never moves on its own).

    Args:
        start: Microseconds since the epoch (the wall clock's now by default).
    """

    def __init__(self, start: int | None = None) -> None:
        self._now = start if start is not None else SystemClock().now()

    def now(self) -> int:
        """The current reading."""
        return self._now

    def advance(self, by: timedelta) -> None:
        """Move the clock forward by ``by``."""
        self._now += int(by.total_seconds() * 1e6)


@dataclass(frozen=True)
class Handler:
    """One registered effect handler."""

    name: str
    """Effect type name."""
    version: int
    """Handler version (the version ``ctx.request`` named)."""
    fn: Callable[..., Any]
    """The function, async or sync."""
    request_type: Any
    """Type the stored request is decoded to (``Any``: plain data)."""
    takes_key: bool
    """Whether ``fn`` takes the idempotency key as its second argument."""
    timeout: float
    """Seconds one attempt may take."""
    max_attempts: int
    """Attempts before the effect is failed."""
    backoff: Backoff = field(default_factory=Backoff)
    """Waits between attempts (exponential with jitter)."""

    @property
    def is_async(self) -> bool:
        """Whether ``fn`` is a coroutine function."""
        return inspect.iscoroutinefunction(self.fn)


class EffectHandlers:
    """Effect handlers by ``(type name, version)``."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], Handler] = {}

    def add(self, handler: Handler) -> None:
        """Register ``handler``.

        Raises:
            DuplicateRegistration: another function has that name and version.
        """
        key = (handler.name, handler.version)
        known = self._by_key.get(key)
        if known is not None and known.fn is not handler.fn:
            raise DuplicateRegistration(
                f"effect handler {handler.name}@{handler.version} is already "
                f"registered ({known.fn.__qualname__}); register the change as a "
                "new version"
            )
        self._by_key[key] = handler

    def get(self, name: str, version: int) -> Handler | None:
        """The handler of ``name@version``, if registered."""
        return self._by_key.get((name, version))

    def refs(self) -> list[str]:
        """Every registered ``name@version``, sorted."""
        return [f"{n}@{v}" for n, v in sorted(self._by_key)]

    def missing(self, wanted: Iterable[tuple[str, int]]) -> list[str]:
        """``name@version`` of each wanted handler that is not registered."""
        return sorted({f"{n}@{v}" for n, v in wanted if (n, v) not in self._by_key})


_default = EffectHandlers()


def default_handlers() -> EffectHandlers:
    """The process-wide handlers ``@effect_handler`` registers into by default."""
    return _default


def effect_handler(
    name: str,
    *,
    version: int = 1,
    timeout: float = 30.0,
    max_attempts: int = 5,
    backoff: Backoff | None = None,
    registry: EffectHandlers | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the handler of effect ``name@version``.

    The request is decoded to the type of the function's first parameter when
    it is annotated, else passed as plain data.

    Example:
        >>> @effect_handler("ChargeCard", version=1, max_attempts=5)
        ... async def charge(req: ChargeCard, key: str) -> dict:
        ...     return await gateway.charge(req.order, req.amount, key=key)

    Raises:
        WorkflowDefinitionError: a bad version, timeout or attempt count.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise WorkflowDefinitionError(
            f"effect handler {name!r}: version={version!r} must be an int >= 1"
        )
    if timeout <= 0 or max_attempts < 1:
        raise WorkflowDefinitionError(
            f"effect handler {name}@{version}: timeout={timeout!r} must be > 0 "
            f"and max_attempts={max_attempts!r} >= 1"
        )
    target = registry if registry is not None else _default

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = list(inspect.signature(fn).parameters.values())
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable annotations: plain data
            hints = {}
        request_type = hints.get(params[0].name, Any) if params else Any
        target.add(
            Handler(
                name,
                version,
                fn,
                request_type,
                len(params) >= 2,
                timeout,
                max_attempts,
                backoff or Backoff(),
            )
        )
        return fn

    return wrap
