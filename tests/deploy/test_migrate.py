"""Migration of in-flight instances: dry run, atomic apply, replay across it."""

from __future__ import annotations

import pytest

from engine import MigrationError
from engine.core.errors import UnknownWorkflow
from engine.deploy import DeployError, Deployments, migrate_instances, open_engine
from tests.deploy import flows


async def _setup(url: str) -> None:
    engine = open_engine(url, flows.registry())
    for i, steps in enumerate([0, 1, 2, 3]):
        iid = f"m{i}"
        await engine.start("jobs", flows.Begin(), instance_id=iid, version=1)
        for _ in range(steps):
            await engine.send(iid, flows.Step())
    await engine.start("jobs", flows.Begin(), instance_id="done", version=1)
    await engine.send("done", flows.Finish())
    await engine.close()


async def test_dry_run_reports_and_writes_nothing(durable_url: str) -> None:
    await _setup(durable_url)
    engine = open_engine(durable_url, flows.registry())
    before = engine.store.last_global_position()
    report = await migrate_instances(
        engine, "jobs", 1, 2, flows.failing_mapper, dry_run=True
    )
    assert engine.store.last_global_position() == before
    outcomes = {r.instance_id: r.outcome for r in report.results}
    assert outcomes == {
        "m0": "would migrate",
        "m1": "failed",
        "m2": "would migrate",
        "m3": "would migrate",
    }
    assert "cannot map a job with one step" in report.results[1].detail
    assert (await engine.get("m2")).version == 1
    await engine.close()


async def test_apply_migrates_each_instance_atomically(durable_url: str) -> None:
    await _setup(durable_url)
    engine = open_engine(durable_url, flows.registry())
    report = await migrate_instances(
        engine, "jobs", 1, 2, flows.failing_mapper, by="ann", reason="label"
    )
    assert (report.count("migrated"), report.count("failed")) == (3, 1)
    m1 = await engine.get("m1")
    assert m1.version == 1 and m1.position == 2  # the failed one: untouched
    m2 = await engine.get("m2")
    assert m2.version == 2 and m2.state.label == "migrated"
    after = await engine.send("m2", flows.Step())
    assert after.state.versions == (1, 1, 2)
    history = await engine.history("m2")
    assert [e.type for e in history] == [
        "nonstop.Started",
        "deploytest.Stepped",
        "deploytest.Stepped",
        "nonstop.Migrated",
        "deploytest.Stepped",
    ]
    migrated = history[3].event
    assert (migrated.from_version, migrated.to_version, migrated.by) == (1, 2, "ann")
    assert [e.workflow for e in history] == ["jobs@1"] * 3 + ["jobs@2"] * 2
    await engine.close()
    # Replay in a fresh engine: v1's reducer up to the migration, v2's after.
    fresh = open_engine(durable_url, flows.registry())
    again = await fresh.get("m2")
    assert again.version == 2
    assert again.state == after.state
    assert (await fresh.get("m0")).state.label == "migrated"
    # Running a second time finds only the instance that failed.
    report = await migrate_instances(fresh, "jobs", 1, 2, flows.add_label)
    assert [(r.instance_id, r.outcome) for r in report.results] == [("m1", "migrated")]
    await fresh.close()


async def test_bad_requests(durable_url: str) -> None:
    await _setup(durable_url)
    engine = open_engine(durable_url, flows.registry())
    with pytest.raises(DeployError, match="to itself"):
        await migrate_instances(engine, "jobs", 1, 1)
    with pytest.raises(UnknownWorkflow):
        await migrate_instances(engine, "jobs", 1, 9)
    with pytest.raises(MigrationError, match="is completed"):
        await engine.migrate("done", 2, flows.add_label)
    with pytest.raises(MigrationError, match=r"the mapper failed"):
        await engine.migrate("m0", 2, lambda s: {"steps": "many"})
    report = await migrate_instances(
        engine, "jobs", 1, 2, instance_ids=["m0", "done", "ghost"], dry_run=True
    )
    assert [(r.instance_id, r.outcome) for r in report.results] == [
        ("done", "failed"),
        ("ghost", "failed"),
        ("m0", "would migrate"),
    ]
    await engine.close()


async def test_a_failed_target_is_refused(durable_url: str) -> None:
    await _setup(durable_url)
    registry = Deployments(durable_url)
    registry.deploy("jobs", 2, "tests.deploy.flows:v2")
    registry.deploy("jobs", 5, "tests.deploy.flows:broken", canary=5, check=False)
    registry.attach(flows.registry())
    registry.refresh()  # the load fails here: jobs@5 is marked failed
    view = registry.view
    assert view.workflow("jobs").deployments[5].state == "failed"
    reg = flows.registry()
    reg.register(flows.snapshotting)  # jobs@5 as this process knows it
    engine = open_engine(durable_url, reg)
    with pytest.raises(DeployError, match="jobs@5: it is failed"):
        await migrate_instances(engine, "jobs", 1, 5, registry=view)
    report = await migrate_instances(engine, "jobs", 1, 5, dry_run=True)
    assert report.count("would migrate") == 4
    await engine.close()
    registry.close()


async def test_a_run_checked_against_the_registry_is_audited(
    durable_url: str,
) -> None:
    await _setup(durable_url)
    registry = Deployments(durable_url)
    registry.deploy("jobs", 1, "tests.deploy.flows:v1")
    engine = open_engine(durable_url, flows.registry())
    head = engine.store.last_global_position()
    with pytest.raises(DeployError, match="jobs@2: it was never deployed"):
        await migrate_instances(engine, "jobs", 1, 2, registry=registry)
    assert engine.store.last_global_position() == head
    registry.deploy("jobs", 2, "tests.deploy.flows:v2")
    report = await migrate_instances(
        engine,
        "jobs",
        1,
        2,
        flows.failing_mapper,
        registry=registry,
        by="ann",
        reason="label",
    )
    assert (report.count("migrated"), report.count("failed")) == (3, 1)
    entry = registry.refresh().audit[-1]
    assert (entry.subject, entry.action, entry.by, entry.reason) == (
        "jobs",
        "migrate",
        "ann",
        "label",
    )
    assert entry.detail == (
        "3 instance(s) v1 -> v2, 1 failed, mapper tests.deploy.flows:failing_mapper"
    )
    await engine.close()
    registry.close()
