"""The effect runner and the timer service: the outbox delivered after commit.

Each round claims due outbox rows (a lease: a runner that dies holding rows
leaves them to the next claim once the lease runs out), delivers them, sends
the outcome to each instance as a command through :meth:`Engine.handle_batch`
(one transaction per round), and only then marks the rows finished.

- An effect's handler runs at least once per request, under a timeout and the
  tenacity policy of :func:`engine.store.retry.attempts`, always with the same
  idempotency key. Its result is sent as
  :class:`~engine.core.effects.EffectCompleted` (or
  :class:`~engine.core.effects.EffectFailed` once the attempts are spent) with
  the command id :func:`~engine.core.effects.effect_command_id`: a second
  delivery after a crash is answered from the instance's command ids, never
  recorded twice.
- A timer's command is sent with the command id
  :func:`~engine.core.effects.timer_command_id`: it is recorded once.

The instance is pinned to the version that asked, so an outcome is decided by
that version's logic whatever version is current.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from engine.core.effects import (
    EffectCompleted,
    EffectFailed,
    effect_command_id,
    timer_command_id,
)
from engine.core.errors import NonstopError, StoreUnavailable
from engine.runtime.handlers import (
    Clock,
    EffectHandlers,
    Handler,
    SystemClock,
    default_handlers,
)
from engine.runtime.requests import Send
from engine.store.outbox import Entry, Outbox, OutboxStatus
from engine.store.retry import attempts

if TYPE_CHECKING:
    from engine.runtime.engine import Engine

__all__ = ["EffectRunner", "Effects", "Settings", "TimerService"]

log = logging.getLogger("nonstop.effects")
Outcome = tuple[str, OutboxStatus, int, str | None]


@dataclass(frozen=True)
class Settings:
    """How the runner and the timer service work."""

    batch: int = 500
    """Most rows one round claims."""
    lease: float = 30.0
    """Seconds a claim holds its rows (longer than a round's handlers take)."""
    poll: float = 0.05
    """Seconds between rounds that found nothing."""
    rounds: int = 2
    """Rounds :meth:`run` keeps in flight at once (their claims never overlap):
    one claims and runs handlers while another records its outcomes."""


class _Deliverer:
    """What the runner and the timer service share: claim, send, finish."""

    kind: Any = None

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        settings: Settings = Settings(),
    ) -> None:
        self.engine = engine
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.settings = settings
        self.delivered = 0
        """Rows finished by this process."""
        self._outbox: Outbox = engine.store.outbox()

    async def run_once(self) -> int:
        """One round; returns how many rows it finished."""
        s = self.settings
        claimed = await asyncio.to_thread(
            self._outbox.claim,
            self.kind,
            now=self.clock.now(),
            lease=int(s.lease * 1e6),
            limit=s.batch,
        )
        if not claimed:
            return 0
        outcomes = await self._deliver(claimed)
        done = await asyncio.to_thread(self._outbox.finish, outcomes, self.clock.now())
        self.delivered += done
        return len(outcomes)

    async def _deliver(self, rows: list[Entry]) -> list[Outcome]:
        raise NotImplementedError

    async def _send(
        self, sends: Sequence[Send], statuses: list[Outcome]
    ) -> list[Outcome]:
        """Send the commands in one transaction; note each command's fate."""
        if not sends:
            return statuses
        results = await self.engine.handle_batch(sends)
        out = []
        for (i, status, n, note), res in zip(statuses, results, strict=True):
            if isinstance(res, NonstopError):
                note = f"{note + '; ' if note else ''}not recorded: {res}"
            out.append((i, status, n, note))
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop`` is set (rounds in progress finish first)."""
        await asyncio.gather(
            *(self._rounds(stop) for _ in range(max(1, self.settings.rounds)))
        )

    async def _rounds(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                found = await self.run_once()
            except StoreUnavailable as exc:
                log.warning("%s round failed: %s", self.kind, exc)
                found = 0
            except Exception:
                # Rows of a failed round stay leased and come back when the
                # lease runs out; the service itself keeps going.
                log.exception("%s round failed", self.kind)
                found = 0
            if found:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.poll)


class EffectRunner(_Deliverer):
    """Runs the handlers of due effect requests and records their outcomes.

    Args:
        engine: The engine whose store holds the outbox and that records results.
        handlers: The handlers (the ``@effect_handler`` default registry).
        clock: The time source.
        settings: Batch, lease and poll interval.
    """

    kind = "effect"

    def __init__(
        self,
        engine: Engine,
        handlers: EffectHandlers | None = None,
        *,
        clock: Clock | None = None,
        settings: Settings = Settings(),
    ) -> None:
        super().__init__(engine, clock=clock, settings=settings)
        self.handlers = handlers if handlers is not None else default_handlers()

    async def _deliver(self, rows: list[Entry]) -> list[Outcome]:
        ready = []
        for e in rows:
            handler = self.handlers.get(e.item.name, e.item.version)
            if handler is None:
                # Left pending: reported by `nonstop versions`, due again
                # when the lease runs out (once a handler is deployed).
                log.warning(
                    "no handler for effect %s@%s (%s)",
                    e.item.name,
                    e.item.version,
                    e.id,
                )
                continue
            ready.append((e, handler))
        calls = [self._call(e, h) for e, h in ready]
        done = await asyncio.gather(*calls)
        sends: list[Send] = []
        statuses: list[Outcome] = []
        for (e, _), (result, error, n) in zip(ready, done, strict=True):
            command: Any
            if error is None:
                command = EffectCompleted(e.id, e.item.name, result)
                statuses.append((e.id, "done", n, None))
            else:
                command = EffectFailed(e.id, e.item.name, error, n)
                statuses.append((e.id, "failed", n, error))
            sends.append(
                Send(e.item.stream_id, command, command_id=effect_command_id(e.id))
            )
        return await self._send(sends, statuses)

    async def _call(self, e: Entry, h: Handler) -> tuple[Any, str | None, int]:
        """Run ``h`` for ``e`` under its policy: (result, error, attempts)."""
        try:
            request = msgspec.msgpack.decode(e.item.payload, type=h.request_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return None, f"undecodable request: {exc}", 0
        args = (request, e.id) if h.takes_key else (request,)

        async def once() -> Any:
            async with asyncio.timeout(h.timeout):  # no task per call
                if h.is_async:
                    return await h.fn(*args)
                return await asyncio.to_thread(h.fn, *args)

        outcome = await attempts(
            once, max_attempts=h.max_attempts, backoff=h.backoff, what=e.id
        )
        failure = outcome.error
        if failure is not None:
            reason = f"{type(failure).__name__}: {failure}"
            return None, reason, outcome.attempts
        try:
            msgspec.msgpack.encode(outcome.value)
        except (TypeError, ValueError) as exc:
            return None, f"the result cannot be stored: {exc}", outcome.attempts
        return outcome.value, None, outcome.attempts


class TimerService(_Deliverer):
    """Sends the commands of due timers to their instances.

    Args:
        engine: The engine whose store holds the outbox and that sends commands.
        clock: The time source (a :class:`ManualClock` in tests).
        settings: Batch, lease and poll interval.
    """

    kind = "timer"

    async def _deliver(self, rows: list[Entry]) -> list[Outcome]:
        sends: list[Send] = []
        statuses: list[Outcome] = []
        failed: list[Outcome] = []
        for e in rows:
            try:
                command = msgspec.msgpack.decode(
                    e.item.payload, type=_resolve(e.item.name)
                )
            except Exception as exc:  # an unimportable or changed command type
                failed.append((e.id, "failed", 1, f"{type(exc).__name__}: {exc}"))
                continue
            sends.append(
                Send(e.item.stream_id, command, command_id=timer_command_id(e.id))
            )
            statuses.append((e.id, "done", 1, None))
        return [*failed, *await self._send(sends, statuses)]


@functools.lru_cache(maxsize=256)
def _resolve(path: str) -> Any:
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class Effects:
    """The runner and the timer service of one engine, as background tasks.

    Args:
        engine: The engine.
        handlers: Effect handlers (the default registry when omitted).
        clock: The time source.
        settings: Batch, lease and poll interval.
    """

    def __init__(
        self,
        engine: Engine,
        handlers: EffectHandlers | None = None,
        *,
        clock: Clock | None = None,
        settings: Settings = Settings(),
    ) -> None:
        self.runner = EffectRunner(engine, handlers, clock=clock, settings=settings)
        """Runs effect handlers."""
        self.timers = TimerService(engine, clock=clock, settings=settings)
        """Fires timers."""
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start both loops in the running event loop (once)."""
        if self._tasks:
            return
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self.runner.run(self._stop)),
            asyncio.create_task(self.timers.run(self._stop)),
        ]

    @property
    def running(self) -> bool:
        """Whether the loops were started and not stopped."""
        return bool(self._tasks)

    async def stop(self) -> None:
        """Let the rounds in progress finish (handlers in flight), then stop.

        Cancelling it cancels the loops.
        """
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            raise
