"""The batch path under the worker: partitions overlap, failed commits leave no trace.

- A partition whose commit hangs does not hold the other partitions back (the
  worker fetches only from partitions with no batch in flight).
- A batch that decides several commands of one instance and then fails to
  commit leaves the cached instance as it was: retrying applies every command
  once (the batch adds command ids in place to its own copy of the id table).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, Send, Start, open_store
from engine.core.errors import StoreUnavailable
from engine.kafka.worker import Worker
from engine.store import DeadLetter, EventStore, NewRecord, Tracking
from tests.kafka import tally
from tests.kafka.conftest import FAST_GROUP, Produced, create_topic, produce


class _FlakyStore:
    """A memory store whose appends fail while ``failing`` says so."""

    def __init__(self, failing: list[bool]) -> None:
        self.inner: EventStore = open_store("memory://")
        self.failing = failing

    def append(
        self,
        records: Sequence[NewRecord],
        *,
        tracking: Tracking | None = None,
        dead_letters: Sequence[DeadLetter] = (),
    ) -> list[int]:
        if self.failing and self.failing.pop(0):
            raise StoreUnavailable("memory://", "injected failure")
        return self.inner.append(records, tracking=tracking, dead_letters=dead_letters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 12)), max_size=12),
        min_size=1,
        max_size=8,
    ),
    failing=st.lists(st.booleans(), max_size=20),
)
def test_failed_batches_leave_no_command_id_behind(batches, failing):
    """Each distinct command id is applied exactly once, whatever fails."""

    async def main() -> None:
        store = _FlakyStore(list(failing))
        engine = Engine(store, tally.registry())  # type: ignore[arg-type]
        ids = [f"t{i}" for i in range(3)]
        applied: dict[str, set[str]] = {i: set() for i in ids}
        rounds: list[list[Start | Send]] = [
            [Start("tally", tally.Open(), instance_id=i) for i in ids]
        ]
        rounds += [
            [Send(ids[who], tally.Add(1), command_id=f"c{n}") for who, n in batch]
            for batch in batches
        ]
        for items in rounds:
            while True:  # as the worker does: retry the batch until it commits
                try:
                    await engine.handle_batch(items)
                    break
                except StoreUnavailable:
                    continue
            for item in items:
                if isinstance(item, Send):
                    assert item.command_id is not None
                    applied[item.instance_id].add(item.command_id)
        for iid in ids:
            info = await engine.get(iid)
            assert info.state.count == len(applied[iid]), iid
        # A cold engine folds the store to the same counts.
        cold = Engine(store.inner, tally.registry())
        for iid in ids:
            assert (await cold.get(iid)).state.count == len(applied[iid]), iid

    asyncio.run(main())


class _HeldStore:
    """A memory store that holds the commits of one tracking record until released."""

    def __init__(self, held: str) -> None:
        self.inner: EventStore = open_store("memory://")
        self.held = held
        self.release = threading.Event()

    def append(
        self,
        records: Sequence[NewRecord],
        *,
        tracking: Tracking | None = None,
        dead_letters: Sequence[DeadLetter] = (),
    ) -> list[int]:
        if tracking is not None and tracking.name == self.held:
            self.release.wait(60)
        return self.inner.append(records, tracking=tracking, dead_letters=dead_letters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.kafka
async def test_a_partition_whose_commit_hangs_does_not_hold_back_the_others(kafka):
    topic = await create_topic(kafka)
    produced = Produced()
    per_partition = 400
    for p in range(3):
        opens = [(f"p{p}".encode(), b'{"open": true}')]
        adds = [(f"p{p}".encode(), b'{"add": 1}')] * per_partition
        await produce(kafka, topic, [*opens, *adds], produced, partition=p)
    store = _HeldStore(f"kafka:g:{topic}:0")
    engine = Engine(store, tally.registry())  # type: ignore[arg-type]
    worker = Worker(
        engine,
        bootstrap=kafka,
        topics=[topic],
        group="g",
        mapping=tally.mapping,
        max_batch=50,  # many batches per partition
        consumer_options=FAST_GROUP,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    others = {(topic, 1): produced.ends[1], (topic, 2): produced.ends[2]}
    try:
        # Partition 0's first commit hangs; 1 and 2 must still finish.
        while not all(worker.offsets.get(tp) == end for tp, end in others.items()):
            await _next_commit(worker, task)
        assert worker.offsets.get((topic, 0), 0) == 0  # still held
        store.release.set()
        while worker.offsets.get((topic, 0)) != produced.ends[0]:
            await _next_commit(worker, task)
    finally:
        store.release.set()
        stop.set()
        await task
    for p in range(3):
        assert (await engine.get(f"p{p}")).state.count == per_partition
        stored = store.inner.tracking_position(f"kafka:g:{topic}:{p}")
        assert stored == produced.ends[p]


async def _next_commit(worker: Worker, task: asyncio.Task[Any]) -> None:
    """Wait for the worker's next batch commit; fail if it crashes or stalls."""
    worker.committed.clear()
    waiting = asyncio.ensure_future(worker.committed.wait())
    done, _ = await asyncio.wait(
        [waiting, task], timeout=60, return_when=asyncio.FIRST_COMPLETED
    )
    waiting.cancel()
    if task.done():
        task.result()
    assert done, f"no commit for 60 s; offsets {worker.offsets}"
