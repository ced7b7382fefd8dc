"""End to end: two engine processes under load, a controller, a plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.deploy import Deployments
from engine.health.controller import RolloutController, Rollouts
from engine.health.rollout import RolloutPlan
from engine.runtime import Engine
from engine.store import open_store
from tests.health import flows

ROOT = Path(__file__).resolve().parents[2]


def wait_until(what: Callable[[], bool], timeout: float, step: float = 0.1) -> None:
    """Poll a condition of the store until it holds (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    import threading

    tick = threading.Event()
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        tick.wait(step)


@pytest.mark.slow
@pytest.mark.parametrize(("version", "outcome"), [(2, "completed"), (3, "rolled_back")])
async def test_two_engines_and_a_guarded_rollout(
    durable_url: str, tmp_path: Path, version: int, outcome: str
) -> None:
    store = open_store(durable_url)
    Deployments(store).deploy("tills", 1, "tests.health.flows:v1", by="test")
    stop = tmp_path / "stop"
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.health.load",
                durable_url,
                str(stop),
                str(o),
                f"e{i}",
            ],
            env=env,
            cwd=ROOT,
        )
        for i, o in enumerate(outs)
    ]
    controller = None
    try:
        wait_until(lambda: all(Path(f"{o}.ready").exists() for o in outs), 30)
        rollouts = Rollouts(store, bucket_seconds=1, settle=0.5)
        plan = RolloutPlan(
            "tills",
            version,
            steps=(20.0, 50.0, 100.0),
            interval=1.0,
            min_sample=15,
            failure_limit=2,
            deadline=60,
        )
        rollouts.start(plan, source=f"tests.health.flows:v{version}", by="test")
        controller = RolloutController(rollouts, ttl=1.0, poll=0.2)
        controller.start()
        wait_until(lambda: rollouts.status("tills").status == outcome, 60)
        r = rollouts.status("tills")
    finally:
        if controller is not None:
            controller.stop()
        stop.touch()
        for p in procs:
            p.wait(timeout=60)
    assert all(p.returncode == 0 for p in procs)
    actions = [d.action for d in r.decisions]
    routing = Deployments(store).refresh().workflow("tills").routing
    assert routing is not None
    if outcome == "completed":
        assert actions[-1] == "complete" and "rollback" not in actions
        assert (routing.stable, routing.canary) == (2, None)
    else:
        assert actions[-1] == "rollback" and actions.count("rollback") == 1
        last = r.decisions[-1]
        assert last.error_rate > plan.max_error_rate and "error rate" in last.reason
        assert (routing.stable, routing.canary) == (1, None)
        audit = Deployments(store).refresh().audit
        assert audit[-1].action == "rollback" and "rollout #" in audit[-1].reason
    # No command lost, no running instance moved: every instance is on the
    # version it started on, with every accepted unit of work.
    results = [json.loads(o.read_text()) for o in outs]
    assert [e for res in results for e in res["errors"]] == []
    instances = {k: v for res in results for k, v in res["instances"].items()}
    versions = {v for v, _ in instances.values()}
    assert version in versions and 1 in versions
    engine = Engine(store, flows.registry())
    try:
        for iid, (v, worked) in instances.items():
            info = await engine.get(iid)
            assert (info.version, info.state.worked) == (v, worked), iid
    finally:
        await engine.close()
