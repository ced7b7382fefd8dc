"""Batched reads: get_many, concurrent cold gets grouped, paged listings."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine, SyncEngine, WorkflowRegistry, open_store
from engine.core.errors import InvalidPage, UnknownInstance
from engine.store import RecordRow
from engine.store.memory import MemoryStore
from tests.runtime.counter import Begin, Finish, Increment, registry


class CountingStore(MemoryStore):
    """A memory store that counts its batched and single-stream reads."""

    def __init__(self) -> None:
        super().__init__()
        self.batched: list[list[str]] = []
        self.single = 0
        """Single-stream reads outside a batched read."""
        self._inside = False

    def iter_streams(
        self, stream_ids: Sequence[str], *, upto: int | None = None
    ) -> Iterator[Sequence[RecordRow]]:
        self.batched.append(list(stream_ids))
        self._inside = True  # the memory store reads each stream for a batch
        try:
            yield from super().iter_streams(stream_ids, upto=upto)
        finally:
            self._inside = False

    def read_stream(self, stream_id: str, *, after: int = 0, limit: int | None = None):  # type: ignore[no-untyped-def]
        self.single += not self._inside
        return super().read_stream(stream_id, after=after, limit=limit)


async def _fill(engine: Engine, n: int, *, finish: Collection[int] = ()) -> list[str]:
    ids = [f"c-{i}" for i in range(n)]
    for i, iid in enumerate(ids):
        await engine.start("counter", Begin(i), instance_id=iid)
        await engine.send(iid, Increment(i + 1))
        if i in finish:
            await engine.send(iid, Finish())
    return ids


_instances = st.integers(min_value=0, max_value=12)
_asked = st.lists(st.integers(min_value=-3, max_value=15), max_size=20)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_instances, _asked)
async def test_get_many_equals_get_for_each_id_and_leaves_out_missing(
    n: int, asked: list[int]
) -> None:
    """Law: get_many(ids)[i] == get(i) for every stored i; missing ids are left out."""
    store = open_store("memory://")
    async with Engine(store, registry()) as e:
        await _fill(e, n, finish={0, 3})
        ids = [f"c-{i}" for i in asked]
        got = await e.get_many(ids)
        assert list(got) == [i for i in dict.fromkeys(ids) if int(i[2:]) in range(n)]
        fresh = Engine(store, registry())  # a cold cache for get
        try:
            for iid in dict.fromkeys(ids):
                if iid in got:
                    assert got[iid] == await fresh.get(iid)
                else:
                    with pytest.raises(UnknownInstance):
                        await fresh.get(iid)
        finally:
            await fresh.close()


async def test_concurrent_cold_gets_are_one_batched_read() -> None:
    store = CountingStore()
    async with Engine(store, registry()) as e:
        ids = await _fill(e, 40)
    store.batched.clear()
    store.single = 0
    async with Engine(store, registry()) as cold:
        got = await asyncio.gather(*(cold.get(i) for i in ids))
        assert [g.instance_id for g in got] == ids
        assert [g.state.n for g in got] == [2 * i + 1 for i in range(40)]
        assert cold.loader.batcher.reads == 1
        assert len(store.batched) == 1 and sorted(store.batched[0]) == sorted(ids)
        assert store.single == 0
        # Warm now: answered from the cache, caught up one by one.
        again = await asyncio.gather(*(cold.get(i) for i in ids[:3]))
        assert again == got[:3]
        assert cold.loader.batcher.reads == 1


async def test_a_missing_id_fails_only_its_own_get() -> None:
    store = CountingStore()
    async with Engine(store, registry()) as e:
        await _fill(e, 3)
    async with Engine(store, registry()) as cold:
        got = await asyncio.gather(
            cold.get("c-0"), cold.get("nope"), cold.get("c-2"), return_exceptions=True
        )
        assert isinstance(got[1], UnknownInstance) and "nope" in str(got[1])
        assert [g.instance_id for g in (got[0], got[2])] == ["c-0", "c-2"]
        assert cold.loader.batcher.reads == 1


async def test_concurrent_cold_gets_equal_single_gets(durable_url: str) -> None:
    async with Engine(durable_url, registry()) as e:
        ids = await _fill(e, 30, finish={4, 7})
    async with Engine(durable_url, registry()) as cold:
        grouped = await asyncio.gather(*(cold.get(i) for i in ids))
        assert cold.loader.batcher.reads < len(ids)
        many = await cold.get_many([*ids, "missing"])
    for iid, info in zip(ids, grouped, strict=True):
        async with Engine(durable_url, registry()) as one:
            assert info == await one.get(iid) == many[iid]
    assert "missing" not in many


@pytest.mark.parametrize("snapshot_every", [0, 100])
async def test_long_streams_read_by_their_heads_then_on(
    durable_url: str, snapshot_every: int
) -> None:
    """Batched reads take 256 events of each stream and read on the longer ones."""
    from bench.counter import encoded_stream, workflow
    from bench.counter import registry as bench_registry

    reg = WorkflowRegistry()
    reg.register(dataclasses.replace(workflow, snapshot_every=snapshot_every))
    lengths = {"short": 10, "exact": 256, "over": 257, "long": 700}
    with open_store(durable_url) as store:
        for sid, n in lengths.items():
            store.append(encoded_stream(sid, n))
    if snapshot_every:  # snapshots written by a first engine, read by the next
        async with Engine(durable_url, reg) as e:
            for sid in lengths:
                await e.write_snapshot(sid)
    async with Engine(durable_url, reg) as e:
        many = await e.get_many([*lengths, "missing"])
        grouped = await asyncio.gather(*(e.get(sid) for sid in lengths))
        assert e.loader.batcher.reads == 1
    async with Engine(durable_url, bench_registry()) as lone:
        for sid, info in zip(lengths, grouped, strict=True):
            one = await lone.get(sid)
            assert info.position == many[sid].position == one.position == lengths[sid]
            assert info.state == many[sid].state == one.state
    assert "missing" not in many


async def test_a_cancelled_waiting_get_leaks_nothing() -> None:
    store = CountingStore()
    async with Engine(store, registry()) as e:
        ids = await _fill(e, 5)
    async with Engine(store, registry()) as cold:
        batcher = cold.loader.batcher
        tasks = [asyncio.create_task(cold.get(i)) for i in ids]
        # Let every task reach its wait on the batcher, then cancel one.
        for _ in range(3):
            if batcher.waiting == len(ids):
                break
            await asyncio.sleep(0)
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[1], asyncio.CancelledError)
        assert [d.instance_id for d in done if not isinstance(d, BaseException)] == [
            i for k, i in enumerate(ids) if k != 1
        ]
        assert batcher.waiting == 0 and len(cold.locks) == 0
        assert cold.loader.cached(ids[1]) is None
        # All waiters cancelled before the read: nothing is read, nothing waits.
        reads = batcher.reads
        cold.loader.forget(ids[0])
        lone = asyncio.create_task(cold.get(ids[0]))
        await asyncio.sleep(0)
        lone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await lone
        await batcher.close()
        assert batcher.reads == reads and batcher.waiting == 0
        assert cold.loader.cached(ids[0]) is None and len(cold.locks) == 0


_statuses = st.lists(st.booleans(), max_size=25)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    _statuses,
    st.integers(min_value=1, max_value=7),
    st.sampled_from([None, "running", "completed"]),
)
async def test_pages_list_every_instance_exactly_once(
    finished: list[bool], limit: int, status: str | None
) -> None:
    """Law: the pages, read cursor to cursor, are the listing, each once, in order."""
    store = open_store("memory://")
    async with Engine(store, registry()) as e:
        await _fill(e, len(finished), finish={i for i, f in enumerate(finished) if f})
        seen: list[str] = []
        after: int | None = 0
        while after is not None:
            page = await e.instances_page(status=status, after=after, limit=limit)  # type: ignore[arg-type]
            assert len(page.instances) <= limit
            seen.extend(i.instance_id for i in page.instances)
            after = page.cursor
        expected = [
            f"c-{i}"
            for i, f in enumerate(finished)
            if status is None or (status == "completed") == f
        ]
        assert seen == expected
        listed = await e.instances(status=status)  # type: ignore[arg-type]
        assert [i.instance_id for i in listed] == expected
        pages = [p async for p in e.iter_instances(status=status, page=limit)]  # type: ignore[arg-type]
        assert [i.instance_id for p in pages for i in p] == expected


async def test_a_bad_page_is_refused_by_value() -> None:
    async with Engine("memory://", registry()) as e:
        with pytest.raises(InvalidPage, match="got 0"):
            await e.instances_page(limit=0)
        with pytest.raises(InvalidPage, match="got -1"):
            await e.instances_page(after=-1)


def test_the_sync_twin_reads_many_and_pages(tmp_path: object) -> None:
    with SyncEngine("memory://", registry()) as e:
        for i in range(3):
            e.start("counter", Begin(i), instance_id=f"s-{i}")
        assert set(e.get_many(["s-0", "s-2", "x"])) == {"s-0", "s-2"}
        first = e.instances_page(limit=2)
        assert [i.instance_id for i in first.instances] == ["s-0", "s-1"]
        assert first.cursor is not None
        rest = e.instances_page(after=first.cursor, limit=2)
        assert [i.instance_id for i in rest.instances] == ["s-2"]
        assert rest.cursor is None
