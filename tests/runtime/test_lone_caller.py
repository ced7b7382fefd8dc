"""A lone caller writes without the writer task; callers meanwhile group-commit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from engine import Engine, open_store
from engine.demo import orders
from engine.demo.orders import Pay, PlaceOrder
from engine.store import NewRecord


class _GatedStore:
    """A memory store whose next append waits for ``release`` once ``hold`` is set."""

    def __init__(self) -> None:
        self.inner = open_store("memory://")
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.writing = False
        self.closed_while_writing = False
        self.batches: list[int] = []

    def append(self, records: Sequence[NewRecord], **kwargs: Any) -> list[int]:
        self.writing = True
        try:
            if self.hold:
                self.hold = False
                self.entered.set()
                self.release.wait(10)
            ids = self.inner.append(records, **kwargs)
            self.batches.append(len(records))
            return ids
        finally:
            self.writing = False

    def close(self) -> None:
        self.closed_while_writing |= self.writing
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _placed(engine: Engine, ids: Sequence[str]) -> None:
    for iid in ids:
        await engine.start("orders", PlaceOrder(iid, 3), instance_id=iid)


async def test_sequential_callers_commit_once_each() -> None:
    store = _GatedStore()
    engine = Engine(store, orders.registry())  # type: ignore[arg-type]
    await _placed(engine, ["a", "b"])
    await engine.send("a", Pay(3))
    await engine.send("b", Pay(3))
    assert store.batches == [2, 2, 1, 1]  # a start writes two events
    assert engine.commits == 4
    assert (await engine.get("a")).state.stage == "paid"
    await engine.close()


async def test_callers_during_a_lone_write_share_the_next_commit() -> None:
    store = _GatedStore()
    engine = Engine(store, orders.registry())  # type: ignore[arg-type]
    ids = [f"o-{i}" for i in range(10)]
    await _placed(engine, ["lone", *ids])
    store.hold = True
    lone = asyncio.create_task(engine.send("lone", Pay(3)))
    await asyncio.to_thread(store.entered.wait, 10)
    queued = [asyncio.create_task(engine.send(iid, Pay(3))) for iid in ids]
    while engine.committer.queued < len(ids):  # every caller has queued its records
        await asyncio.sleep(0)
    store.release.set()
    infos = await asyncio.gather(lone, *queued)
    assert all(i.state.stage == "paid" for i in infos)
    assert store.batches[-2:] == [1, len(ids)]  # the lone write, then one group
    assert all(store.stream_position(iid) == 3 for iid in ["lone", *ids])
    await engine.close()


async def test_close_waits_for_a_lone_write_in_flight() -> None:
    store = _GatedStore()
    engine = Engine(store, orders.registry())  # type: ignore[arg-type]
    await _placed(engine, ["a"])
    store.hold = True
    send = asyncio.create_task(engine.send("a", Pay(3)))
    await asyncio.to_thread(store.entered.wait, 10)
    closing = asyncio.create_task(engine.close())
    store.release.set()
    await closing
    assert not store.closed_while_writing
    assert (await send).state.stage == "paid"
    assert store.inner.stream_position("a") == 3


async def test_a_lone_write_that_loses_the_race_is_decided_again() -> None:
    shared = open_store("memory://")
    first = Engine(shared, orders.registry())
    second = Engine(shared, orders.registry())
    await first.start("orders", PlaceOrder("a", 3), instance_id="a")
    await second.get("a")  # cached before the payment
    await first.send("a", Pay(3), command_id="pay")
    info = await second.send("a", Pay(3), command_id="pay")  # conflicts, reloads
    assert info.applied is False and info.position == 3
    assert shared.stream_position("a") == 3
