"""``nonstop export``: stored histories to a JSON-lines file, as test fixtures.

Replay the file in a test suite with
:func:`engine.testing.histories.replay_histories`.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args

from rich.text import Text

from engine.commands import CliContext
from engine.core.errors import CommandInputError
from engine.core.workflow import ListingStatus
from engine.store import open_store
from engine.testing.histories import export_histories

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``export`` to ``sub``."""
    p = sub.add_parser(
        "export", help="write stored histories to a JSON-lines file (test fixtures)"
    )
    p.add_argument("workflow", metavar="W")
    p.add_argument("--version", metavar="V", type=int, help="only this version")
    p.add_argument("--status", metavar="S", help="only instances with this status now")
    p.add_argument("--limit", metavar="N", type=int, help="at most N instances")
    p.add_argument(
        "--raw", action="store_true", help="stored envelopes (base64), not upcast"
    )
    p.add_argument("--output", metavar="FILE.jsonl", required=True)
    p.set_defaults(run=_export)


def _export(ctx: CliContext, args: argparse.Namespace) -> int:
    statuses = get_args(ListingStatus)
    if args.status is not None and args.status not in statuses:
        raise CommandInputError(
            f"--status {args.status!r}: expected one of {', '.join(statuses)}"
        )
    if args.limit is not None and args.limit < 1:
        raise CommandInputError(f"--limit {args.limit}: expected N >= 1")
    registry = ctx.registry()
    with open_store(ctx.store_url) as store:
        n = export_histories(
            store,
            registry,
            args.output,
            args.workflow,
            version=args.version,
            status=args.status,
            limit=args.limit,
            raw=args.raw,
        )
    ctx.out.print(Text(f"wrote {n} histories of {args.workflow} to {args.output}"))
    return 0
