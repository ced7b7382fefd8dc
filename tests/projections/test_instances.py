"""The built-in instances projection answers what a scan of the log answers."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec
import pytest

from engine import Engine, Workflow, WorkflowRegistry
from engine.core.workflow import Status
from engine.stats import StatsSource, VersionStats
from projections import ProjectionStateError
from projections.instances import InstancesReadModel
from tests.projections.conftest import Added, Log


class Tally(msgspec.Struct, frozen=True):
    total: int = 0


def _evolve(state: Tally, e: Any) -> Tally:
    return Tally(state.total + e.by) if isinstance(e, Added) else state


def _status(limit: int):
    def status(state: Tally) -> Status:
        if state.total < 0:
            return "failed"
        return "completed" if state.total >= limit else "running"

    return status


def _workflow(version: int, limit: int) -> Workflow[Tally]:
    return Workflow(
        name="tally",
        version=version,
        state_type=Tally,
        initial=Tally,
        decide=lambda s, c, ctx: [],
        evolve=_evolve,
        status=_status(limit),
    )


def registry(*versions: int) -> WorkflowRegistry:
    reg = WorkflowRegistry()
    for v in versions or (1,):
        reg.register(_workflow(v, limit=10 * v))
    return reg


def _scan(url: str, reg: WorkflowRegistry, **filters: Any) -> list[Any]:
    async def go() -> list[Any]:
        async with Engine(url, reg) as engine:
            return await engine.instances(**filters)

    return asyncio.run(go())


def test_instances_and_stats_match_a_scan_of_the_log(urls, store, db, log: Log):
    log.add("done", 0, 4, 6)  # total 10: completed
    log.add("busy", 0, 3)  # running
    log.add("broke", 0, -1)  # failed
    log.add("later", 0, 1, 1)  # running
    reg = registry(1)
    model = InstancesReadModel(store, reg, db=db)
    source: StatsSource = model
    got = model.instances()
    assert got == _scan(urls[0], reg)
    assert [i.instance_id for i in got] == ["done", "busy", "broke", "later"]
    assert got[0].state == Tally(10) and got[0].position == 3
    for filters in (
        {"status": "running"},
        {"status": "failed"},
        {"workflow": "tally", "version": 1},
        {"workflow": "other"},
    ):
        assert model.instances(**filters) == _scan(urls[0], reg, **filters)
    (stats,) = source.version_stats()
    started = {r.stream_id: r for r in store.iter_all(types=["nonstop.Started"])}
    oldest = msgspec.msgpack.decode(started["busy"].data)[2]
    assert stats == VersionStats("tally", 1, 2, 1, 1, oldest)
    assert source.version_stats("nope") == []


def test_reads_are_never_stale(store, db, log: Log):
    log.add("a", 0, 1)
    reg = registry(1)
    with InstancesReadModel(store, reg, db=db) as model:
        assert [i.status for i in model.instances()] == ["running"]
        log.add("a", 20)
        log.add("b", 0, 2)
        found = model.instances()
        assert [(i.instance_id, i.status) for i in found] == [
            ("a", "completed"),
            ("b", "running"),
        ]
        counts = Counter(s.completed for s in model.version_stats())
        assert counts == {1: 1}


def test_counts_per_version(urls, store, db, log: Log):
    reg = registry(1, 2)
    log.add("one", 0, 5)
    # An instance pinned to version 2 (its Started names it).
    from engine.core.codec import EventCodec
    from engine.core.events import Metadata, Started
    from engine.store import NewRecord

    codec = EventCodec()
    name, data = codec.encode(
        Started("tally", 2, "None", msgspec.msgpack.encode(None)),
        Metadata("tally@2"),
        recorded_at=5,
    )
    store.append([NewRecord("two", 1, name, data)])
    log.lengths["two"] = 1
    log.add("two", 15)  # 15 >= 10 completes v1 logic, not v2's (limit 20)
    model = InstancesReadModel(store, reg, db=db)
    assert model.version_stats() == [
        VersionStats(
            "tally", 1, 1, 0, 0, model.version_stats()[0].oldest_running_started_us
        ),
        VersionStats("tally", 2, 1, 0, 0, 5),
    ]
    assert model.instances() == _scan(urls[0], reg)


def test_an_unregistered_version_stops_it_and_a_later_read_retries(store, db, log):
    log.add("a", 0, 1)
    with pytest.raises(
        ProjectionStateError, match=r"nonstop\.Started at global position 1"
    ):
        InstancesReadModel(store, registry(2), db=db).instances()
    # The code is fixed (version 1 registered): the next read resumes.
    assert [
        i.instance_id
        for i in InstancesReadModel(store, registry(1, 2), db=db).instances()
    ] == ["a"]


def test_a_migrated_instance_moves_to_its_new_version(urls, store, db):
    from engine.demo import orders

    reg = orders.registry()

    async def go() -> None:
        async with Engine(urls[0], reg) as engine:
            await engine.start(
                "orders", orders.PlaceOrder("m", 9, "ada"), instance_id="m"
            )
            await engine.start(
                "orders", orders.PlaceOrder("k", 3, "bob"), instance_id="k"
            )
            await engine.migrate("m", 2, lambda s: s, by="ops", reason="test")

    asyncio.run(go())
    model = InstancesReadModel(store, reg, db=db)
    found = {i.instance_id: i for i in model.instances()}
    assert (found["m"].version, found["k"].version) == (2, 1)
    assert list(found.values()) == _scan(urls[0], reg)
    assert [(s.version, s.running) for s in model.version_stats()] == [(1, 1), (2, 1)]
