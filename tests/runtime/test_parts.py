"""Each part of the runtime, alone: locks, committer, decider, loader."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec
import pytest

from engine import CommandRejected, ConcurrencyConflict, EventStore, open_store
from engine.core.codec import EventCodec
from engine.core.events import Envelope
from engine.core.replay import Instance
from engine.runtime.committer import GroupCommitter
from engine.runtime.decider import Decider
from engine.runtime.loader import InstanceLoader
from engine.runtime.locks import InstanceLocks
from engine.runtime.requests import Send, Start
from tests.runtime.counter import Begin, Count, Increment, registry
from upcasters import UpcasterRegistry

_header = msgspec.msgpack.Decoder(Envelope[msgspec.Raw])


@pytest.fixture
def store() -> Iterator[EventStore]:
    s = open_store("memory://")
    yield s
    s.close()


def _decider() -> Decider:
    return Decider(registry(), EventCodec(), None)


# ------------------------------------------------------------------- locks


async def test_locks_serialise_one_instance_and_free_their_entry() -> None:
    locks = InstanceLocks()
    order: list[str] = []

    async def work(name: str, gate: asyncio.Event | None) -> None:
        async with locks.hold("i"):
            order.append(f"{name}+")
            if gate is not None:
                await gate.wait()
            order.append(f"{name}-")

    async with asyncio.timeout(10):
        gate = asyncio.Event()
        first = asyncio.ensure_future(work("a", gate))
        second = asyncio.ensure_future(work("b", None))
        while locks.users("i") < 2:
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, second)
    assert order == ["a+", "a-", "b+", "b-"]
    assert len(locks) == 0


async def test_hold_all_frees_what_it_took_when_cancelled() -> None:
    locks = InstanceLocks()
    async with asyncio.timeout(10):
        await locks.acquire("b")

        async def both() -> None:
            async with locks.hold_all(["b", "a"]):
                pass

        task = asyncio.ensure_future(both())
        while locks.users("b") < 2:
            await asyncio.sleep(0)
        assert locks.users("a") == 1  # taken first (sorted order)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (locks.users("a"), locks.users("b")) == (0, 1)
        locks.release("b")
    assert len(locks) == 0


# --------------------------------------------------------------- committer


async def test_committer_groups_concurrent_callers(store: EventStore) -> None:
    committer = GroupCommitter(store)
    decider = _decider()
    batches = [decider.start(Start("counter", Begin(i), f"i{i}"))[1] for i in range(20)]
    async with asyncio.timeout(10):
        await asyncio.gather(*(committer.commit(b) for b in batches))
        await committer.close()
    assert committer.commits < 20  # the lone write, then groups
    assert all(store.stream_position(f"i{i}") == 2 for i in range(20))
    assert not committer.busy


async def test_committer_reports_a_conflict_to_the_loser_only(
    store: EventStore,
) -> None:
    committer = GroupCommitter(store)
    decider = _decider()
    _, mine = decider.start(Start("counter", Begin(1), "x"))
    _, theirs = decider.start(Start("counter", Begin(2), "x"))
    async with asyncio.timeout(10):
        await committer.commit(mine)
        with pytest.raises(ConcurrencyConflict):
            await committer.commit(theirs)
    assert store.stream_position("x") == 2


# ----------------------------------------------------------------- decider


def test_decider_puts_the_key_on_the_first_record_only() -> None:
    decider = _decider()
    inst, records = decider.start(Start("counter", Begin(1), "k"))
    heads = [_header.decode(r.data) for r in records]
    assert heads[0].key is not None and len(heads[0].key) == 32
    assert [h.key for h in heads[1:]] == [None]
    assert [r.position for r in records] == [1, 2]
    assert inst.commands == {}  # a generated key is not a command id
    outcome = decider.send(inst, Send("k", Increment(1), command_id="c1"))
    assert not isinstance(outcome, type(inst.info("k")))
    after, (record,) = outcome
    head = _header.decode(record.data)
    assert (head.key, head.command_id) == (None, "c1")  # the caller's id is the key
    assert after.commands == {"c1": 3}
    assert decider.send(after, Send("k", Increment(1), command_id="c1")) == after.info(
        "k", applied=False
    )


def test_decider_rejections_name_the_instance() -> None:
    inst = Instance(registry().get("counter"), Count(), 1)
    with pytest.raises(CommandRejected, match="by instance 'r'"):
        _decider().send(inst, Send("r", Increment(-1)))


# ------------------------------------------------------------------ loader


async def test_loader_caches_folds_and_evicts(store: EventStore) -> None:
    decider = _decider()
    for i in range(3):
        store.append(decider.start(Start("counter", Begin(i), f"l{i}"))[1])
    loader = InstanceLoader(
        store, registry(), EventCodec(), UpcasterRegistry(), cache_size=2
    )
    async with asyncio.timeout(10):
        for i in range(3):
            assert (await loader.load(f"l{i}")).state.n == i
    assert list(loader.cache) == ["l1", "l2"]  # the oldest left
    inst = loader.cached("l2")
    assert inst is not None
    _, more = decider.send(inst, Send("l2", Increment(5)))  # type: ignore[misc]
    store.append(more)
    assert loader.catch_up("l2", inst).state.n == 7
    assert loader.load_many_sync(["l0", "l2", "nope"]).keys() == {"l0", "l2"}
    await loader.close()
