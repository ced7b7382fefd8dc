"""``nonstop effects list|retry|cancel`` and ``nonstop run``: the outbox by hand.

``effects list`` shows effect requests and timers (``--failed``: the effects
whose handler gave up), ``effects retry ID`` puts a failed one back to be run
again with the same idempotency key, ``effects cancel ID`` drops a pending or
failed one. ``run`` runs the effect runner and the timer service of the app
beside an engine until SIGTERM or Ctrl-C (``--once``: one round of each).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from engine.commands import CliContext
from engine.commands.guard import add_guard_args, start_guard
from engine.commands.instances import print_json
from engine.core.effects import OutboxKind
from engine.runtime.handlers import default_handlers
from engine.store import EventStore, open_store
from engine.store.outbox import Entry, OutboxStatus

__all__ = ["add_outbox", "outbox_by_version", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``effects list|retry|cancel`` and ``run``."""
    p = sub.add_parser("effects", help="effect requests and timers in the outbox")
    inner = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = inner.add_parser("list", help="effects and timers, oldest first")
    ls.add_argument(
        "--failed", action="store_true", help="only effects whose handler gave up"
    )
    ls.add_argument("--kind", choices=("effect", "timer"), help="only this kind")
    ls.add_argument(
        "--status",
        choices=("pending", "done", "failed", "cancelled"),
        help="only this status",
    )
    ls.add_argument("--limit", type=int, default=100, help="most rows (default 100)")
    ls.add_argument("--json", action="store_true", help="print JSON for scripts")
    ls.set_defaults(run=_list)
    retry = inner.add_parser(
        "retry", help="run a failed effect again (same idempotency key)"
    )
    retry.add_argument("id", help="the effect's id (from effects list)")
    retry.set_defaults(run=_retry)
    cancel = inner.add_parser("cancel", help="drop a pending or failed effect or timer")
    cancel.add_argument("id", help="the id (from effects list)")
    cancel.set_defaults(run=_cancel)
    run = sub.add_parser(
        "run",
        help="run the app's effect handlers and timers beside an engine",
        description="Run the effect runner and the timer service of the app (its "
        "@effect_handler functions) until SIGTERM or Ctrl-C. Several may run on "
        "one PostgreSQL store; one per SQLite file.",
    )
    run.add_argument("--once", action="store_true", help="one round of each, then exit")
    add_guard_args(run)
    run.set_defaults(run=_run)


def _list(ctx: CliContext, args: argparse.Namespace) -> int:
    status: OutboxStatus | None = "failed" if args.failed else args.status
    kind: OutboxKind | None = (
        "effect" if args.failed and args.kind is None else args.kind
    )
    with open_store(ctx.store_url, create=False) as store:
        rows = store.outbox().entries(kind=kind, status=status, limit=args.limit)
    if args.json:
        print_json([_json(e) for e in rows])
        return 0
    table = Table(title="failed effects" if args.failed else "outbox")
    for name in ("id", "kind", "workflow", "type", "status", "attempts", "due"):
        table.add_column(name)
    table.add_column("error")
    for e in rows:
        table.add_row(
            Text(e.id),
            e.item.kind,
            e.item.workflow,
            Text(_type(e)),
            _status(e.status),
            str(e.attempts),
            _when(e.item.due_at),
            Text(e.error or ""),
        )
    ctx.out.print(table)
    return 0


def _retry(ctx: CliContext, args: argparse.Namespace) -> int:
    with open_store(ctx.store_url, create=False) as store:
        box = store.outbox()
        if not box.retry(args.id, _now()):
            return _refused(args.id, box.get(args.id), "retry", "failed")
    ctx.out.print(Text(f"{args.id} is pending again; the runner will run it"))
    return 0


def _cancel(ctx: CliContext, args: argparse.Namespace) -> int:
    with open_store(ctx.store_url, create=False) as store:
        box = store.outbox()
        if not box.cancel(args.id, _now()):
            return _refused(args.id, box.get(args.id), "cancel", "pending or failed")
    ctx.out.print(Text(f"cancelled {args.id}; it will not run"))
    return 0


def _run(ctx: CliContext, args: argparse.Namespace) -> int:
    from engine.runtime import Engine

    registry = ctx.registry()

    async def main() -> int:
        engine = Engine(ctx.store_url, registry, effects=True, health=args.health)
        effects = engine.effects
        assert effects is not None
        guard = None if args.once else start_guard(engine, args)
        try:
            if args.once:
                ran = await effects.runner.run_once()
                fired = await effects.timers.run_once()
                ctx.out.print(f"ran {ran} effect(s), fired {fired} timer(s)")
                return 0
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            effects.start()
            refs = ", ".join(effects.runner.handlers.refs()) or "no handlers"
            ctx.out.print(
                f"running effects ({refs}) and timers; SIGTERM or Ctrl-C stops "
                "after the handlers in flight"
            )
            await stop.wait()
        finally:
            if guard is not None:
                await asyncio.to_thread(guard.stop)
            await engine.close()
        ctx.out.print(
            f"stopped: {effects.runner.delivered} effect(s) and "
            f"{effects.timers.delivered} timer(s) delivered"
        )
        return 0

    return asyncio.run(main())


def outbox_by_version(store: EventStore) -> dict[str, dict[str, Any]]:
    """Pending and failed outbox rows per ``name@version``, with missing handlers.

    Handlers are those registered (``@effect_handler``) by the app imported.
    """
    try:
        pending = store.outbox().pending()
    except NotImplementedError:
        return {}
    handlers = default_handlers()
    out: dict[str, dict[str, Any]] = {}
    for p in pending:
        row = out.setdefault(p.workflow, {"effects": 0, "timers": 0, "missing": set()})
        row["effects" if p.kind == "effect" else "timers"] += p.count
        if p.kind == "effect" and handlers.get(p.name, p.version) is None:
            row["missing"].add(f"{p.name}@{p.version}")
    return out


def add_outbox(rows: list[dict[str, Any]], outbox: dict[str, dict[str, Any]]) -> bool:
    """Add the outbox columns to ``versions`` rows; True if a handler is missing."""
    missing = False
    for r in rows:
        o = outbox.get(f"{r['workflow']}@{r['version']}", {})
        r["pending_effects"] = o.get("effects", 0)
        r["pending_timers"] = o.get("timers", 0)
        r["missing_handlers"] = sorted(o.get("missing", ()))
        missing = missing or bool(r["missing_handlers"])
    return missing


def _json(e: Entry) -> dict[str, Any]:
    i = e.item
    return {
        "id": i.id,
        "kind": i.kind,
        "instance_id": i.stream_id,
        "workflow": i.workflow,
        "type": i.name,
        "version": i.version,
        "status": e.status,
        "attempts": e.attempts,
        "error": e.error,
        "due_at_us": i.due_at,
        "created_at_us": e.created_at,
        "updated_at_us": e.updated_at,
    }


def _type(e: Entry) -> str:
    i = e.item
    if i.kind == "effect":
        return f"{i.name}@{i.version}"
    return i.name.rpartition(":")[2]


def _status(status: str) -> str:
    colour = {"failed": "red", "done": "green", "pending": "yellow"}.get(status)
    return f"[{colour}]{status}[/]" if colour else status


def _when(micros: int) -> str:
    if not micros:
        return "at once"
    return datetime.fromtimestamp(micros / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _refused(entry_id: str, e: Entry | None, verb: str, wanted: str) -> int:
    """Say why ``verb`` was refused (exit 1: nothing changed)."""
    why = "no such id" if e is None else f"it is {e.status}"
    print(
        f"nonstop: error: cannot {verb} {entry_id!r}: {why}; only a {wanted} "
        "one can be; see `nonstop effects list`",
        file=sys.stderr,
    )
    return 1


def _now() -> int:
    return int(datetime.now(UTC).timestamp() * 1e6)
