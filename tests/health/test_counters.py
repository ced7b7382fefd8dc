"""Health counters: counted on the commit path, flushed, read as a window."""

from __future__ import annotations

from engine import CommandRejected, WorkflowCodeError
from engine.health import Counts, Health, read_window
from engine.runtime import Engine, Send, Start
from engine.store import open_store
from tests.health import flows


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_counts_reach_the_store_summed_over_engines(store_url: str) -> None:
    store = open_store(store_url)
    clock = Clock()
    engines = [
        Engine(
            store,
            flows.registry(),
            health=Health(store, bucket_seconds=1, clock=clock, engine=f"e{i}"),
        )
        for i in range(2)
    ]
    for i, engine in enumerate(engines):
        await engine.start("tills", flows.Open(), instance_id=f"a{i}", version=3)
        await engine.start("tills", flows.Open(), instance_id=f"b{i}", version=1)
        await engine.send(f"b{i}", flows.Close())
        outcomes = {"ok": 0, "rejected": 0, "crashed": 0}
        for n in range(40):
            try:
                await engine.send(f"a{i}", flows.Work(n))
                outcomes["ok"] += 1
            except CommandRejected:
                outcomes["rejected"] += 1
            except WorkflowCodeError:
                outcomes["crashed"] += 1
        assert outcomes["rejected"] and outcomes["crashed"]
        engines[i].outcomes = outcomes  # type: ignore[attr-defined]
    clock.now += 1.5  # the second bucket
    await engines[0].send("a0", flows.Fail())
    for engine in engines:
        assert engine.health is not None
        engine.health.flush()
    v3 = read_window(store, "tills", 3, 999_999, 1_000_010, bucket_seconds=1)
    ok = sum(e.outcomes["ok"] for e in engines)  # type: ignore[attr-defined]
    assert v3.started == 2
    assert v3.accepted == 2 + ok + 1
    assert v3.rejected == sum(e.outcomes["rejected"] for e in engines)  # type: ignore[attr-defined]
    assert v3.crashed == sum(e.outcomes["crashed"] for e in engines)  # type: ignore[attr-defined]
    assert v3.failed == 1 and v3.completed == 0
    assert sum(v3.latency) == v3.accepted and v3.latency_sum > 0
    v1 = read_window(store, "tills", 1, 999_999, 1_000_010, bucket_seconds=1)
    assert (v1.started, v1.completed, v1.accepted, v1.errors) == (2, 2, 4, 0)
    # The window [first bucket, second bucket) leaves the Fail out.
    first = read_window(store, "tills", 3, 1_000_000, 1_000_001, bucket_seconds=1)
    assert first.failed == 0 and first.accepted == v3.accepted - 1
    for engine in engines:
        await engine.close()


async def test_batches_count_each_request(store_url: str) -> None:
    clock = Clock()
    store = open_store(store_url)
    health = Health(store, bucket_seconds=1, clock=clock)
    async with Engine(store, flows.registry(), health=health) as engine:
        await engine.start("tills", flows.Open(), instance_id="x", version=3)
        items: list[Start | Send] = [
            Start("tills", flows.Open(), "y", version=1, command_id="c1"),
            *(Send("x", flows.Work(n)) for n in range(20)),
            Start("tills", flows.Open(), "y", version=1, command_id="c1"),
        ]
        results = await engine.handle_batch(items)
        health.flush()
        got3 = read_window(store, "tills", 3, 999_990, 1_000_010, bucket_seconds=1)
        got1 = read_window(store, "tills", 1, 999_990, 1_000_010, bucket_seconds=1)
    refused = sum(isinstance(r, Exception) for r in results)
    assert refused
    assert got1.started == 1 and got1.accepted == 1  # the repeat is not counted
    assert got3.accepted == 1 + 20 - refused
    assert got3.rejected + got3.crashed == refused


def test_racing_flushes_into_one_bucket_all_land(store_url: str) -> None:
    store = open_store(store_url)
    clock = Clock()
    a = Health(store, bucket_seconds=5, clock=clock, engine="a")
    b = Health(store, bucket_seconds=5, clock=clock, engine="b")
    for _ in range(3):
        for h in (a, b):
            h.accepted("w", 1, start=True, status="running", seconds=0.001)
            h.rejected("w", 1)
            assert h.flush() == 1  # b's first append conflicts with a's, retried
    got = read_window(store, "w", 1, 999_995, 1_000_005, bucket_seconds=5)
    assert (got.accepted, got.rejected, got.started) == (6, 6, 6)
    a.close()
    b.close()
    store.close()


def test_a_window_reads_only_its_buckets() -> None:
    store = open_store("memory://")
    clock = Clock(100.0)
    h = Health(store, bucket_seconds=5, clock=clock)
    for t in (100.0, 104.9, 105.0, 112.0):
        clock.now = t
        h.crashed("w", 2)
    h.flush()
    assert read_window(store, "w", 2, 100, 105, bucket_seconds=5).crashed == 2
    assert read_window(store, "w", 2, 101, 110, bucket_seconds=5).crashed == 1
    assert read_window(store, "w", 2, 100, 115, bucket_seconds=5).crashed == 4
    assert read_window(store, "w", 3, 100, 115, bucket_seconds=5) == Counts()
    h.close()
