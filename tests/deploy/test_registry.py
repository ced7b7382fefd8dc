"""The deployments registry on every store: lifecycle, routing, audit, loading."""

from __future__ import annotations

import pytest

from engine import Engine, UnknownWorkflow, WorkflowRegistry
from engine.deploy import (
    DeployError,
    Deployments,
    DeploySourceError,
    RetireRefused,
    Routing,
    ScanStats,
    bucket,
)
from engine.deploy.events import deploy_stream
from engine.store import EventStore
from tests.deploy import flows

SRC = "tests.deploy.flows"


def test_first_deploy_takes_every_new_instance(deployments: Deployments) -> None:
    r = deployments.deploy("jobs", 1, f"{SRC}:v1", by="ann", reason="launch")
    assert r == Routing(1)
    d = deployments.view.workflow("jobs").deployments[1]
    assert (d.state, d.source, d.by) == ("active", f"{SRC}:v1", "ann")
    assert deployments.route("jobs", "any") == 1


def test_canary_promote_rollback_and_audit(deployments: Deployments) -> None:
    deployments.deploy("jobs", 1, f"{SRC}:v1", by="ann")
    r = deployments.deploy("jobs", 2, f"{SRC}:v2", canary=10, by="ann", reason="try")
    assert r == Routing(1, 2, 1000)
    keys = [f"k{i}" for i in range(400)]
    routed = {k: deployments.route("jobs", k) for k in keys}
    assert {k for k, v in routed.items() if v == 2} == {
        k for k in keys if bucket("jobs", k) < 1000
    }
    assert deployments.promote("jobs", 2, percent=50, by="bob") == Routing(1, 2, 5000)
    assert deployments.promote("jobs", 2, by="bob") == Routing(2)
    wd = deployments.view.workflow("jobs")
    assert wd.deployments[1].state == "draining"
    assert deployments.rollback("jobs", by="cy", reason="errors") == Routing(1)
    wd = deployments.view.workflow("jobs")
    assert wd.deployments[1].state == "active"
    assert wd.deployments[2].state == "draining"
    audit = [(a.action, a.by, a.reason) for a in deployments.view.audit]
    assert audit == [
        ("deploy", "ann", ""),
        ("deploy", "ann", ""),
        ("deploy", "ann", "try"),
        ("deploy", "ann", "try"),
        ("promote", "bob", ""),
        ("promote", "bob", ""),
        ("rollback", "cy", "errors"),
    ]
    assert all(a.at > 0 for a in deployments.view.audit)


def test_rollback_of_a_canary_keeps_the_stable(deployments: Deployments) -> None:
    deployments.deploy("jobs", 1, f"{SRC}:v1")
    deployments.deploy("jobs", 2, f"{SRC}:v2")
    deployments.deploy("jobs", 3, f"{SRC}:v3", canary=5)
    assert deployments.rollback("jobs") == Routing(2)
    assert deployments.rollback("jobs") == Routing(1)
    with pytest.raises(DeployError, match="no previous version"):
        deployments.rollback("jobs")


def test_bad_commands_are_refused_and_write_nothing(
    deployments: Deployments, store: EventStore
) -> None:
    with pytest.raises(DeployError, match="no stable version"):
        deployments.deploy("jobs", 1, f"{SRC}:v1", canary=10)
    with pytest.raises(DeploySourceError, match="defines jobs@2, not jobs@1"):
        deployments.deploy("jobs", 1, f"{SRC}:v2")
    with pytest.raises(DeploySourceError, match="not a Workflow"):
        deployments.deploy("jobs", 1, f"{SRC}:not_a_workflow")
    with pytest.raises(DeploySourceError, match="import failed"):
        deployments.deploy("jobs", 1, "tests.deploy.nowhere:v1")
    assert store.stream_position(deploy_stream("jobs")) == 0
    deployments.deploy("jobs", 1, f"{SRC}:v1")
    with pytest.raises(DeployError, match="already deployed"):
        deployments.deploy("jobs", 1, f"{SRC}:v1")
    with pytest.raises(DeployError, match="not deployed"):
        deployments.promote("jobs", 7)
    with pytest.raises(DeployError, match="between 0 and 100"):
        deployments.promote("jobs", 1, percent=101)
    assert store.stream_position(deploy_stream("jobs")) == 2


def test_a_second_registry_sees_changes_after_refresh(
    deployments: Deployments, store: EventStore
) -> None:
    other = Deployments(store)
    deployments.deploy("jobs", 1, f"{SRC}:v1")
    deployments.deploy("jobs", 2, f"{SRC}:v2")
    other.refresh()
    assert other.route("jobs", "x") == 2
    # A stale writer loses the race on the stream position, re-reads, re-checks.
    deployments.rollback("jobs")
    with pytest.raises(DeployError, match="no previous version"):
        other.rollback("jobs")


def test_retire_is_refused_while_instances_run(
    deployments: Deployments, store: EventStore
) -> None:
    import asyncio

    from engine.deploy import open_engine

    deployments.deploy("jobs", 1, f"{SRC}:v1")

    async def start(n: int) -> None:
        engine = open_engine(store, flows.registry())
        for i in range(n):
            await engine.start("jobs", flows.Begin(), instance_id=f"j{i}")
        await engine.send("j0", flows.Finish())

    asyncio.run(start(3))
    deployments.deploy("jobs", 2, f"{SRC}:v2")
    stats = ScanStats(store, flows.registry())
    with pytest.raises(RetireRefused, match="gets 100 % of new"):
        deployments.retire("jobs", 2, stats)
    with pytest.raises(RetireRefused, match="2 instance\\(s\\) still run"):
        deployments.retire("jobs", 1, stats)
    (v1,) = stats.version_stats("jobs")
    assert (v1.version, v1.running, v1.completed) == (1, 2, 1)
    assert v1.oldest_running_started_us is not None

    async def finish() -> None:
        engine = open_engine(store, flows.registry())
        for i in (1, 2):
            await engine.send(f"j{i}", flows.Finish())

    asyncio.run(finish())
    deployments.retire("jobs", 1, stats, reason="drained")
    assert deployments.view.workflow("jobs").deployments[1].state == "retired"
    with pytest.raises(DeployError, match="already retired"):
        deployments.retire("jobs", 1, stats)


def test_hot_loading_registers_a_new_version(
    deployments: Deployments, store: EventStore
) -> None:
    reg = WorkflowRegistry()
    reg.register(flows.v1)
    worker = Deployments(store, poll_interval=0.0)
    worker.attach(reg)
    deployments.deploy("jobs", 1, f"{SRC}:v1")
    deployments.deploy("jobs", 4, f"{SRC}:v4", canary=100)
    worker.refresh()
    assert reg.versions("jobs") == [1, 4]
    assert worker.route("jobs", "k") == 4


def test_a_failed_load_is_recorded_and_routes_nothing(
    deployments: Deployments, store: EventStore
) -> None:
    reg = WorkflowRegistry()
    reg.register(flows.v1)
    worker = Deployments(store, poll_interval=0.0, worker="w-7")
    worker.attach(reg)
    deployments.deploy("jobs", 1, f"{SRC}:v1")
    # Written unchecked: the operator's machine could import it, this one cannot.
    deployments.deploy("jobs", 6, f"{SRC}:broken", canary=50, check=False)
    worker.refresh()
    assert reg.versions("jobs") == [1]
    assert {worker.route("jobs", f"k{i}") for i in range(50)} == {1}
    deployments.refresh()
    d = deployments.view.workflow("jobs").deployments[6]
    assert d.state == "failed"
    assert d.error is not None and "cannot be loaded" in d.error
    assert deployments.view.audit[-1].detail.startswith("v6 failed on w-7")
    assert {deployments.route("jobs", f"k{i}") for i in range(50)} == {1}
    # Fixed and deployed again: this worker loads it and routes to it.
    deployments.deploy("jobs", 6, f"{SRC}:v6", canary=50)
    worker.refresh()
    assert reg.versions("jobs") == [1, 6]
    assert {worker.route("jobs", f"k{i}") for i in range(50)} == {1, 6}


async def test_an_engine_routes_by_the_registry(
    deployments: Deployments, store: EventStore
) -> None:
    from engine.deploy import open_engine

    engine = open_engine(store, flows.registry(), poll_interval=0.0)
    # No deployment yet: the registry's current version (the newest) is used.
    assert (await engine.start("jobs", flows.Begin(), instance_id="a")).version == 2
    await asyncio_to_thread(deployments.deploy, "jobs", 1, f"{SRC}:v1")
    assert (await engine.start("jobs", flows.Begin(), instance_id="b")).version == 1
    await asyncio_to_thread(deployments.deploy, "jobs", 4, f"{SRC}:v4", canary=50)
    infos = [
        await engine.start("jobs", flows.Begin(), instance_id=f"c{i}")
        for i in range(40)
    ]
    for info in infos:
        expected = 4 if bucket("jobs", info.instance_id) < 5000 else 1
        assert info.version == expected
    # A business key routes instead of the id, stickily.
    keyed = [
        await engine.start(
            "jobs", flows.Begin(), instance_id=f"d{i}", routing_key="acme"
        )
        for i in range(5)
    ]
    assert len({i.version for i in keyed}) == 1
    # Explicit versions still win.
    pinned = await engine.start("jobs", flows.Begin(), instance_id="e", version=2)
    assert pinned.version == 2
    # Commands run under the pinned version whatever the routing says now.
    await asyncio_to_thread(deployments.rollback, "jobs")
    await asyncio_to_thread(deployments.promote, "jobs", 4)
    for info in infos:
        after = await engine.send(info.instance_id, flows.Step())
        assert after.version == info.version
        assert after.state.versions == (info.version,)
    with pytest.raises(UnknownWorkflow):
        await engine.start("nope", flows.Begin())
    await engine.close()


async def asyncio_to_thread(fn: object, *args: object, **kw: object) -> object:
    import asyncio

    return await asyncio.to_thread(fn, *args, **kw)  # type: ignore[arg-type]


def test_engine_without_router_is_unchanged(store: EventStore) -> None:
    import asyncio

    async def run() -> int:
        engine = Engine(store, flows.registry())
        return (await engine.start("jobs", flows.Begin())).version

    assert asyncio.run(run()) == 2


async def test_a_command_for_a_version_deployed_elsewhere_loads_it(
    durable_url: str,
) -> None:
    from engine.deploy import open_engine

    ops = Deployments(durable_url)
    await asyncio_to_thread(ops.deploy, "jobs", 1, f"{SRC}:v1")
    # This worker reads the registry now and would not poll again for an hour.
    reg = flows.registry()
    late = open_engine(durable_url, reg, poll_interval=3600)
    assert (await late.start("jobs", flows.Begin(), instance_id="here")).version == 1
    await asyncio_to_thread(ops.deploy, "jobs", 4, f"{SRC}:v4")
    other = open_engine(durable_url, flows.registry())
    assert (await other.start("jobs", flows.Begin(), instance_id="far")).version == 4
    await other.close()
    assert reg.versions("jobs") == [1, 2]
    # The unknown pinned version makes it read the registry and load v4.
    info = await late.send("far", flows.Step())
    assert info.version == 4 and reg.versions("jobs") == [1, 2, 4]
    await late.close()
    ops.close()


async def test_reserved_stream_ids_are_refused(store: EventStore) -> None:
    from engine import CommandRejected

    engine = Engine(store, flows.registry())
    with pytest.raises(CommandRejected, match="reserved for the engine"):
        await engine.start("jobs", flows.Begin(), instance_id="nonstop.deploy:jobs")
    assert store.stream_position("nonstop.deploy:jobs") == 0
