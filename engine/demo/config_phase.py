"""The config phase of ``nonstop demo``: tune the fraud limit of a running system.

While orders flow through ``orders@2`` on one engine (never restarted), the
operator stores a config with a strict fraud limit, has a bad config (a
negative limit) refused with nothing written, and rolls the config back. Each
order's fraud check must have used the limit current when it first read its
config; the phase checks that from the stored scores and outcomes.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.core.errors import ConfigError, NonstopError
from engine.demo import orders
from engine.demo.common import CUSTOMERS, WORKFLOW, DemoRun
from engine.deploy import Deployments, open_engine
from engine.deploy.configadmin import rollback_config, set_config
from engine.runtime import Engine

__all__ = ["config_phase"]

_STRICT = 0.5
"""The fraud limit the operator tries mid-run (rejects about half the orders)."""
_BATCH = 16
"""Orders per step of the phase."""


async def config_phase(
    store_url: str, run: DemoRun, rng: random.Random, out: Console
) -> tuple[int, Table]:
    """Run the phase on ``store_url``; problems go to ``run.errors``.

    Returns:
        The commits written and a summary table.
    """
    ops = Deployments(store_url)
    code = orders.registry()
    engine = open_engine(store_url, code, poll_interval=0.05)
    table = Table(title="config phase: orders@2 fraud limit, no restart")
    for col in ("step", "config", "orders", "rejected", "as configured"):
        table.add_column(col)
    by = "demo"
    try:
        base = await asyncio.to_thread(
            set_config,
            ops,
            WORKFLOW,
            {},
            by=by,
            reason="demo: the defaults",
            registry=code,
        )
        steps: list[tuple[str, str, dict[str, Any] | None]] = [
            ("baseline", f"v{base.current}: defaults", None),
            ("tighten", "fraud_limit 0.5", {"fraud_limit": _STRICT}),
        ]
        count = 0
        for name, label, document in steps:
            if document is not None:
                wc = await asyncio.to_thread(
                    set_config,
                    ops,
                    WORKFLOW,
                    document,
                    by=by,
                    reason="demo",
                    registry=code,
                )
                label = f"v{wc.current}: {label}"
                out.print(Text(f"operator: config set {WORKFLOW} -> {label}"))
                await _picked_up(engine)
            count += await _batch(engine, run, rng, name, label, table, count)
        try:
            await asyncio.to_thread(
                set_config, ops, WORKFLOW, {"fraud_limit": -0.1}, by=by, registry=code
            )
            run.fail(WORKFLOW, "a negative fraud limit was accepted")
        except ConfigError as exc:
            out.print(Text(f"operator: bad config refused: {exc}"))
        wc = await asyncio.to_thread(
            rollback_config,
            ops,
            WORKFLOW,
            by=by,
            reason="demo: too strict",
            registry=code,
        )
        label = f"v{wc.current}: rolled back"
        out.print(Text(f"operator: config rollback {WORKFLOW} -> {label}"))
        await _picked_up(engine)
        await _batch(engine, run, rng, "rollback", label, table, count)
    finally:
        await engine.close()
        await asyncio.to_thread(ops.close)
    return engine.commits, table


async def _picked_up(engine: Engine) -> None:
    """Let the engine's poll interval pass: its next command re-reads config."""
    await asyncio.sleep(0.06)


async def _batch(
    engine: Engine,
    run: DemoRun,
    rng: random.Random,
    step: str,
    label: str,
    table: Table,
    offset: int,
) -> int:
    """Start and fraud-check a batch of orders; check each used the live limit."""
    ids = [f"demo-{run.run_id}-k{offset + i:03d}" for i in range(_BATCH)]
    limit = await asyncio.to_thread(_limit, engine)
    outcomes = await asyncio.gather(*(_order(engine, run, rng, iid) for iid in ids))
    rejected = sum(1 for passed, _ in outcomes if passed is False)
    right = sum(
        1
        for passed, score in outcomes
        if passed is not None and passed == (score < limit)
    )
    if right != len(ids):
        run.fail(step, f"{len(ids) - right} order(s) did not use fraud limit {limit}")
    table.add_row(step, label, str(len(ids)), str(rejected), f"{right}/{len(ids)}")
    return len(ids)


def _limit(engine: Engine) -> float:
    """The fraud limit this engine now serves to new readers."""
    router = engine.router
    assert isinstance(router, Deployments)
    router.refresh()
    _, config = router.config(orders.v2, "", None)
    return float(config.fraud_limit)


async def _order(
    engine: Engine, run: DemoRun, rng: random.Random, iid: str
) -> tuple[bool | None, float]:
    """Place and fraud-check one order on orders@2; pay and ship it if it passed."""
    amount = rng.randint(5, 500)
    try:
        await engine.start(
            WORKFLOW,
            orders.PlaceOrder(iid, amount, rng.choice(CUSTOMERS)),
            instance_id=iid,
            version=2,
        )
        info = await engine.send(iid, orders.CheckFraud())
        run.commands += 2
        if info.status == "running":
            await engine.send(iid, orders.Pay(amount))
            await engine.send(iid, orders.Ship("post"))
            run.commands += 2
    except NonstopError as exc:
        run.fail(iid, f"config phase: {exc}")
        return None, 0.0
    score = info.state.fraud_score
    return info.state.stage != "rejected", float(score if score is not None else 0.0)
