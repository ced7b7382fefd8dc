"""The ``nonstop`` command line: list, show and inspect instances; run the demo.

Every :class:`~engine.core.errors.NonstopError` ends the command with one line on
stderr (``nonstop: error: ...``) and exit code 2; store URLs are never printed
with their password.

It is a little over 500 lines: the top-level parser and the instance
listing commands share one context; the command groups live in
:mod:`engine.commands`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.commands import GROUPS, CliContext, listing
from engine.commands.instances import (
    cancellation,
    event_json,
    info_json,
    print_json,
    readable,
)
from engine.core.errors import (
    AppLoadError,
    EventDecodeError,
    NonstopError,
    UnknownEventType,
    UnknownInstance,
    UnknownWorkflow,
)
from engine.core.events import RecordedEvent
from engine.core.extras import require
from engine.core.workflow import WorkflowRegistry
from engine.loading import APP_DIR_ENV, import_object, user_import_path
from engine.runtime import Engine, InstanceInfo
from engine.store import DEFAULT_URL, open_store, redact, require_store
from engine.store.urls import passwords_in

__all__ = ["DEFAULT_APP", "load_app", "main"]

DEFAULT_APP = "engine.demo.orders:registry"
"""Where workflow definitions come from when neither --app nor NONSTOP_APP is set."""

T = TypeVar("T")
_json = msgspec.json.Encoder()
_raw_decoder = msgspec.msgpack.Decoder()


_NEEDS_APP = (AppLoadError, EventDecodeError, UnknownEventType, UnknownWorkflow)


def load_app(spec: str) -> WorkflowRegistry:
    """Import ``MODULE:ATTRIBUTE`` and return the registry it names.

    The attribute is a :class:`WorkflowRegistry` or a zero-argument callable
    returning one. Importing the module also registers its event types.

    Raises:
        AppLoadError: the module or attribute is missing, or is not a registry.
    """
    target = import_object(spec, AppLoadError)
    attr = spec.partition(":")[2]
    if isinstance(target, WorkflowRegistry):
        return target
    if callable(target):
        try:
            target = target()
        except Exception as exc:  # user code
            raise AppLoadError(spec, f"calling {attr}() failed ({exc!r})") from None
        if isinstance(target, WorkflowRegistry):
            return target
    raise AppLoadError(
        spec, f"{attr} is a {type(target).__name__}, not a WorkflowRegistry"
    )


# ------------------------------------------------------------------ parsing


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nonstop",
        description=(
            "Operate nonstop workflows: inspect instances, deploy and roll back "
            "versions, evolve schemas, run projections and Kafka workers. "
            "The event store is --store, else $NONSTOP_STORE, else "
            f"{DEFAULT_URL}. Workflow definitions come from --app, else "
            f"$NONSTOP_APP, else {DEFAULT_APP} (the demo's order workflow)."
        ),
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="event store: sqlite:///file.db, postgresql://user@host:port/db"
        "[?schema=NAME] or memory:// (default: $NONSTOP_STORE or "
        f"{DEFAULT_URL})",
    )
    parser.add_argument(
        "--app",
        metavar="MOD:ATTR",
        help="a WorkflowRegistry, or a zero-argument function returning one "
        f"(default: $NONSTOP_APP or {DEFAULT_APP})",
    )
    parser.add_argument(
        "--app-dir",
        metavar="DIR",
        help="look for the modules named by --app, --source, --mapper, "
        "--mapping and --projections in DIR first, then in the current "
        f"directory, then in the installed packages (default: ${APP_DIR_ENV})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("init", help="create the event store (file, schema, tables)")

    p = sub.add_parser("instances", help="list instances with their status")
    p.add_argument("--workflow", metavar="W", help="only this workflow name")
    p.add_argument("--version", metavar="V", type=int, help="only this version")
    p.add_argument(
        "--status",
        choices=["running", "completed", "failed", "cancelled", "unreadable"],
        help="only instances with this status (unreadable: its stored events "
        "cannot be replayed; the listing shows why)",
    )
    _listing_args(p, full=False)
    listing.add_arguments(p)

    p = sub.add_parser("show", help="an instance's state and history")
    p.add_argument("instance_id", metavar="ID")
    _listing_args(p)

    p = sub.add_parser("history", help="an instance's events")
    p.add_argument("instance_id", metavar="ID")
    _listing_args(p)
    p.add_argument(
        "--raw",
        action="store_true",
        help="print each stored record as one JSON line, decoded without the "
        "app's event classes",
    )

    p = sub.add_parser(
        "demo",
        help="run the order workflow demo: versions side by side, a schema "
        "change, a canary and a rollback, a restart",
    )
    p.add_argument(
        "--store",
        dest="demo_store",
        metavar="URL",
        help="event store of the demo (default: sqlite:///nonstop-demo.db)",
    )
    p.add_argument(
        "--instances",
        type=int,
        default=300,
        metavar="N",
        help="instances to start (default: 300)",
    )
    p.add_argument("--seed", type=int, metavar="S", help="random seed")
    p.add_argument(
        "--kafka",
        nargs="?",
        const="",
        metavar="HOST:PORT",
        help="feed the demo from Kafka through a worker (a Tansu broker is "
        "started when HOST:PORT is omitted)",
    )
    for group in GROUPS:
        importlib.import_module(group).register(sub)
    return parser


def _listing_args(p: argparse.ArgumentParser, *, full: bool = True) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    if full:
        p.add_argument("--full", action="store_true", help="long payloads whole")


# ----------------------------------------------------------------- commands


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nonstop`` command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    store_url: str = args.store or os.environ.get("NONSTOP_STORE") or DEFAULT_URL
    app: str = args.app or os.environ.get("NONSTOP_APP") or DEFAULT_APP
    out = _console()
    app_dir: str | None = args.app_dir or os.environ.get(APP_DIR_ENV) or None
    if app_dir is not None and not os.path.isdir(app_dir):
        parser.error(f"--app-dir {app_dir!r} is not a directory")
    with user_import_path(app_dir):
        return _run(parser, args, out, store_url, app)


def _run(
    parser: argparse.ArgumentParser,
    args: Any,
    out: Console,
    store_url: str,
    app: str,
) -> int:
    """Dispatch the parsed command; errors become exit codes."""
    try:
        read_only = _read_only(args)
        ctx = CliContext(
            out=out,
            store_url=store_url,
            app=app,
            load_app=load_app,
            read_only=read_only or args.command == "schema",
        )
        if read_only:
            require_store(store_url)  # StoreNotFound: exit 2, nothing created
        handler = getattr(args, "run", None)
        if handler is not None:
            return int(handler(ctx, args))
        if args.command == "init":
            return _init(ctx)
        if args.command == "instances":
            return _instances(ctx, args)
        if args.command == "show":
            return _show(ctx, args.instance_id, args.json, args.full)
        if args.command == "history":
            if args.raw:
                return _history_raw(store_url, args.instance_id)
            return _history(ctx, args.instance_id, args.json, args.full)
        if args.command == "demo":
            from engine.demo.local import DEFAULT_STORE, run_demo

            if args.instances < 1:
                parser.error(f"--instances must be >= 1, got {args.instances}")
            url = args.demo_store or args.store or DEFAULT_STORE
            store_url = url
            if args.kafka is not None:
                require("aiokafka", "kafka", "nonstop demo --kafka")
                from engine.demo.kafka import run_kafka_demo

                return run_kafka_demo(
                    url,
                    bootstrap=args.kafka or None,
                    instances=args.instances,
                    seed=args.seed,
                    out=out,
                )
            return run_demo(url, instances=args.instances, seed=args.seed, out=out)
    except NonstopError as exc:
        hint = ""
        if args.command in ("show", "history") and isinstance(exc, _NEEDS_APP):
            hint = f" (`nonstop history {args.instance_id} --raw` needs no app)"
        print(f"nonstop: error: {_one_line(exc, store_url)}{hint}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`nonstop history ID --raw | head`): stop quietly.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("nonstop: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


_READ_ONLY = {
    ("instances", None),
    ("show", None),
    ("history", None),
    ("versions", None),
    ("audit", None),
    ("flags", "list"),
    ("config", "show"),
    ("config", "history"),
    ("config", "status"),
    ("projections", "status"),
    ("deadletters", "list"),
    ("verify", None),
    ("export", None),
    ("effects", "list"),
}
"""Commands that only read the store: they never create one."""


def _read_only(args: Any) -> bool:
    """Whether the parsed command only reads the store."""
    action = next(
        (
            getattr(args, a)
            for a in (
                "flags_command",
                "projections_command",
                "config_command",
                "action",
            )
            if getattr(args, a, None)
        ),
        None,
    )
    return (args.command, action) in _READ_ONLY


def _init(ctx: CliContext) -> int:
    from engine.core.errors import StoreNotFound

    try:
        require_store(ctx.store_url)
    except StoreNotFound:
        open_store(ctx.store_url).close()
        ctx.out.print(f"created a nonstop store at {redact(ctx.store_url)}")
        return 0
    from engine.deploy import Deployments

    # Stores written before the registry index: list their deployments in it
    # (one scan of the log, once; nothing to do on an indexed store).
    with Deployments(ctx.store_url) as deployments:
        added = deployments.reindex()
    if added:
        ctx.out.print(
            f"a nonstop store exists at {redact(ctx.store_url)}; indexed the "
            f"deployments of {len(added)} workflow(s) written before the index: "
            + ", ".join(s.partition(":")[2] for s in added)
        )
        return 0
    ctx.out.print(f"a nonstop store exists at {redact(ctx.store_url)}; nothing changed")
    return 0


def _console() -> Console:
    # Off a terminal (pipes, files, tests) rich would wrap at 80 columns, which
    # breaks ids across lines; give tables room instead.
    tty = sys.stdout.isatty()
    return Console(highlight=False, width=None if tty else 200, soft_wrap=not tty)


def _one_line(exc: BaseException, url: str) -> str:
    """The error message on one line, without the store's password."""
    return " ".join(line.strip() for line in _scrub(str(exc), url).splitlines())


def _scrub(message: str, url: str) -> str:
    """``message`` without the password of ``url`` (drivers sometimes echo it)."""
    message = message.replace(url, redact(url))
    for secret in passwords_in(url):
        message = message.replace(secret, "***")
    return message


def _instances(ctx: CliContext, args: Any) -> int:
    # The built-in projection, brought up to date first: a page per query.
    return listing.list_instances(ctx, args, _status, _summary)


def _show(ctx: CliContext, instance_id: str, as_json: bool, full: bool) -> int:
    async def job(engine: Engine) -> tuple[InstanceInfo, list[RecordedEvent]]:
        return await engine.get(instance_id), await engine.history(instance_id)

    out = ctx.out
    info, events = ctx.with_engine(job)
    if as_json:
        print_json({**info_json(info), "history": [event_json(e) for e in events]})
        return 0
    head = Table(title=Text(f"Instance {info.instance_id}"), show_header=False)
    head.add_column("field", style="bold", no_wrap=True)
    head.add_column("value", overflow="fold" if full else "ellipsis")
    head.add_row("workflow", f"{info.workflow}@{info.version}")
    head.add_row("status", _status(info.status))
    head.add_row("position", str(info.position))
    cancel = cancellation(events) if info.status == "cancelled" else None
    if cancel is not None:
        head.add_row("cancelled by", Text(cancel.by or "-"))
        head.add_row("reason", Text(cancel.reason))
    for name, value in _fields(info.state):
        head.add_row(Text(f"state.{name}"), Text(readable(value, full=full)))
    out.print(head)
    out.print(_history_table(instance_id, events, full))
    return 0


def _history(ctx: CliContext, instance_id: str, as_json: bool, full: bool) -> int:
    events = ctx.with_engine(lambda e: e.history(instance_id))
    if as_json:
        print_json([event_json(e) for e in events])
        return 0
    ctx.out.print(_history_table(instance_id, events, full))
    return 0


def _history_raw(store_url: str, instance_id: str) -> int:
    store = open_store(store_url)
    try:
        found = False
        for rec in store.iter_stream(instance_id):
            found = True
            line: dict[str, Any] = {
                "stream": rec.stream_id,
                "position": rec.position,
                "global_position": rec.global_position,
                "type": rec.type,
            }
            try:
                line["envelope"] = _raw_decoder.decode(rec.data)
            except msgspec.DecodeError as exc:
                line["undecodable"] = str(exc)
                line["hex"] = rec.data.hex()
            sys.stdout.write(_json.encode(line).decode() + "\n")
        if not found:
            raise UnknownInstance(instance_id)
    finally:
        store.close()
    return 0


# --------------------------------------------------------------- rendering


def _history_table(
    instance_id: str, events: list[RecordedEvent], full: bool = False
) -> Table:
    table = Table(title=Text(f"History of {instance_id}"))
    table.add_column("pos", justify="right")
    table.add_column("global", justify="right")
    table.add_column("recorded at", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("schema", justify="right")
    table.add_column("workflow", no_wrap=True)
    table.add_column("command id", no_wrap=True)
    table.add_column("payload", overflow="fold" if full else "ellipsis")
    for e in events:
        schema = str(e.schema)
        if e.stored_schema != e.schema:
            schema = f"{e.stored_schema}->{e.schema}"
        table.add_row(
            str(e.position),
            str(e.global_position) if e.global_position else "-",
            _when(e.recorded_at),
            Text(e.type),
            schema,
            Text(e.workflow),
            Text(e.command_id or ""),
            Text(readable(e.event, full=full)),
        )
    return table


def _when(micros: int) -> str:
    stamp = datetime.fromtimestamp(micros / 1e6, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status(status: str) -> str:
    colour = {
        "running": "yellow",
        "completed": "green",
        "failed": "red",
        "cancelled": "blue",
        "unreadable": "magenta",
    }
    return f"[{colour.get(status, 'white')}]{status}[/]"


def _fields(state: Any) -> list[tuple[str, Any]]:
    plain = msgspec.to_builtins(state)
    if isinstance(plain, dict):
        return list(plain.items())
    return [("value", plain)]


def _summary(state: Any, limit: int = 80) -> str:
    text = " ".join(f"{k}={_text(v)}" for k, v in _fields(state))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _json.encode(msgspec.to_builtins(value)).decode()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
