"""Several group commits in flight: within one engine, on any store that allows it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from engine import Engine
from engine.runtime.committer import GroupCommitter
from engine.store import DeadLetter, NewRecord, Tracking
from engine.store.memory import MemoryStore
from engine.store.postgres import PostgresStore
from tests.kafka import tally


class _Gate(MemoryStore):
    """A store whose appends wait until ``parties`` of them are in flight."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.writers = parties
        self.barrier = threading.Barrier(parties, timeout=10)

    def append(
        self,
        records: Sequence[NewRecord],
        *,
        tracking: Tracking | None = None,
        dead_letters: Sequence[DeadLetter] = (),
    ) -> list[int]:
        self.barrier.wait()  # BrokenBarrierError unless all are in flight at once
        return super().append(records, tracking=tracking, dead_letters=dead_letters)


async def test_a_committer_keeps_as_many_appends_in_flight_as_the_store_allows() -> (
    None
):
    store = _Gate(3)
    committer = GroupCommitter(store, max_batch=1)  # each record a full group
    assert committer.writers == 3
    callers = [
        asyncio.create_task(committer.commit([NewRecord(f"s{i}", 1, "T", b"x")]))
        for i in range(3)
    ]
    await asyncio.wait_for(asyncio.gather(*callers), 20)
    assert committer.commits == 3
    assert not committer.busy
    assert store.last_global_position() == 3


async def test_extra_slots_open_only_for_a_full_group() -> None:
    store = _Gate(2)
    committer = GroupCommitter(store, max_batch=2)
    first = asyncio.create_task(committer.commit([NewRecord("a", 1, "T", b"x")]))
    await asyncio.sleep(0)
    second = asyncio.create_task(committer.commit([NewRecord("b", 1, "T", b"x")]))
    await asyncio.sleep(0)
    assert (committer.in_flight, committer.queued) == (1, 1)  # not a full group
    third = asyncio.create_task(committer.commit([NewRecord("c", 1, "T", b"x")]))
    await asyncio.sleep(0)
    assert committer.in_flight == 2  # b and c: a full group, a second slot
    await asyncio.wait_for(asyncio.gather(first, second, third), 20)
    assert store.last_global_position() == 3
    assert committer.commits == 2


async def test_with_one_slot_the_appends_queue_behind_each_other() -> None:
    store = _Gate(2)
    committer = GroupCommitter(store, writers=1)
    first = asyncio.create_task(committer.commit([NewRecord("a", 1, "T", b"x")]))
    await asyncio.sleep(0)
    second = asyncio.create_task(committer.commit([NewRecord("b", 1, "T", b"x")]))
    done, _ = await asyncio.wait([first, second], timeout=20)
    # Two appends never met at the barrier: the first broke it, alone.
    assert first in done and first.exception() is not None
    store.barrier.reset()
    await asyncio.wait_for(committer.close(), 20)


async def test_a_cancelled_caller_in_flight_still_lands_and_close_waits() -> None:
    store = _Gate(2)
    committer = GroupCommitter(store, max_batch=1)
    first = asyncio.create_task(committer.commit([NewRecord("a", 1, "T", b"x")]))
    second = asyncio.create_task(committer.commit([NewRecord("b", 1, "T", b"x")]))
    await asyncio.sleep(0)
    assert committer.in_flight == 2
    first.cancel()
    await asyncio.wait_for(committer.close(), 20)
    await asyncio.wait_for(second, 20)
    assert store.last_global_position() == 2  # the cancelled write landed too
    assert not committer.busy


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_an_engine_on_a_concurrent_store_groups_and_loses_nothing(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url, appends="concurrent")
    async with Engine(store, tally.registry()) as engine:
        assert engine.committer.writers == 4
        ids = [f"c{i}" for i in range(64)]
        await asyncio.gather(
            *(engine.start("tally", tally.Open(), instance_id=i) for i in ids)
        )

        async def add(instance: str) -> None:
            for n in range(5):
                await engine.send(instance, tally.Add(n))

        await asyncio.gather(*(add(i) for i in ids))
        assert engine.committer.commits < 64 * 6  # grouped
        for i in ids:
            assert (await engine.get(i)).state.total == 10  # type: ignore[attr-defined]
    # Every event is in the global order, once, for any reader.
    store = PostgresStore(pg_url)
    rows = list(store.iter_all())
    assert len(rows) == len({(r.stream_id, r.position) for r in rows})
    assert sum(1 for r in rows if r.stream_id in set(ids)) == 64 * 6
    store.close()
