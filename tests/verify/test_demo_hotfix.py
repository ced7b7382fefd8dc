"""The demo's hotfix phase: the changed orders@1 reducer is refused."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from rich.console import Console

from engine import SyncEngine
from engine.demo import orders
from engine.demo.hotfix import hotfix_phase
from engine.deploy import Deployments


def test_the_hotfix_is_refused_naming_an_instance_and_position(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    with SyncEngine(url, orders.registry()) as engine:
        for i in range(3):
            iid = f"demo-run1-{i:04d}"
            engine.start(
                "orders", orders.PlaceOrder(iid, 10 + i), instance_id=iid, version=1
            )
    buf = io.StringIO()
    problem = asyncio.run(hotfix_phase(url, "run1", Console(file=buf, width=300)))
    assert problem is None
    text = buf.getvalue()
    assert "refused" in text and "3 order(s)" in text
    assert (
        "demo-run1-0000 at position 2 (OrderPlaced): fraud_score: None -> 0.0" in text
    )
    with Deployments(url) as ops:
        audit = [a.action for a in ops.refresh().audit]
    assert audit == ["deploy", "deploy"]  # orders@1 and its routing; no redeploy
