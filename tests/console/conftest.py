"""A store with versions, a rollout with decisions, a flag and a dead letter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from engine.cli import load_app
from engine.console import Settings, create_app
from engine.deploy import Deployments
from engine.health import Health
from engine.health.controller import Rollouts
from engine.health.rollout import RolloutPlan
from engine.runtime import Engine
from engine.store import DeadLetter, open_store
from tests.health.flows import Close, Fail, Open, Work, registry

APP = "tests.health.flows:registry"
T0 = 1_000_000.0
"""The fake clock's start (the rollout's windows are judged on it)."""


@dataclass
class Seeded:
    url: str
    client: Callable[..., TestClient]
    """``client(**settings)``: a TestClient of a console over the store."""


def seed(url: str, t0: float = T0) -> None:
    """tills v1 with 12 instances (2 completed, 1 failed), a v4 one that read a
    flag, a rollout of v2 with two judged windows from ``t0`` (a whole number of
    seconds), flag turbo, a dead letter."""
    with Deployments(url) as reg:
        reg.deploy("tills", 1, "tests.health.flows:v1", by="t")
        reg.set_flag("turbo", "boolean", enabled=True, by="t")

    async def instances() -> None:
        e = Engine(url, registry())
        try:
            for i in range(12):
                await e.start("tills", Open(), instance_id=f"t{i:02}", version=1)
            await e.send("t00", Close())
            await e.send("t01", Close())
            await e.send("t02", Fail())
            await e.start("tills", Open(), instance_id="flagged", version=4)
            await e.send("flagged", Work(1))
        finally:
            await e.close()

    asyncio.run(instances())
    store = open_store(url)
    try:
        now = [t0]
        rollouts = Rollouts(store, clock=lambda: now[0], bucket_seconds=1, settle=0)
        plan = RolloutPlan("tills", 2, steps=(10, 50, 100), interval=10, min_sample=5)
        rollouts.start(plan, source="tests.health.flows:v2", by="ops", reason="go")
        health = Health(store, bucket_seconds=1, clock=lambda: now[0])
        for latency in (0.004, 0.02):  # two windows: the second one slower
            for _ in range(10):
                health.accepted(
                    "tills", 2, start=False, status="running", seconds=latency
                )
                health.accepted(
                    "tills", 1, start=False, status="running", seconds=0.004
                )
            health.flush()
            now[0] += 10
            rollouts.tick()
        health.close()
        letter = DeadLetter("g", "orders", 0, 7, "bad json", b"k", b"{")
        store.append([], dead_letters=[letter])
    finally:
        store.close()


@pytest.fixture
def seeded(durable_url: str) -> Iterator[Seeded]:
    seed(durable_url)
    clients: list[TestClient] = []
    opened: list[Settings] = []

    def client(**options: object) -> TestClient:
        settings = Settings(
            store_url=durable_url,
            load_app=lambda: load_app(APP),
            operator="console-default",
            bucket_seconds=1,
            **options,  # type: ignore[arg-type]
        )
        opened.append(settings)
        c = TestClient(create_app(settings), base_url="http://console.test")
        clients.append(c)
        return c

    yield Seeded(durable_url, client)
    for c in clients:
        c.close()
    for s in opened:
        s.close()


def csrf(client: TestClient) -> dict[str, str]:
    """Headers of an action: the CSRF token and an operator."""
    token = client.get("/api/csrf").json()["csrf"]
    return {"X-CSRF-Token": token, "X-Nonstop-Operator": "ann"}
