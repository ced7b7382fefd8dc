"""The one retry layer (built on ``tenacity``): bounded for calls, stoppable for loops.

Two uses, one policy shape (exponential backoff with jitter):

- :func:`call` retries an idempotent store read for at most
  :data:`READ_BUDGET` seconds after its first failure. Every attempt is itself
  bounded by the store's connect, pool and statement timeouts, so a read
  raises :class:`~engine.core.errors.StoreUnavailable` within about 10 s of an
  outage (see ``docs/operations.md``).
- :func:`attempts` runs an effect handler up to a number of attempts (the
  effect runner's policy, :mod:`engine.runtime.effects`).
- :func:`until_stopped` retries a daemon's round (the Kafka worker, the
  publisher, the projections runner) until it succeeds or the daemon is asked
  to stop, waiting at most ``longest`` seconds between attempts.

:class:`~engine.core.errors.CommitInDoubt` is never retried: re-running an append
that may have committed would apply it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from engine.core.errors import CommitInDoubt, StoreUnavailable

__all__ = ["READ_BUDGET", "Backoff", "Outcome", "attempts", "call", "until_stopped"]

T = TypeVar("T")
log = logging.getLogger("nonstop.store")

READ_BUDGET = 3.0
"""Seconds after a read's first failure during which it is retried."""


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``first``, doubling up to ``longest``, with jitter."""

    first: float = 0.05
    """The first wait, seconds."""
    longest: float = 2.0
    """The longest wait, seconds."""

    def wait(self) -> tenacity.wait.wait_base:
        """The tenacity wait strategy of this backoff."""
        return tenacity.wait_random_exponential(multiplier=self.first, max=self.longest)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, StoreUnavailable) and not isinstance(exc, CommitInDoubt)


def call(
    fn: Callable[[], T], *, budget: float = READ_BUDGET, backoff: Backoff = Backoff()
) -> T:
    """``fn()``, retried on ``StoreUnavailable`` for at most ``budget`` seconds.

    Raises:
        StoreUnavailable: the last failure, once the budget is spent.
        CommitInDoubt: at once (never retried).
    """
    try:
        return fn()  # the common case: no retry machinery built at all
    except StoreUnavailable as exc:
        if not _retryable(exc):
            raise
        log.debug("retrying for up to %.1f s: %s", budget, exc)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_retryable),
        stop=tenacity.stop_after_delay(budget),
        wait=backoff.wait(),
        reraise=True,
    )
    return retrying(fn)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a bounded job ended."""

    value: object
    """What the job returned (None when it failed)."""
    error: BaseException | None
    """The last failure, None on success."""
    attempts: int
    """How many times the job ran."""


async def attempts(
    job: Callable[[], Awaitable[object]],
    *,
    max_attempts: int,
    backoff: Backoff = Backoff(),
    what: str = "job",
) -> Outcome:
    """Await ``job()`` until it returns, at most ``max_attempts`` times.

    Any ``Exception`` is worth another attempt; cancellation propagates at once.

    Returns:
        The value, or the last error once the attempts are spent.
    """
    try:
        return Outcome(await job(), None, 1)  # the common case: no machinery built
    except Exception as exc:
        if max_attempts <= 1:
            return Outcome(None, exc, 1)
        log.debug("%s: attempt 1 failed: %r", what, exc)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.debug("%s: attempt %d failed: %r", what, state.attempt_number + 1, exc)

    wait = backoff.wait()
    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(Exception),
        stop=tenacity.stop_after_attempt(max_attempts - 1),
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )
    n = 1
    try:
        # The wait after the first attempt, then the retries (tenacity's waits).
        await asyncio.sleep(wait(tenacity.RetryCallState(retrying, None, (), {})))
        async for attempt in retrying:
            with attempt:
                n = attempt.retry_state.attempt_number + 1
                return Outcome(await job(), None, n)
    except Exception as exc:
        return Outcome(None, exc, n)
    raise AssertionError("unreachable")  # pragma: no cover


async def until_stopped(
    job: Callable[[], Awaitable[T]],
    *,
    transient: tuple[type[BaseException], ...],
    what: str,
    stop: asyncio.Event | None = None,
    backoff: Backoff = Backoff(),
    on_retry: Callable[[BaseException], None] | None = None,
) -> T | None:
    """Await ``job()`` until it succeeds, retrying ``transient`` failures.

    Args:
        job: One attempt (each attempt calls it again).
        transient: Failures worth another attempt; anything else propagates.
        what: What is being done, for the log.
        stop: When set, stop retrying (the wait is cut short) and return None.
        backoff: The waits between attempts.
        on_retry: Called with each failure before its wait.

    Returns:
        The job's result, or None when stopped first.
    """
    stopping = stop if stop is not None else asyncio.Event()

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is None:
            return
        if on_retry is not None:
            on_retry(exc)
        wait = state.upcoming_sleep
        log.warning("%s: %s; retrying in %.2f s", what, exc, wait)

    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(transient),
        stop=lambda _: stopping.is_set(),
        wait=backoff.wait(),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                if stopping.is_set():
                    return None
                return await job()
    except transient:
        if stopping.is_set():
            return None
        raise
    return None  # pragma: no cover - the loop always returns or raises
