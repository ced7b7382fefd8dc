"""Commits in doubt: the engine reads back, tells the truth, never re-decides.

A store wrapper raises ``CommitInDoubt`` from ``append``: after committing it
(the reply was lost) or without committing (the request was lost). Either way
each caller must see its command applied exactly once, at its real position.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest

from engine import (
    CommitInDoubt,
    Engine,
    EventStore,
    InstanceInfo,
    Send,
    Start,
    Tracking,
    open_store,
)
from engine.core.codec import EventCodec
from engine.core.events import Metadata
from engine.store import NewRecord
from tests.runtime.counter import Begin, Increment, Incremented, registry


class Doubtful:
    """Wraps a store; its next ``doubts`` appends raise ``CommitInDoubt``.

    ``committed``: whether the failing append committed before raising.
    ``intruder``: instead of ours, another writer's records land first.
    ``late``: the failing append commits only after the read-back, just before
    the next append (a server that finished a transaction its client had
    already given up on).
    """

    def __init__(self, inner: EventStore, *, committed: bool, doubts: int = 1) -> None:
        self.inner = inner
        self.committed = committed
        self.doubts = doubts
        self.appends = 0
        self.intruder: list[NewRecord] | None = None
        self.late = False
        self._pending: tuple[Sequence[NewRecord], dict[str, Any]] | None = None

    def append(self, records: Sequence[NewRecord], **kwargs: Any) -> list[int]:
        self.appends += 1
        if self._pending is not None:
            late, self._pending = self._pending, None
            self.inner.append(late[0], **late[1])
        if self.doubts > 0:
            self.doubts -= 1
            if self.intruder is not None:
                self.inner.append(self.intruder)
            elif self.late:
                self._pending = (records, kwargs)
            elif self.committed:
                self.inner.append(records, **kwargs)
            raise CommitInDoubt("test://store", "connection reset after the append")
        return self.inner.append(records, **kwargs)

    def close(self) -> None:
        """The test's fixture closes the inner store."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _engine(store: Doubtful) -> Engine:
    return Engine(store, registry())  # type: ignore[arg-type]


def _plain(inner: EventStore) -> Engine:
    return _engine(Doubtful(inner, committed=False, doubts=0))


@pytest.fixture
def inner(store_url: str) -> Iterator[EventStore]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture(params=[True, False], ids=["committed", "not-committed"])
def doubtful(request: pytest.FixtureRequest, inner: EventStore) -> Doubtful:
    return Doubtful(inner, committed=request.param)


@pytest.fixture
async def engine(doubtful: Doubtful) -> AsyncIterator[Engine]:
    e = _engine(doubtful)
    yield e
    await e.close()


def _types(store: EventStore, iid: str) -> list[str]:
    return [r.type for r in store.read_stream(iid)]


async def test_start_without_command_id_is_applied_once(
    engine: Engine, doubtful: Doubtful
) -> None:
    async with asyncio.timeout(30):
        await engine.start("counter", Begin(5), instance_id="c")
        # The first append was in doubt: the caller did not get InstanceExists.
    assert doubtful.doubts == 0
    assert _types(doubtful.inner, "c") == ["nonstop.Started", "tests.counter.Begun"]
    assert (await engine.get("c")).state.n == 5


@pytest.mark.parametrize("command_id", [None, "cmd-1"])
async def test_send_is_applied_once_and_reported_applied(
    inner: EventStore, command_id: str | None
) -> None:
    for committed in (True, False):
        iid = f"s-{committed}"
        doubtful = Doubtful(inner, committed=committed, doubts=0)
        async with asyncio.timeout(30), _engine(doubtful) as engine:
            await engine.start("counter", Begin(0), instance_id=iid)
            doubtful.doubts = 1
            info = await engine.send(iid, Increment(2), command_id=command_id)
            assert (info.applied, info.position, info.state.n) == (True, 3, 2)
            assert doubtful.doubts == 0
            async with _plain(inner) as fresh:
                assert (await fresh.get(iid)).state.n == 2
        assert _types(inner, iid).count("tests.counter.Incremented") == 1
        if command_id is not None:  # a repeat is still answered, not applied
            async with _plain(inner) as again:
                info = await again.send(iid, Increment(2), command_id=command_id)
            assert (info.applied, info.position) == (False, 3)


async def test_handle_batch_with_tracking_is_applied_once(
    engine: Engine, doubtful: Doubtful
) -> None:
    async with asyncio.timeout(30):
        results = await engine.handle_batch(
            [
                Start("counter", Begin(1), instance_id="b1"),
                Start("counter", Begin(2), instance_id="b2"),
                Send("b1", Increment(3)),
            ],
            tracking=Tracking("partition-0", 7),
        )
    assert all(isinstance(r, InstanceInfo) and r.applied for r in results)
    assert [r.position for r in results] == [2, 2, 3]  # type: ignore[union-attr]
    assert doubtful.inner.tracking_position("partition-0") == 7
    assert len(doubtful.inner.read_stream("b1")) == 3
    assert len(doubtful.inner.read_stream("b2")) == 2


async def test_a_group_of_concurrent_callers_is_applied_once_each(
    engine: Engine, doubtful: Doubtful
) -> None:
    ids = [f"g{i}" for i in range(12)]
    async with asyncio.timeout(30):
        await asyncio.gather(
            *(engine.start("counter", Begin(0), instance_id=i) for i in ids)
        )
        doubtful.doubts = 2  # the lone write and the group write after it
        infos = await asyncio.gather(*(engine.send(i, Increment(1)) for i in ids))
    assert all(i.applied and i.position == 3 and i.state.n == 1 for i in infos)
    for iid in ids:
        assert len(doubtful.inner.read_stream(iid)) == 3


async def test_another_writers_records_take_the_normal_conflict_path(
    inner: EventStore,
) -> None:
    doubtful = Doubtful(inner, committed=False, doubts=0)
    async with asyncio.timeout(30), _engine(doubtful) as engine:
        await engine.start("counter", Begin(0), instance_id="x")
        name, data = EventCodec().encode(
            Incremented(10), Metadata("counter@1"), recorded_at=1
        )
        doubtful.intruder = [NewRecord("x", 3, name, data)]
        doubtful.doubts = 1
        info = await engine.send("x", Increment(1))
    # Decided again on top of the other writer's event: both count.
    assert (info.applied, info.position, info.state.n) == (True, 4, 11)
    assert len(inner.read_stream("x")) == 4


async def test_a_doubt_that_lasts_reaches_the_caller(inner: EventStore) -> None:
    doubtful = Doubtful(inner, committed=False, doubts=0)
    async with asyncio.timeout(30), _engine(doubtful) as engine:
        await engine.start("counter", Begin(0), instance_id="y")
        doubtful.doubts = 100
        with pytest.raises(CommitInDoubt):
            await engine.send("y", Increment(1))
    assert len(inner.read_stream("y")) == 2


async def test_a_hundred_doubts_per_entry_point_never_apply_twice() -> None:
    inner = open_store("memory://")
    doubtful = Doubtful(inner, committed=False, doubts=0)
    async with asyncio.timeout(60), _engine(doubtful) as engine:
        for i in range(100):
            doubtful.committed = i % 2 == 0
            doubtful.doubts = 1
            await engine.start("counter", Begin(0), instance_id=f"s{i}")
            doubtful.doubts = 1
            info = await engine.send(f"s{i}", Increment(1))
            assert (info.applied, info.position) == (True, 3)
            doubtful.doubts = 1
            (batched,) = await engine.handle_batch(
                [Send(f"s{i}", Increment(1))], tracking=Tracking("t", i + 1)
            )
            assert isinstance(batched, InstanceInfo) and batched.position == 4
    for i in range(100):
        assert len(inner.read_stream(f"s{i}")) == 4
    assert inner.tracking_position("t") == 100
    inner.close()


@pytest.mark.parametrize("command_id", [None, "cmd-1"])
async def test_an_append_that_commits_after_the_read_back_is_applied_once(
    inner: EventStore, command_id: str | None
) -> None:
    """Read back as absent, then committed by the server: the retry's conflict
    is our own records, so the caller is told applied, once, at its position."""
    doubtful = Doubtful(inner, committed=False, doubts=0)
    async with asyncio.timeout(30), _engine(doubtful) as engine:
        doubtful.late, doubtful.doubts = True, 1
        info = await engine.start(
            "counter", Begin(1), instance_id="late-start", command_id=command_id
        )
        assert (info.applied, info.position) == (True, 2)
        await engine.start("counter", Begin(0), instance_id="late")
        doubtful.late, doubtful.doubts = True, 1
        info = await engine.send("late", Increment(2), command_id=command_id)
        assert (info.applied, info.position, info.state.n) == (True, 3, 2)
    assert doubtful.appends >= 4  # each doubtful append was retried
    assert _types(inner, "late-start") == ["nonstop.Started", "tests.counter.Begun"]
    assert _types(inner, "late").count("tests.counter.Incremented") == 1
