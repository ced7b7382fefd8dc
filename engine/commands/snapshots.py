"""``nonstop snapshots migrate``: re-snapshot instances at the current state schema.

It runs beside live traffic (no instance locks, the engine's cache left alone),
in batches, resumable (the position reached is stored after every batch) and
throttled by ``--rate``; it prints one progress line per batch.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.text import Text

from engine.commands import CliContext
from engine.snapshots import MigrationProgress, migrate_snapshots, migration_name

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``snapshots migrate``."""
    p = sub.add_parser("snapshots", help="snapshot maintenance")
    inner = p.add_subparsers(dest="snapshots_command", metavar="ACTION", required=True)
    migrate = inner.add_parser(
        "migrate",
        help="re-snapshot instances whose snapshot is older than the current "
        "state schema (resumable, throttled, beside live traffic)",
        description="Walk every instance in start order and save a fresh snapshot "
        "where the stored one is not at the current state schema. Progress is "
        "stored after each batch: run it again to resume after a stop.",
    )
    migrate.add_argument(
        "--batch",
        metavar="N",
        type=int,
        default=100,
        help="instances per batch; progress is saved after each (default: 100)",
    )
    migrate.add_argument(
        "--rate",
        metavar="R",
        type=float,
        default=None,
        help="at most R instances per second (default: no limit)",
    )
    migrate.set_defaults(run=_migrate)


def _migrate(ctx: CliContext, args: argparse.Namespace) -> int:
    out = ctx.out

    def show(p: MigrationProgress) -> None:
        if p.done:
            return
        counts = (
            f"{p.written} re-snapshotted, {p.current} current, "
            f"{p.skipped} without snapshots, {p.failed} failed"
        )
        line = f"{p.fraction:6.1%}  {p.scanned} instances: {counts}"
        out.print(Text(f"{line} (position {p.position})"))

    async def job(engine: Any) -> MigrationProgress:
        name = migration_name(engine.registry)
        start = engine.store.tracking_position(name)
        if start:
            out.print(Text(f"resuming after global position {start} ({name})"))
        return await migrate_snapshots(
            engine, batch=args.batch, rate=args.rate, on_progress=show, name=name
        )

    done = ctx.with_engine(job)
    out.print(
        Text(
            f"snapshots migrated: {done.scanned} instances looked at, "
            f"{done.written} re-snapshotted, {done.current} already current, "
            f"{done.failed} failed"
        )
    )
    return 1 if done.failed else 0
