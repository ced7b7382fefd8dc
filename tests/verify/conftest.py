"""Fixtures of the verify tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import SyncEngine
from engine.deploy import Deployments
from tests.verify import flows

SRC = "tests.verify.flows"


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store with account@1 deployed and three instances.

    ``a1`` deposits over 100 (the hotfix changes its state from position 4
    on), ``a2`` only small amounts, ``a3`` is closed.
    """
    u = f"sqlite:///{tmp_path / 'verify.db'}"
    with Deployments(u) as ops:
        ops.deploy("account", 1, f"{SRC}:v1", by="ann")
    with SyncEngine(u, flows.registry()) as engine:
        engine.start("account", flows.Open(), instance_id="a1")
        engine.send("a1", flows.Deposit(5))
        engine.send("a1", flows.Deposit(500))
        engine.send("a1", flows.Deposit(1))
        engine.start("account", flows.Open("bob"), instance_id="a2")
        engine.send("a2", flows.Deposit(7))
        engine.start("account", flows.Open("cy"), instance_id="a3")
        engine.send("a3", flows.Deposit(900))
        engine.send("a3", flows.Close())
    return u
