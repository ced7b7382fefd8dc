"""A config version rolled out by a guarded plan, judged on the orders it served."""

from __future__ import annotations

import pytest

from engine import Engine, InstanceInfo, Send, Start
from engine.cli import main
from engine.core.errors import RolloutError
from engine.demo import orders
from engine.deploy import Deployments, open_engine
from engine.deploy.configadmin import set_config
from engine.health import Health
from engine.health.controller import Rollouts
from engine.health.rollout import RolloutPlan, config_subject
from engine.health.window import read_window
from engine.store import EventStore, open_store

START = 1_000_000.0


def _store(url: str) -> tuple[EventStore, Deployments]:
    store = open_store(url)
    ops = Deployments(store)
    ops.deploy("orders", 2, "engine.demo.orders:v2", by="t")
    set_config(ops, "orders", {"fraud_limit": 0.9}, by="t", registry=orders.registry())
    return store, ops


async def _orders(engine: Engine, prefix: str, n: int) -> None:
    """``n`` orders of orders@2 driven to their end (a failed check ends one)."""
    for i in range(n):
        iid = f"{prefix}-{i}"
        info = await engine.start(
            "orders", orders.PlaceOrder(iid, 50, "c"), instance_id=iid
        )
        info = await engine.send(iid, orders.CheckFraud())
        if info.status == "running":
            await engine.send(iid, orders.Pay(50))
            await engine.send(iid, orders.Ship("post"))


@pytest.mark.parametrize(
    ("limit", "outcome", "current"),
    [(0.99, "completed", 2), (0.0, "rolled_back", 1)],
    ids=["good-config-promoted", "bad-config-rolled-back"],
)
async def test_a_config_ramp_is_judged_on_the_instances_that_read_it(
    sqlite_url: str, limit: float, outcome: str, current: int
) -> None:
    store, ops = _store(sqlite_url)
    now = [START]
    clock = lambda: now[0]  # noqa: E731
    health = Health(store, bucket_seconds=1, clock=clock)
    engine = open_engine(store, orders.registry(), poll_interval=0.0, health=health)
    set_config(
        ops,
        "orders",
        {"fraud_limit": limit},
        canary=0,
        by="t",
        registry=orders.registry(),
    )
    rollouts = Rollouts(store, clock=clock, bucket_seconds=1, settle=0)
    plan = RolloutPlan(
        "orders",
        2,
        steps=(20, 50, 100),
        interval=10,
        min_sample=5,
        max_error_rate=0.05,
        max_latency_ratio=1000,
        failure_limit=1,
        config=True,
    )
    r = rollouts.start(plan, by="t")
    assert r.baseline == 1
    wc = ops.refresh().configs["orders"]
    assert (wc.current, wc.canary, wc.canary_bp) == (1, 2, 2000)
    await _orders(engine, "warm", 2)
    health.flush()  # the flush reads the rollouts stream: the ramp is watched now
    assert health.watch_config == {"orders": (2, 1)}

    await _orders(engine, "a", 40)
    health.flush()
    both = read_window(
        store, config_subject("orders"), 1, START, START + 10, bucket_seconds=1
    )
    base = read_window(
        store, config_subject("orders"), 0, START, START + 10, bucket_seconds=1
    )
    assert both.samples > 0 and base.samples > 0  # each side counted apart
    now[0] += 10
    decisions = rollouts.tick()
    if outcome == "completed":
        assert [d.action for d in decisions] == ["advance"], decisions
        wc = ops.refresh().configs["orders"]
        assert (wc.current, wc.canary, wc.canary_bp) == (1, 2, 5000)
        await _orders(engine, "b", 40)
        health.flush()
        now[0] += 10
        assert [d.action for d in rollouts.tick()] == ["complete"]
    else:
        [d] = decisions
        assert d.action == "rollback" and "error rate" in d.reason, d
    assert rollouts.status("orders").status == outcome
    wc = ops.refresh().configs["orders"]
    assert (wc.current, wc.canary) == (current, None)
    audit = [a for a in ops.view.audit if a.subject == "config:orders"]
    assert audit[-1].action == ("promote" if outcome == "completed" else "rollback")
    await engine.close()
    health.close()


def test_a_config_ramp_needs_a_stored_version_that_is_not_current(
    sqlite_url: str,
) -> None:
    store, _ = _store(sqlite_url)
    rollouts = Rollouts(store)
    for version, message in ((7, "no config v7"), (1, "current already")):
        plan = RolloutPlan("orders", version, steps=(10, 100), config=True)
        with pytest.raises(RolloutError, match=message):
            rollouts.start(plan, by="t")
    assert rollouts.refresh().latest("orders") is None
    with pytest.raises(RolloutError, match="not both a flag and a config"):
        RolloutPlan("orders", 2, config=True, flag="x")
    store.close()


def test_config_ramps_from_the_command_line(
    sqlite_url: str, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    store, ops = _store(sqlite_url)
    set_config(
        ops,
        "orders",
        {"fraud_limit": 0.8},
        canary=0,
        by="t",
        registry=orders.registry(),
    )
    store.close()
    base = ["--store", sqlite_url]
    assert (
        main(
            [*base, "rollout", "start", "orders", "--config", "2", "--steps", "20,100"]
        )
        == 0
    )
    assert "rollout #1" in capsys.readouterr().out
    assert main([*base, "config", "show", "orders"]) == 0
    assert "canary v2 at 20 %" in capsys.readouterr().out
    assert main([*base, "rollout", "abort", "orders", "--reason", "r"]) == 0
    capsys.readouterr()
    assert main([*base, "config", "show", "orders"]) == 0
    out = capsys.readouterr().out
    assert "canary" not in out and "v1" in out
    # The canary's share by hand, then everyone.
    with open_store(sqlite_url) as store:
        set_config(
            Deployments(store),
            "orders",
            {"fraud_limit": 0.7},
            canary=5,
            by="t",
            registry=orders.registry(),
        )
    assert main([*base, "config", "promote", "orders", "--percent", "30"]) == 0
    assert "canary v3 at 30 %" in capsys.readouterr().out
    assert main([*base, "config", "promote", "orders"]) == 0
    assert "v3" in capsys.readouterr().out


async def test_batched_commands_count_on_the_side_of_the_ramp_they_read(
    sqlite_url: str,
) -> None:
    """``handle_batch`` (the Kafka worker's path) counts per config version too."""
    store, ops = _store(sqlite_url)
    now = [START]
    clock = lambda: now[0]  # noqa: E731
    health = Health(store, bucket_seconds=1, clock=clock)
    engine = open_engine(store, orders.registry(), poll_interval=0.0, health=health)
    set_config(
        ops,
        "orders",
        {"fraud_limit": 0.99},
        canary=0,
        by="t",
        registry=orders.registry(),
    )
    Rollouts(store, clock=clock).start(
        RolloutPlan("orders", 2, steps=(50, 100), config=True), by="t"
    )
    await _orders(engine, "warm", 1)
    health.flush()
    ids = [f"b-{i}" for i in range(30)]
    starts = [Start("orders", orders.PlaceOrder(i, 50, "c"), i) for i in ids]
    assert all(isinstance(r, InstanceInfo) for r in await engine.handle_batch(starts))
    results = await engine.handle_batch([Send(i, orders.CheckFraud()) for i in ids])
    assert all(isinstance(r, InstanceInfo) for r in results)
    health.flush()
    sides = [
        read_window(
            store, config_subject("orders"), side, START, START + 10, bucket_seconds=1
        ).accepted
        for side in (1, 0)
    ]
    assert sum(sides) >= 30 and all(sides)  # every check counted, on both sides
    await engine.close()
    health.close()
