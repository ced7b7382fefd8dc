"""The demo's hotfix phase: changed code for a running version is refused.

With orders@1 instances in flight, the operator tries to deploy the same
``orders@1`` again with a changed reducer (:mod:`engine.demo.orders_hotfix`).
The deploy first replays the version's instances under the new code and
compares each state with the digest recorded when it was written: they
differ, so nothing is deployed and the refusal names an instance and the
position where it diverges.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.text import Text

from engine.core.errors import VerifyFailed
from engine.demo import orders
from engine.demo.common import WORKFLOW
from engine.deploy import Deployments
from engine.deploy.guard import deploy_guarded

__all__ = ["HOTFIX_SOURCE", "hotfix_phase"]

HOTFIX_SOURCE = "engine.demo.orders_hotfix:v1"
"""The changed code of orders@1."""
SAMPLE = 400
"""Orders the check replays: a sample keeps the demo fast on a store that
many runs have filled (a deploy without a sample replays them all)."""


def _attempt(store_url: str) -> VerifyFailed | None:
    with Deployments(store_url) as ops:
        if not ops.refresh().workflow(WORKFLOW).deployments:
            ops.deploy(WORKFLOW, 1, "engine.demo.orders:v1", by="demo")
        try:
            deploy_guarded(
                ops,
                store_url,
                WORKFLOW,
                1,
                HOTFIX_SOURCE,
                registry=orders.registry(),
                instances=SAMPLE,
                by="demo",
                reason="hotfix: fraud score 0 for orders@1",
            )
        except VerifyFailed as exc:
            return exc
    return None


async def hotfix_phase(store_url: str, run_id: str, out: Console) -> str | None:
    """Try the hotfix; None when it was refused as it must be, else the problem."""
    refused = await asyncio.to_thread(_attempt, store_url)
    if refused is None:
        return f"the changed code of {WORKFLOW}@1 was deployed; it must be refused"
    mine = [d for d in refused.divergences if d.startswith(f"demo-{run_id}-")]
    example = (mine or refused.divergences)[0]
    out.print(
        Text(
            f"hotfix: deploying {WORKFLOW}@1 again from {HOTFIX_SOURCE} was "
            f"refused; verify replayed {len(refused.divergences)} order(s) of "
            f"{WORKFLOW}@1 into other states, e.g. {example}"
        )
    )
    return None
