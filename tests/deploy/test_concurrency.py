"""Deploy, promote and rollback under load; several engines on one store."""

from __future__ import annotations

import asyncio

import pytest

from engine import Engine
from engine.deploy import Deployments, open_engine
from tests.deploy import flows

SRC = "tests.deploy.flows"


@pytest.mark.slow
async def test_changes_under_load_fail_no_command(durable_url: str) -> None:
    operator = Deployments(durable_url)
    await asyncio.to_thread(operator.deploy, "jobs", 1, f"{SRC}:v1")
    engine = open_engine(durable_url, flows.registry(), poll_interval=0.01)
    started: list[str] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()
    progress = asyncio.Condition()

    async def driver(n: int) -> None:
        i = 0
        while not stop.is_set():
            iid = f"t{n}-{i}"
            i += 1
            try:
                await engine.start("jobs", flows.Begin(), instance_id=iid)
                started.append(iid)
                async with progress:
                    progress.notify_all()
                await engine.send(iid, flows.Step())
                await engine.send(iid, flows.Step())
                await engine.send(iid, flows.Finish())
            except Exception as exc:
                errors.append(exc)

    changes = [
        lambda: operator.deploy("jobs", 4, f"{SRC}:v4", canary=20),
        lambda: operator.promote("jobs", 4, percent=60),
        lambda: operator.rollback("jobs"),
        lambda: operator.promote("jobs", 4),
        lambda: operator.rollback("jobs"),
        lambda: operator.promote("jobs", 4, percent=30),
        lambda: operator.promote("jobs", 4),
    ]
    tasks = [asyncio.create_task(driver(n)) for n in range(8)]

    async def more_started(count: int) -> None:
        target = len(started) + count
        async with asyncio.timeout(60), progress:
            await progress.wait_for(lambda: len(started) >= target)

    for change in changes:
        await more_started(8)  # the drivers run between changes
        await asyncio.to_thread(change)
    stop.set()
    await asyncio.gather(*tasks)
    assert errors == []
    assert len(started) >= 8 * len(changes)
    versions: dict[int, int] = {}
    for iid in started:
        history = await engine.history(iid)
        refs = {e.workflow for e in history}
        assert len(refs) == 1, (iid, refs)
        info = await engine.get(iid)
        assert info.status == "completed"
        assert info.state.versions == (info.version, info.version)
        versions[info.version] = versions.get(info.version, 0) + 1
    assert set(versions) == {1, 4}
    await engine.close()
    operator.close()


@pytest.mark.postgres
async def test_two_engines_see_a_rollback_by_themselves(pg_url: str) -> None:
    operator = Deployments(pg_url)
    await asyncio.to_thread(operator.deploy, "jobs", 1, f"{SRC}:v1")
    await asyncio.to_thread(operator.deploy, "jobs", 4, f"{SRC}:v4")
    engines = [open_engine(pg_url, flows.registry()) for _ in range(2)]
    for n, engine in enumerate(engines):
        info = await engine.start("jobs", flows.Begin(), instance_id=f"before-{n}")
        assert info.version == 4
    await asyncio.to_thread(operator.rollback, "jobs", reason="v4 misbehaves")

    async def until_v1(engine: Engine) -> None:
        i = 0
        while True:
            i += 1
            iid = f"after-{id(engine)}-{i}"
            info = await engine.start("jobs", flows.Begin(), instance_id=iid)
            if info.version == 1:
                return
            await asyncio.sleep(0.01)  # a trickle of starts, not a busy loop

    # Each engine re-reads the registry after its poll interval (0.25 s by
    # default) by itself; the deadline only stops an engine that never does.
    async with asyncio.timeout(10):
        await asyncio.gather(*(until_v1(e) for e in engines))
    # The instances started before the rollback stay on v4.
    for n, engine in enumerate(engines):
        info = await engine.send(f"before-{n}", flows.Step())
        assert info.version == 4 and info.state.versions == (4,)
        await engine.close()
    operator.close()
