"""Engines over every adapter with the sales workflow, a gateway and a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from engine import Engine, EventStore, open_store
from engine.runtime.effects import EffectRunner, TimerService
from engine.runtime.handlers import ManualClock

from . import flows


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def gateway() -> flows.Gateway:
    return flows.Gateway()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def engine(store: EventStore) -> AsyncIterator[Engine]:
    e = Engine(store, flows.registry(), deployments=False)
    yield e
    await e.close()


@pytest.fixture
def runner(engine: Engine, gateway: flows.Gateway, clock: ManualClock) -> EffectRunner:
    return EffectRunner(engine, flows.handlers(gateway), clock=clock)


@pytest.fixture
def timers(engine: Engine, clock: ManualClock) -> TimerService:
    return TimerService(engine, clock=clock)
