"""A plain ``Engine(url, registry)`` honours the store's deployments and flags.

The README and the tutorial open engines this way; ``nonstop deploy``,
``promote`` and ``rollback`` must reach them without ``open_engine``. Opting
out (``deployments=False``) is explicit and warns when the store is routed.
"""

from __future__ import annotations

import logging

import pytest

from engine import Engine, SyncEngine
from engine.deploy import Deployments
from engine.store import EventStore
from tests.deploy import flows

KEYS = [f"job-{i}" for i in range(40)]


def _expected(deployments: Deployments, version_by_key: dict[str, int]) -> None:
    view = deployments.refresh()
    for key, version in version_by_key.items():
        assert version == view.route("jobs", key), key


async def test_a_plain_engine_routes_by_the_stores_canary(
    store: EventStore, deployments: Deployments
) -> None:
    deployments.deploy("jobs", 1, "tests.deploy.flows:v1")
    deployments.deploy("jobs", 2, "tests.deploy.flows:v2", canary=30)
    reg = flows.registry()
    reg.set_current("jobs", 1)  # the code says v1; the store's routing wins
    async with Engine(store, reg) as engine:
        got = {}
        for key in KEYS:
            info = await engine.start("jobs", flows.Begin(), instance_id=key)
            got[key] = info.version
        _expected(deployments, got)
    assert set(got.values()) == {1, 2}  # a 30 % canary over 40 keys takes some


def test_the_sync_engine_sees_a_rollback_without_a_restart(
    store: EventStore, deployments: Deployments
) -> None:
    deployments.deploy("jobs", 1, "tests.deploy.flows:v1")
    deployments.deploy("jobs", 2, "tests.deploy.flows:v2")
    with SyncEngine(store, flows.registry()) as engine:
        assert engine.start("jobs", flows.Begin(), instance_id="a").version == 2
        deployments.rollback("jobs")
        engine.engine.router.refresh()  # what the next poll does
        assert engine.start("jobs", flows.Begin(), instance_id="b").version == 1


async def test_a_workflow_never_deployed_routes_by_the_registry(
    store: EventStore,
) -> None:
    reg = flows.registry()
    reg.set_current("jobs", 2)
    async with Engine(store, reg) as engine:
        assert (await engine.start("jobs", flows.Begin())).version == 2


async def test_opting_out_warns_when_the_store_is_routed(
    store: EventStore, deployments: Deployments, caplog: pytest.LogCaptureFixture
) -> None:
    reg = flows.registry()
    reg.set_current("jobs", 1)
    with caplog.at_level(logging.WARNING, logger="nonstop.runtime"):
        quiet = Engine(store, reg, deployments=False)  # not closed: shares store
        assert quiet.router is None
    assert not caplog.records  # nothing deployed: nothing to warn about
    deployments.deploy("jobs", 2, "tests.deploy.flows:v2")
    with caplog.at_level(logging.WARNING, logger="nonstop.runtime"):
        async with Engine(store, reg, deployments=False) as engine:
            info = await engine.start("jobs", flows.Begin(), instance_id="x")
    assert info.version == 1  # routing ignored, as asked
    (warning,) = caplog.records
    assert "deployments=False" in warning.getMessage()
