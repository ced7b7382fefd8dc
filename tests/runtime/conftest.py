"""Engines over every adapter, with the order workflow (v1 current, v2 available)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from engine import Engine, EventStore, open_store
from engine.demo import orders


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    """An open store shared by the engines of one test, closed at the end."""
    s = open_store(store_url)
    yield s
    s.close()  # closing twice is harmless: an engine may have closed it


@pytest.fixture
async def engine(store: EventStore) -> AsyncIterator[Engine]:
    """An engine running the order workflow."""
    e = Engine(store, orders.registry())
    yield e
    await e.close()
