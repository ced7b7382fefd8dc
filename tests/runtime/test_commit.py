"""Restarts, batches with tracking, group commit, several engines, snapshots."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from engine import (
    CommandRejected,
    ConcurrencyConflict,
    ConflictRetriesExhausted,
    Engine,
    EventStore,
    InstanceExists,
    InstanceInfo,
    Send,
    Start,
    SyncEngine,
    Tracking,
    UnknownInstance,
    open_store,
)
from engine.demo.orders import CheckFraud, Pay, PlaceOrder, Ship
from engine.demo.orders import registry as orders_registry
from engine.store import Snapshot
from tests.runtime import counter
from tests.runtime.counter import Begin, Count, Increment


def _other_store(store_url: str, store: EventStore) -> EventStore:
    """A second connection to the same store (the same object for memory)."""
    return store if store_url == "memory://" else open_store(store_url)


# ----------------------------------------------------------------- restart


async def test_restart_finds_every_instance_where_it_was(durable_url: str) -> None:
    reg = orders_registry()
    first = Engine(durable_url, reg)
    await first.start("orders", PlaceOrder("placed", 5), instance_id="placed")
    await first.start("orders", PlaceOrder("paid", 5), instance_id="paid")
    await first.send("paid", Pay(5), command_id="pay-paid")
    await first.start("orders", PlaceOrder("done", 5), instance_id="done")
    await first.send("done", Pay(5))
    await first.send("done", Ship())
    reg.set_current("orders", 2)
    await first.start("orders", PlaceOrder("v2", 5), instance_id="v2")
    await first.send("v2", CheckFraud())
    before = {i.instance_id: i for i in await first.instances()}
    await first.close()

    second = Engine(durable_url, orders_registry())  # v1 current again
    try:
        after = {i.instance_id: i for i in await second.instances()}
        assert after == before
        for iid, info in before.items():
            assert await second.get(iid) == info
        assert after["v2"].version == 2 and after["done"].status == "completed"
        assert after["paid"].position == 3
        # Pinned versions, command ids and the log continue from the store.
        again = await second.send("paid", Pay(5), command_id="pay-paid")
        assert not again.applied
        await second.send("paid", Ship())
        assert (await second.get("paid")).status == "completed"
        with pytest.raises(CommandRejected):
            await second.send("done", Ship())
        with pytest.raises(InstanceExists):
            await second.start("orders", PlaceOrder("x", 1), instance_id="placed")
    finally:
        await second.close()


# ------------------------------------------------------------ handle_batch


async def test_batch_commits_successes_in_one_transaction(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("orders", PlaceOrder("a", 10), instance_id="a")
    before = engine.commits
    results = await engine.handle_batch(
        [
            Start("orders", PlaceOrder("b", 20), instance_id="b", command_id="sb"),
            Send("a", Pay(10), command_id="pa"),
            Send("a", Pay(99)),  # rejected: already paid
            Send("ghost", Pay(1)),  # unknown
            Start("orders", PlaceOrder("a", 1), instance_id="a"),  # exists
            Send("b", Pay(20)),  # sees the start earlier in the batch
            Send("a", Ship()),
            Start("orders", PlaceOrder("z", -1), instance_id="z"),  # rejected
        ]
    )
    assert engine.commits == before + 1
    kinds = [type(r).__name__ for r in results]
    assert kinds == [
        "InstanceInfo",
        "InstanceInfo",
        "CommandRejected",
        "UnknownInstance",
        "InstanceExists",
        "InstanceInfo",
        "InstanceInfo",
        "CommandRejected",
    ]
    assert isinstance(results[3], UnknownInstance)
    assert isinstance(results[4], InstanceExists)
    assert store.stream_position("a") == 4
    assert store.stream_position("b") == 3
    assert store.stream_position("ghost") == 0
    assert store.stream_position("z") == 0
    assert (await engine.get("a")).status == "completed"
    assert (await engine.get("b")).state.stage == "paid"
    # The batch's successes landed in one contiguous run of the global order.
    gps = [r.global_position for r in store.read_all()][-5:]
    assert gps == list(range(gps[0], gps[0] + 5))


async def test_batch_repeats_are_answered_not_applied(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("orders", PlaceOrder("a", 10), instance_id="a")
    [first] = await engine.handle_batch([Send("a", Pay(10), command_id="p")])
    [again] = await engine.handle_batch([Send("a", Pay(10), command_id="p")])
    assert not isinstance(first, Exception) and first.applied
    assert not isinstance(again, Exception) and not again.applied
    assert store.stream_position("a") == 3


async def test_batch_start_repeats_are_answered_not_applied(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("orders", PlaceOrder("a", 1), instance_id="a", command_id="s")
    fresh = Engine(store, orders_registry())  # nothing cached
    for eng in (engine, fresh):
        again, taken, other = await eng.handle_batch(
            [
                Start("orders", PlaceOrder("a", 1), instance_id="a", command_id="s"),
                Start("orders", PlaceOrder("a", 1), instance_id="a"),
                Start("orders", PlaceOrder("a", 1), instance_id="a", command_id="t"),
            ]
        )
        assert not isinstance(again, Exception)
        assert (again.applied, again.position) == (False, 2)
        assert isinstance(taken, InstanceExists)
        assert isinstance(other, InstanceExists)
    [first, repeat] = await engine.handle_batch(
        [
            Start("orders", PlaceOrder("b", 1), instance_id="b", command_id="sb"),
            Start("orders", PlaceOrder("b", 1), instance_id="b", command_id="sb"),
        ]
    )
    assert not isinstance(first, Exception) and first.applied
    assert not isinstance(repeat, Exception) and not repeat.applied
    assert store.stream_position("a") == 2
    assert store.stream_position("b") == 2


async def test_batch_writes_tracking_with_events(
    engine: Engine, store: EventStore
) -> None:
    await engine.handle_batch(
        [Start("orders", PlaceOrder("a", 1), instance_id="a")],
        tracking=Tracking("kafka:orders:0", 41),
    )
    assert store.tracking_position("kafka:orders:0") == 41
    # Only failures: nothing to write but the offset still moves on.
    [err] = await engine.handle_batch(
        [Send("a", Pay(2))], tracking=Tracking("kafka:orders:0", 42)
    )
    assert isinstance(err, CommandRejected)
    assert store.tracking_position("kafka:orders:0") == 42
    assert store.stream_position("a") == 2


async def test_batch_with_stale_tracking_writes_nothing(
    engine: Engine, store: EventStore
) -> None:
    await engine.handle_batch(
        [Start("orders", PlaceOrder("a", 1), instance_id="a")],
        tracking=Tracking("p", 10),
    )
    before = store.last_global_position()
    with pytest.raises(ConflictRetriesExhausted) as err:
        await engine.handle_batch(
            [
                Send("a", Pay(1)),
                Start("orders", PlaceOrder("b", 1), instance_id="b"),
            ],
            tracking=Tracking("p", 10),
        )
    assert isinstance(err.value.__cause__, ConcurrencyConflict)
    assert store.last_global_position() == before
    assert store.tracking_position("p") == 10
    assert (await engine.get("a")).state.stage == "placed"
    with pytest.raises(UnknownInstance):
        await engine.get("b")


# ------------------------------------------------------------ group commit


async def test_group_commit_uses_fewer_transactions_than_sends(
    engine: Engine, store: EventStore
) -> None:
    ids = [f"o-{i}" for i in range(64)]
    for iid in ids:
        await engine.start("orders", PlaceOrder(iid, 3), instance_id=iid)
    before = engine.commits
    infos = await asyncio.gather(*(engine.send(iid, Pay(3)) for iid in ids))
    assert engine.commits - before < 64
    assert engine.commits > before
    assert all(i.state.stage == "paid" for i in infos)
    assert all(store.stream_position(iid) == 3 for iid in ids)


async def test_concurrent_sends_to_one_instance_apply_in_turn(
    engine: Engine, store: EventStore
) -> None:
    await engine.start("orders", PlaceOrder("o", 3), instance_id="o")
    results = await asyncio.gather(
        engine.send("o", Pay(3)),
        engine.send("o", Pay(3)),
        engine.send("o", Ship()),
        return_exceptions=True,
    )
    first = results[0]
    assert isinstance(first, InstanceInfo) and first.state.stage == "paid"
    assert isinstance(results[1], CommandRejected)
    assert not isinstance(results[2], Exception)
    assert store.stream_position("o") == 4


# ------------------------------------------------------------- two engines


@pytest.mark.parametrize("order", ["ab", "ba"])
async def test_two_engines_on_one_store(
    store_url: str, store: EventStore, order: str
) -> None:
    a = Engine(store, counter.registry())
    b = Engine(_other_store(store_url, store), counter.registry())
    engines = {"a": a, "b": b}
    try:
        await a.start("counter", Begin(), instance_id="c")
        await b.get("c")  # both caches now hold position 2
        for step in range(3):
            for name in order:
                await engines[name].send("c", Increment(), command_id=f"{name}{step}")
        final = await a.get("c")
        assert final == await b.get("c")
        assert (final.state.n, final.position) == (6, 8)
        hist = await a.history("c")
        assert [h.position for h in hist] == list(range(1, 9))
        cids = [h.command_id for h in hist[2:]]
        assert sorted(cids) == sorted(f"{n}{s}" for n in "ab" for s in range(3))  # type: ignore[type-var]
    finally:
        if store_url != "memory://":
            await b.close()
        await a.close()


async def test_two_engines_racing(store_url: str, store: EventStore) -> None:
    a = Engine(store, counter.registry(), max_attempts=100)
    b = Engine(_other_store(store_url, store), counter.registry(), max_attempts=100)
    try:
        await a.start("counter", Begin(), instance_id="c")
        await b.get("c")
        sends = [
            (a if i % 2 else b).send("c", Increment(), command_id=f"k{i}")
            for i in range(20)
        ]
        await asyncio.gather(*sends)
        hist = await b.history("c")
        assert [h.position for h in hist] == list(range(1, 23))
        assert sorted(h.command_id for h in hist[2:]) == sorted(  # type: ignore[type-var]
            f"k{i}" for i in range(20)
        )
        assert (await a.get("c")).state.n == 20
    finally:
        if store_url != "memory://":
            await b.close()
        await a.close()


# --------------------------------------------------------------- snapshots


async def test_snapshot_is_written_and_used(store_url: str, store: EventStore) -> None:
    first = Engine(store, counter.registry(snapshot_every=4))
    await first.start("counter", Begin(), instance_id="c")  # positions 1-2
    await first.send("c", Increment())  # 3
    assert store.load_snapshot("c") is None
    await first.send("c", Increment())  # 4: snapshot
    await first.send("c", Increment(5))  # 5
    await asyncio.gather(*first.loader.background)
    snap = store.load_snapshot("c")
    assert snap is not None
    assert snap.position == 4
    assert snap.key == counter.counter(snapshot_every=4).state_key
    live = await first.get("c")

    second = Engine(_other_store(store_url, store), counter.registry(snapshot_every=4))
    try:
        counter.EVOLVE_CALLS.clear()
        again = await second.get("c")
        assert again == live
        assert again.state == Count(7)
        # Only the event after the snapshot was folded.
        assert len(counter.EVOLVE_CALLS) == 1
    finally:
        if store_url != "memory://":
            await second.close()
        await first.close()


async def test_snapshot_state_is_trusted_up_to_its_position(
    store_url: str, store: EventStore
) -> None:
    """Proves the loader starts from the snapshot: a doctored one shows through."""
    reg = counter.registry(snapshot_every=100)
    first = Engine(store, reg)
    await first.start("counter", Begin(), instance_id="c")
    for _ in range(3):
        await first.send("c", Increment())  # positions 3, 4, 5
    doctored = msgspec.msgpack.encode([Count(1000), {}])
    key = reg.get("counter").state_key
    store.save_snapshot(Snapshot("c", 4, key, doctored))
    second = Engine(
        _other_store(store_url, store), counter.registry(snapshot_every=100)
    )
    try:
        info = await second.get("c")
        assert (info.state.n, info.position) == (1001, 5)
    finally:
        if store_url != "memory://":
            await second.close()
        await first.close()


@pytest.mark.parametrize("key", ["counter@1#0000000000000000", "counter@2#abc"])
async def test_snapshot_with_another_key_is_ignored(
    store_url: str, store: EventStore, key: str
) -> None:
    first = Engine(store, counter.registry(snapshot_every=100))
    await first.start("counter", Begin(), instance_id="c")
    for _ in range(3):
        await first.send("c", Increment())
    store.save_snapshot(
        Snapshot("c", 5, key, msgspec.msgpack.encode([Count(1000), {}]))
    )
    second = Engine(
        _other_store(store_url, store), counter.registry(snapshot_every=100)
    )
    try:
        info = await second.get("c")
        assert (info.state.n, info.position) == (3, 5)
    finally:
        if store_url != "memory://":
            await second.close()
        await first.close()


async def test_unreadable_snapshot_is_ignored(store: EventStore) -> None:
    reg = counter.registry(snapshot_every=100)
    first = Engine(store, reg)
    await first.start("counter", Begin(), instance_id="c")
    await first.send("c", Increment())
    store.save_snapshot(Snapshot("c", 3, reg.get("counter").state_key, b"\xc1junk"))
    info = await Engine(store, counter.registry(snapshot_every=100)).get("c")
    assert (info.state.n, info.position) == (1, 3)
    await first.close()


async def test_snapshot_keeps_command_ids(store: EventStore) -> None:
    first = Engine(store, counter.registry(snapshot_every=2))
    await first.start("counter", Begin(), instance_id="c", command_id="s")
    await first.send("c", Increment(), command_id="i1")
    await first.send("c", Increment(), command_id="i2")  # 4: snapshot
    await asyncio.gather(*first.loader.background)
    assert store.load_snapshot("c") is not None
    second = Engine(store, counter.registry(snapshot_every=2))
    again = await second.send("c", Increment(), command_id="i1")
    assert (again.applied, again.position, again.state.n) == (False, 4, 2)
    await first.close()


# -------------------------------------------------------------- SyncEngine


def test_sync_engine(store_url: str) -> None:
    with SyncEngine(store_url, orders_registry()) as eng:
        info = eng.start("orders", PlaceOrder("o", 4), instance_id="o", command_id="s")
        assert (info.version, info.position, info.applied) == (1, 2, True)
        again = eng.start("orders", PlaceOrder("o", 4), instance_id="o", command_id="s")
        assert not again.applied
        assert eng.send("o", Pay(4), command_id="p").state.stage == "paid"
        assert not eng.send("o", Pay(4), command_id="p").applied
        with pytest.raises(CommandRejected, match="payment 5 does not match 4"):
            eng.start("orders", PlaceOrder("q", 4), instance_id="q")
            eng.send("q", Pay(5))
        with pytest.raises(UnknownInstance):
            eng.get("ghost")
        [res, err] = eng.handle_batch(
            [Send("o", Ship()), Send("ghost", Ship())], tracking=Tracking("t", 1)
        )
        assert not isinstance(res, Exception) and res.status == "completed"
        assert isinstance(err, UnknownInstance)
        assert eng.engine.store.tracking_position("t") == 1
        assert eng.get("o").status == "completed"
        assert [h.type for h in eng.history("o")][-1] == "OrderShipped"
        assert [i.instance_id for i in eng.instances(status="completed")] == ["o"]
        assert [i.instance_id for i in eng.instances(status="running")] == ["q"]
