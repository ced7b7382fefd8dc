"""Fixtures of the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.deploy import Deployments
from engine.store import EventStore, open_store


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    """An open store of every adapter."""
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def deployments(store: EventStore) -> Deployments:
    """A registry on ``store``."""
    return Deployments(store, poll_interval=0.0)
