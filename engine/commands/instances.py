"""``nonstop start``, ``send`` and ``cancel``: act on instances from the command line.

A command is named by its type: the class name of one of the command types
the workflow version declares (see :func:`command_types`), and its ``--input``
(JSON, or ``@file`` holding JSON) is decoded with msgspec into that type, so a
bad field is refused by name before anything is written. Starts go through
the deployments registry (routed, or pinned with ``--version``).

Also the JSON and readable renderings the listing commands share
(:func:`print_json`, :func:`readable`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from engine.commands import CliContext
from engine.core.errors import CommandInputError
from engine.core.events import (
    Cancelled,
    Migrated,
    RecordedEvent,
    Started,
    default_event_types,
)
from engine.core.inputs import command_types as declared_commands
from engine.core.inputs import start_types
from engine.core.workflow import Workflow, WorkflowRegistry
from engine.runtime import Engine, InstanceInfo

__all__ = [
    "CommandInputError",
    "cancellation",
    "command_types",
    "event_json",
    "info_json",
    "plain",
    "print_json",
    "readable",
    "register",
]

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Decoder()


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``start``, ``send`` and ``cancel`` to ``sub``."""
    p = sub.add_parser("start", help="start an instance of W with a JSON input")
    p.add_argument("workflow", metavar="W")
    p.add_argument(
        "--input", metavar="JSON|@FILE", required=True, help="the start input"
    )
    p.add_argument(
        "--command",
        metavar="TYPE",
        help="the input's command type (default: the first one W declares)",
    )
    p.add_argument("--id", dest="instance_id", metavar="ID", help="instance id")
    p.add_argument(
        "--version",
        metavar="V",
        type=int,
        help="pin this version (default: routed by the deployments)",
    )
    p.add_argument("--routing-key", metavar="KEY", help="route by this key")
    p.add_argument("--command-id", metavar="ID", help="idempotency key")
    _json_arg(p)
    p.set_defaults(run=_start)

    p = sub.add_parser("send", help="send a command (by type name) to an instance")
    p.add_argument("instance_id", metavar="ID")
    p.add_argument("command", metavar="COMMAND", help="the command's type name")
    p.add_argument(
        "--input", metavar="JSON|@FILE", default="{}", help="its fields (default {})"
    )
    p.add_argument("--command-id", metavar="ID", help="idempotency key")
    _json_arg(p)
    p.set_defaults(run=_send)

    p = sub.add_parser(
        "cancel", help="cancel a running instance (it takes no more commands)"
    )
    p.add_argument("instance_id", metavar="ID")
    p.add_argument("--reason", required=True, help="why (kept in its history)")
    p.add_argument("--by", default="", help="who cancels it (kept in its history)")
    p.add_argument("--command-id", metavar="ID", help="idempotency key")
    _json_arg(p)
    p.set_defaults(run=_cancel)


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts")


# ------------------------------------------------------------ command types


def command_types(
    workflow: Workflow[Any], *, start: bool = False
) -> dict[str, type[Any]]:
    """The command types ``workflow`` takes, by class name, in declared order.

    Taken from, in this order: the types the workflow declares
    (``Workflow.inputs`` for a start, ``Workflow.commands`` for a send) or the
    annotation of ``decide``'s command parameter when it names classes
    (``A | B``), as :mod:`engine.core.inputs` reads them; else the msgspec
    structs defined in ``decide``'s module that are neither event types, the
    state type nor the config type of a workflow of that module.
    """
    named = start_types(workflow) if start else declared_commands(workflow)
    if named:
        return {t.__name__: t for t in named}
    module = sys.modules.get(getattr(workflow.decide, "__module__", ""), None)
    if module is None:
        return {}
    events = {et.cls for et in default_event_types()}
    # Config types of the module's workflows are documents, not commands.
    configs = {
        obj.config
        for obj in vars(module).values()
        if isinstance(obj, Workflow) and obj.config is not None
    }
    found: dict[str, type[Any]] = {}
    for obj in vars(module).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, msgspec.Struct)
            and obj.__module__ == module.__name__
            and obj not in events
            and obj not in configs
            and obj is not workflow.state_type
        ):
            found.setdefault(obj.__name__, obj)
    return found


def _resolve(
    workflow: Workflow[Any], name: str | None, *, start: bool = False
) -> type[Any]:
    known = command_types(workflow, start=start)
    if not known:
        raise CommandInputError(
            f"{workflow.ref} declares no command types: pass "
            "Workflow(inputs=..., commands=...), annotate decide's command "
            "parameter (cmd: A | B) or define the command structs in decide's "
            "module"
        )
    if name is None:
        return next(iter(known.values()))
    try:
        return known[name]
    except KeyError:
        raise CommandInputError(
            f"{workflow.ref} has no command {name!r}; it takes: {', '.join(known)}"
        ) from None


def _decode(text: str, cls: type[Any], ref: str) -> Any:
    raw = text.encode()
    if text.startswith("@"):
        try:
            raw = Path(text[1:]).read_bytes()
        except OSError as exc:
            raise CommandInputError(
                f"cannot read --input file {text[1:]!r}: {exc.strerror}"
            ) from None
    try:
        return msgspec.json.decode(raw, type=cls)
    except msgspec.ValidationError as exc:
        raise CommandInputError(
            f"--input is not a valid {cls.__name__} for {ref}: {exc}; "
            f"fields: {_fields_of(cls)}"
        ) from None
    except msgspec.DecodeError as exc:
        raise CommandInputError(
            f"--input is not JSON ({exc}); pass a JSON object or @file"
        ) from None


def _fields_of(cls: type[Any]) -> str:
    if issubclass(cls, msgspec.Struct):
        return ", ".join(cls.__struct_fields__) or "none"
    return "?"


# ----------------------------------------------------------------- handlers


def _start(ctx: CliContext, args: argparse.Namespace) -> int:
    from engine.deploy import open_engine

    registry = ctx.registry()
    workflow = _workflow(registry, args.workflow, args.version)
    cls = _resolve(workflow, args.command, start=True)
    command = _decode(args.input, cls, workflow.ref)

    async def job(engine: Engine) -> InstanceInfo:
        return await engine.start(
            args.workflow,
            command,
            instance_id=args.instance_id,
            version=args.version,
            command_id=args.command_id,
            routing_key=args.routing_key,
        )

    info = _run(lambda: open_engine(ctx.store_url, registry), job)
    _print_info(ctx, info, "started", args.json)
    return 0


def _send(ctx: CliContext, args: argparse.Namespace) -> int:
    registry = ctx.registry()

    async def job(engine: Engine) -> InstanceInfo:
        now = await engine.get(args.instance_id)
        workflow = registry.get(now.workflow, now.version)
        cls = _resolve(workflow, args.command)
        command = _decode(args.input, cls, workflow.ref)
        return await engine.send(args.instance_id, command, command_id=args.command_id)

    info = _run(lambda: Engine(ctx.store_url, registry), job)
    verb = "sent" if info.applied else "already applied (same --command-id)"
    _print_info(ctx, info, verb, args.json)
    return 0


def _cancel(ctx: CliContext, args: argparse.Namespace) -> int:
    from engine.store import require_store

    require_store(ctx.store_url)  # StoreNotFound: exit 2, nothing created
    registry = ctx.registry()

    async def job(engine: Engine) -> InstanceInfo:
        return await engine.cancel(
            args.instance_id,
            reason=args.reason,
            by=args.by,
            command_id=args.command_id,
        )

    info = _run(lambda: Engine(ctx.store_url, registry), job)
    verb = "cancelled" if info.applied else "already cancelled (same --command-id)"
    _print_info(ctx, info, verb, args.json)
    return 0


def _workflow(
    registry: WorkflowRegistry, name: str, version: int | None
) -> Workflow[Any]:
    """The version whose command types name the input (pinned, else current)."""
    return registry.get(name, version)


def _run(make: Any, job: Any) -> InstanceInfo:
    import asyncio

    async def run() -> InstanceInfo:
        engine = make()
        try:
            info: InstanceInfo = await job(engine)
            return info
        finally:
            await engine.close()

    return asyncio.run(run())


def _print_info(ctx: CliContext, info: InstanceInfo, verb: str, as_json: bool) -> None:
    if as_json:
        print_json(info_json(info))
        return
    table = Table(title=Text(f"{verb} {info.instance_id}"), show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    table.add_row("workflow", f"{info.workflow}@{info.version}")
    table.add_row("status", info.status)
    table.add_row("position", str(info.position))
    table.add_row("state", Text(readable(info.state, full=True)))
    ctx.out.print(table)


# ---------------------------------------------------------------- rendering


def info_json(info: InstanceInfo) -> dict[str, Any]:
    """An instance as plain JSON-able values (``error`` when it is unreadable)."""
    out = {
        "instance_id": info.instance_id,
        "workflow": info.workflow,
        "version": info.version,
        "status": info.status,
        "position": info.position,
        "state": plain(info.state),
    }
    if info.error is not None:
        out["error"] = info.error
    return out


def event_json(e: RecordedEvent) -> dict[str, Any]:
    """A recorded event as plain JSON-able values (payload decoded)."""
    return {
        "position": e.position,
        "global_position": e.global_position,
        "recorded_at": e.recorded_datetime.isoformat().replace("+00:00", "Z"),
        "type": e.type,
        "schema": e.schema,
        "stored_schema": e.stored_schema,
        "workflow": e.workflow,
        "command_id": e.command_id,
        "correlation_id": e.correlation_id,
        "causation_id": e.causation_id,
        "event": plain(e.event),
    }


def cancellation(events: list[RecordedEvent]) -> Cancelled | None:
    """The ``nonstop.Cancelled`` event of a history, if it has one."""
    for e in reversed(events):
        if isinstance(e.event, Cancelled):
            return e.event
    return None


def plain(value: Any) -> Any:
    """``value`` as JSON-able builtins; msgpack payloads of system events decoded.

    ``nonstop.Started`` input and ``nonstop.Migrated`` state are stored as
    msgpack bytes: they are shown decoded, not as base64.
    """
    if isinstance(value, Started | Migrated):
        out: dict[str, Any] = msgspec.to_builtins(value)
        field = "input" if isinstance(value, Started) else "state"
        raw = getattr(value, field)
        try:
            out[field] = _msgpack.decode(raw)
        except msgspec.DecodeError:
            out[field] = {"undecodable msgpack": raw.hex()}
        return msgspec.to_builtins(out)
    return msgspec.to_builtins(value)


def readable(value: Any, *, full: bool = False, limit: int = 200) -> str:
    """``value`` as one line of JSON, cut to ``limit`` characters unless ``full``."""
    text = value if isinstance(value, str) else _json.encode(plain(value)).decode()
    if full or len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… (+{len(text) - limit + 1} chars, --full)"


def print_json(value: Any) -> None:
    """Write ``value`` as one line of JSON to stdout."""
    sys.stdout.write(_json.encode(plain(value)).decode() + "\n")
    sys.stdout.flush()
