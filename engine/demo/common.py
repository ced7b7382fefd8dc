"""What the demos share: the record of a run, the next command, the checks.

Both ``nonstop demo`` (:mod:`engine.demo.local`) and ``nonstop demo --kafka``
(:mod:`engine.demo.kafka`) drive orders of :mod:`engine.demo.orders` to their
end and then check each order's stored history against the version it had to
run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.table import Table

from engine.runtime import Engine, InstanceInfo

__all__ = ["CUSTOMERS", "WORKFLOW", "DemoRun", "next_command", "summary", "verify"]

WORKFLOW = "orders"
"""The workflow the demos run."""

CUSTOMERS = ("ada", "grace", "alan", "edsger", "barbara", "donald", "margaret")
"""Customer names the demos draw from."""


@dataclass
class DemoRun:
    """What one demo run started and what went wrong."""

    run_id: str
    """Part of every instance id of the run (runs may share a store)."""
    expected: dict[str, int] = field(default_factory=dict)
    """Instance id -> the version it must run under."""
    amounts: dict[str, int] = field(default_factory=dict)
    """Instance id -> the amount of its order (what ``Pay`` pays)."""
    commands: int = 0
    """Commands applied."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(instance id, what went wrong)."""
    upcast: int = 0
    """Events read back through an upcaster (stored by the previous release)."""

    def fail(self, iid: str, what: str) -> None:
        """Record a problem of instance ``iid``."""
        self.errors.append((iid, what))


def next_command(info: InstanceInfo) -> str:
    """The name of the command that moves a running order on.

    ``check`` and ``pay`` depend on the version: ``orders@1`` has no fraud check.
    """
    stage = getattr(info.state, "stage", "")
    if stage == "placed":
        return "pay" if info.version == 1 else "check"
    if stage == "checked":
        return "pay"
    if stage == "paid":
        return "ship"
    return f"nothing (stage {stage!r})"


async def verify(
    engine: Engine, run: DemoRun, ids: Sequence[str]
) -> dict[str, InstanceInfo]:
    """Check each instance's stored history against the version it must run.

    Problems go to ``run.errors``; returns each instance's final state.
    """
    finals: dict[str, InstanceInfo] = {}

    async def one(iid: str) -> None:
        version = run.expected[iid]
        ref = f"{WORKFLOW}@{version}"
        info = await engine.get(iid)
        finals[iid] = info
        history = await engine.history(iid)
        run.upcast += sum(e.stored_schema != e.schema for e in history)
        wrong = sorted({e.workflow for e in history if e.workflow != ref})
        if wrong or info.version != version:
            found = ", ".join(wrong) or f"{WORKFLOW}@{info.version}"
            run.fail(iid, f"started on {ref} but ran {found}")
        allowed = ("completed",) if version == 1 else ("completed", "failed")
        if info.status not in allowed:
            run.fail(iid, f"ran {ref} and ended {info.status}")

    await asyncio.gather(*(one(iid) for iid in ids if iid in run.expected))
    return finals


def summary(run: DemoRun, finals: dict[str, InstanceInfo]) -> Table:
    """A table of the run's orders per version, with a verdict per version."""
    table = Table(title=f"Run {run.run_id}: orders per version")
    table.add_column("version", no_wrap=True)
    table.add_column("started", justify="right")
    table.add_column("completed", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("running", justify="right")
    table.add_column("verdict")
    for version in sorted(set(run.expected.values())):
        ref = f"{WORKFLOW}@{version}"
        mine = [i for i, v in run.expected.items() if v == version]
        status = [finals[i].status for i in mine if i in finals]
        problems = [e for e in run.errors if run.expected.get(e[0]) == version]
        if problems:
            verdict = f"[red]FAILED[/]: {len(problems)} problem(s)"
        elif version == 1:
            verdict = f"[green]ok[/]: all completed on {ref}"
        else:
            verdict = f"[green]ok[/]: all ended on {ref} (failed = fraud check)"
        table.add_row(
            ref,
            str(len(mine)),
            str(status.count("completed")),
            str(status.count("failed")),
            str(status.count("running")),
            verdict,
        )
    return table
