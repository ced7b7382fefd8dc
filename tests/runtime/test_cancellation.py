"""Cancel ``start``, ``send``, ``handle_batch`` and ``close`` at every await point.

A store wrapper blocks one chosen call on an event the test controls. The test
cancels the caller there, lets the call go on, and checks that no lock entry,
user count or write is left behind and that a later ``get`` does not hang. A
write the caller was waiting for is the engine's: it completes, and ``close``
waits for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from engine import Engine, EventStore, Send, Start, open_store
from tests.runtime.counter import Begin, Increment, registry


class Gated:
    """A memory store whose next call named ``gate`` blocks until ``release``."""

    def __init__(self) -> None:
        self.inner: EventStore = open_store("memory://")
        self.gate: str | None = None
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[str] = []

    def _pass(self, name: str) -> None:
        if self.gate == name:
            self.gate = None
            self.entered.set()
            assert self.release.wait(20), "the test never released the gate"

    def append(self, *args: Any, **kwargs: Any) -> Any:
        self._pass("append")
        out = self.inner.append(*args, **kwargs)
        self.calls.append("append")
        return out

    def read_stream(self, *args: Any, **kwargs: Any) -> Any:
        self._pass("read_stream")
        return self.inner.read_stream(*args, **kwargs)

    def stream_position(self, *args: Any, **kwargs: Any) -> Any:
        self._pass("stream_position")
        return self.inner.stream_position(*args, **kwargs)

    def close(self) -> None:
        self.calls.append("close")
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
async def setup() -> AsyncIterator[tuple[Engine, Gated]]:
    store = Gated()
    engine = Engine(store, registry())  # type: ignore[arg-type]
    async with asyncio.timeout(20):
        await engine.start("counter", Begin(0), instance_id="a")
        await engine.start("counter", Begin(0), instance_id="b")
    engine.loader.cache.clear()  # cold: the next command loads
    yield engine, store
    store.release.set()
    async with asyncio.timeout(20):
        await engine.close()


Op = Callable[[Engine], Awaitable[Any]]
OPS: dict[str, tuple[Op, str]] = {
    # name: (the call, the instance whose lock it takes last)
    "start": (lambda e: e.start("counter", Begin(1), instance_id="n"), "n"),
    "send": (lambda e: e.send("a", Increment(1)), "a"),
    "handle_batch": (
        lambda e: e.handle_batch(
            [Send("a", Increment(1)), Start("counter", Begin(1), instance_id="b2")]
        ),
        "b2",
    ),
}
POINTS = {
    "start": ["lock", "append"],
    "send": ["lock", "read_stream", "append"],
    "handle_batch": ["lock", "read_stream", "stream_position", "append"],
}
CASES = [(op, point) for op, points in POINTS.items() for point in points]


async def _until(cond: Callable[[], bool]) -> None:
    while not cond():
        await asyncio.sleep(0)


def _written(store: Gated, op: str) -> bool:
    iid = {"start": "n", "send": "a", "handle_batch": "a"}[op]
    return len(store.inner.read_stream(iid)) > (0 if op == "start" else 2)


@pytest.mark.parametrize(("op", "point"), CASES)
async def test_cancel_leaks_no_lock_count_or_write(
    setup: tuple[Engine, Gated], op: str, point: str
) -> None:
    engine, store = setup
    call, last_lock = OPS[op]
    async with asyncio.timeout(20):
        if point == "lock":
            await engine.locks.acquire(last_lock)  # someone else holds it
            task = asyncio.ensure_future(call(engine))
            await _until(lambda: engine.locks.users(last_lock) == 2)
        else:
            store.gate = point
            task = asyncio.ensure_future(call(engine))
            await asyncio.to_thread(store.entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if point == "lock":
            # Only the holder is left: the cancelled caller freed every lock
            # it had taken (handle_batch held "a" while waiting for the last).
            assert engine.locks.users(last_lock) == 1
            assert len(engine.locks) == 1
            engine.locks.release(last_lock)
        assert len(engine.locks) == 0
        closing = asyncio.ensure_future(engine.close())
        if point == "append":
            # The write is the engine's: close waits for it to finish.
            await asyncio.sleep(0)
            assert not closing.done()
            assert "close" not in store.calls
        store.release.set()
        await closing
        assert store.calls[-1] == "close"
        assert not engine.committer.busy
        assert _written(store, op) is (point == "append")
        assert len(engine.locks) == 0


async def test_a_later_get_does_not_hang_after_a_cancelled_batch(
    setup: tuple[Engine, Gated],
) -> None:
    engine, _store = setup
    async with asyncio.timeout(20):
        await engine.locks.acquire("b")
        task = asyncio.ensure_future(
            engine.handle_batch([Send("a", Increment(1)), Send("b", Increment(1))])
        )
        await _until(lambda: engine.locks.users("b") == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.locks.users("a") == 0
        assert (await engine.get("a")).position == 2  # "a" was freed
        engine.locks.release("b")
        assert (await engine.get("b")).position == 2


async def test_a_cancelled_close_leaves_the_write_running_and_can_be_repeated(
    setup: tuple[Engine, Gated],
) -> None:
    engine, store = setup
    async with asyncio.timeout(20):
        store.gate = "append"
        send = asyncio.ensure_future(engine.send("a", Increment(5)))
        await asyncio.to_thread(store.entered.wait, 10)
        closing = asyncio.ensure_future(engine.close())
        await asyncio.sleep(0)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert "close" not in store.calls
        store.release.set()
        assert (await send).state.n == 5
        await engine.close()
        assert store.calls[-2:] == ["append", "close"]
