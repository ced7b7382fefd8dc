"""Two engines on PostgreSQL follow a config change and a live flag's kill in 1 s."""

from __future__ import annotations

import asyncio

import pytest

from engine.deploy import Deployments, open_engine
from engine.deploy.configadmin import set_config
from engine.deploy.configs import read_reports
from engine.runtime import Engine
from engine.store import open_store
from tests.deploy import configflows as cf

pytestmark = pytest.mark.postgres


async def _until_seen(engine: Engine, iid: str, seen: object, column: int) -> None:
    """Send checks to ``iid`` until one records ``seen`` in ``column``."""
    while True:
        info = await engine.send(iid, cf.Check(0))
        if info.state.checks[-1][column] == seen:
            return


async def _two_engines(url: str) -> tuple[Engine, Engine]:
    engines = (
        open_engine(url, cf.registry(), poll_interval=0.25),
        open_engine(url, cf.registry(), poll_interval=0.25),
    )
    for n, engine in enumerate(engines):
        await engine.start("gate", cf.Begin(), instance_id=f"e{n}", version=2)
    return engines


async def test_two_engines_see_a_new_config_within_a_second(pg_url: str) -> None:
    admin = Deployments(pg_url)
    doc = {"threshold": 10}
    await asyncio.to_thread(set_config, admin, "gate", doc, registry=cf.registry())
    engines = await _two_engines(pg_url)
    for n, engine in enumerate(engines):
        assert (await engine.send(f"e{n}", cf.Check(1))).state.checks[-1][1:3] == (
            10,
            10,
        )
    doc = {"threshold": 77}
    await asyncio.to_thread(set_config, admin, "gate", doc, registry=cf.registry())
    # Column 2 is ctx.config_latest; column 1 (pinned) stays at 10.
    await asyncio.wait_for(
        asyncio.gather(
            *(_until_seen(e, f"e{n}", 77, 2) for n, e in enumerate(engines))
        ),
        timeout=1.0,
    )
    for n, engine in enumerate(engines):
        assert (await engine.get(f"e{n}")).state.checks[-1][1] == 10
        await engine.close()
    admin.close()


async def test_a_live_flag_kill_reaches_in_flight_instances_within_a_second(
    pg_url: str,
) -> None:
    admin = Deployments(pg_url)
    await asyncio.to_thread(set_config, admin, "gate", {}, registry=cf.registry())
    await asyncio.to_thread(admin.set_flag, "gate-open", "boolean", enabled=True)
    engines = await _two_engines(pg_url)
    for n, engine in enumerate(engines):
        # Each instance reads the live flag (on) before the kill.
        assert (await engine.send(f"e{n}", cf.Check(1))).state.checks[-1][3] is True
    await asyncio.to_thread(admin.kill_flag, "gate-open", reason="incident")
    await asyncio.wait_for(
        asyncio.gather(
            *(_until_seen(e, f"e{n}", False, 3) for n, e in enumerate(engines))
        ),
        timeout=1.0,
    )
    for n, engine in enumerate(engines):
        reads = [e.ctx for e in await engine.history(f"e{n}") if e.ctx]
        assert ["live", ["gate-open", True]] in reads[0]
        assert ["live", ["gate-open", False]] in reads[-1]
        await engine.close()
    admin.close()


async def test_an_engine_on_old_code_keeps_its_config_beside_a_new_one(
    pg_url: str,
) -> None:
    admin = Deployments(pg_url)
    await asyncio.to_thread(
        set_config, admin, "gate", {"threshold": 10}, registry=cf.registry()
    )
    store = open_store(pg_url)
    old = Engine(
        store, cf.old_registry(), router=Deployments(store, worker="old-build")
    )
    new = Engine(store, cf.registry(), router=Deployments(store, worker="new-build"))
    await old.start("gate", cf.Begin(), instance_id="o", version=1)
    await new.start("gate", cf.Begin(), instance_id="n", version=2)
    # Valid for the current code: the old build's type has no `note`.
    doc = {"threshold": 50, "note": "x"}
    await asyncio.to_thread(set_config, admin, "gate", doc, registry=cf.registry())
    await asyncio.wait_for(_until_seen(new, "n", 50, 2), timeout=1.0)

    async def reported() -> dict[str, tuple[int, int]]:
        while True:
            await old.send("o", cf.Check(0))  # each command may refresh
            got = await asyncio.to_thread(read_reports, store, "gate", admin.codec)
            runs = {w: (r.applied, r.refused) for w, (_, r) in got.items()}
            if runs.get("old-build") == (1, 2):
                return runs

    runs = await asyncio.wait_for(reported(), timeout=5.0)
    assert runs == {"old-build": (1, 2), "new-build": (2, 0)}
    assert (await old.get("o")).state.checks[-1][1] == 10  # the last good one
    await old.close()
    await new.close()
    admin.close()
