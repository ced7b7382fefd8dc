"""``nonstop store appends [MODE]``: show or switch how a store runs its appends.

A PostgreSQL store appends ``serial`` (one append in flight per database, the
default) or ``concurrent`` (several at once, from every engine process; see
``docs/operations.md``). The mode is recorded in the store, and switching it
is live: engines keep running, their appends take the new mode at once, and
they use its number of appends in flight once they reopen the store.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.commands import CliContext
from engine.store import open_store
from engine.store.urls import APPENDS

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``store appends``."""
    p = sub.add_parser("store", help="store settings: the append mode")
    inner = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    q = inner.add_parser(
        "appends",
        help="show or switch the append mode (serial or concurrent)",
        description="Without MODE, print the store's append mode. With MODE, "
        "switch every process on the store to it, live.",
    )
    q.add_argument("mode", nargs="?", choices=APPENDS, metavar="MODE")
    q.set_defaults(run=_appends)


def _appends(ctx: CliContext, args: argparse.Namespace) -> int:
    from engine.store.postgres import PostgresStore

    store = open_store(ctx.store_url, create=args.mode is not None)
    try:
        if not isinstance(store, PostgresStore):
            if args.mode in (None, "serial"):
                ctx.out.print(
                    f"{store.url} appends serial (the only mode of this kind of store)"
                )
                return 0
            print(
                f"nonstop: error: {store.url} can only append serially: the "
                "concurrent mode is a PostgreSQL store's",
                file=sys.stderr,
            )
            return 2
        if args.mode is None:
            ctx.out.print(f"{store.url} appends {store.appends}")
            if store.appends == "concurrent":
                ctx.out.print(_held_back(store))
            return 0
        changed = store.set_appends(args.mode)
        ctx.out.print(
            f"{store.url} appends {args.mode}"
            + ("" if changed else " already; nothing changed")
        )
        return 0
    finally:
        store.close()


def _held_back(store: Any) -> str:
    """A line on what holds readers of the global order back, if anything."""
    held = store.held_back()
    if not held.positions:
        return f"readers see every committed position (up to {held.last})"
    who = (
        f"transaction of server process {held.pid} (database {held.database}, "
        f"application {held.application or '-'}, running since {held.since})"
        if held.pid is not None
        else "a transaction this role cannot see"
    )
    return (
        f"readers stop at position {held.readable}: {held.positions} committed "
        f"position(s) wait behind the oldest running {who}"
    )
