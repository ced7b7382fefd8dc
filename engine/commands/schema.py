"""``nonstop schema lock`` and ``nonstop schema check``: schema changes proved safe.

``lock`` describes every registered event type (fields, types, defaults, per
schema version), the state type of every workflow version (per state schema)
and the start-input and command types each version accepts into a stable,
sorted JSON file, keeping the versions locked before.
``check`` compares the code with that file and exits 1 when a change would
make stored events unreadable and no upcaster covers it; changes that old and
new code cannot share during a rolling deploy are reported apart (they need a
two-step, expand then contract, release) and fail only with ``--strict``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.text import Text

from engine.commands import CliContext
from engine.core.events import SYSTEM_TYPES, EventTypeRegistry, default_event_types
from engine.core.inputs import command_types, start_types
from engine.core.workflow import WorkflowRegistry, parse_ref
from engine.snapshots import state_schemas
from upcasters import (
    Change,
    SchemaLockError,
    UpcasterRegistry,
    compare,
    default_upcasters,
    describe,
    merge_lock,
    read_lock,
    write_lock,
)
from upcasters.inputs import InputKind

__all__ = ["DEFAULT_LOCK", "check_lock", "code_document", "register"]

DEFAULT_LOCK = Path("schema.lock")
"""Where the lock is written and read unless told otherwise."""

_ENGINE_PREFIX = "nonstop."
_LABEL = {
    "breaking": "[bold red]BREAKING[/]",
    "mixed-fleet-unsafe": "[yellow]TWO-STEP[/]",
    "safe": "[green]safe[/]",
}


def code_document(
    registry: WorkflowRegistry, types: EventTypeRegistry | None = None
) -> dict[str, Any]:
    """The lock document of the code: event, state and input types.

    Args:
        registry: Workflow versions whose state types are described.
        types: Event types (the process-wide registry when omitted); the
            engine's own types (``nonstop.*``) are left out.
    """
    event_types = types if types is not None else default_event_types()
    schemas = state_schemas(registry)
    states = []
    for ref, schema in schemas.items():
        name, version = parse_ref(ref)
        states.append((ref, schema, registry.get(name, version).state_type))
    inputs: list[tuple[str, InputKind, type[Any]]] = []
    for wf in (registry.get(*parse_ref(ref)) for ref in registry.refs()):
        inputs += [(wf.ref, "start", cls) for cls in start_types(wf)]
        inputs += [(wf.ref, "command", cls) for cls in command_types(wf)]
    return describe(
        [(t.name, t.schema, t.cls) for t in event_types if not _engine_owned(t.name)],
        states,
        inputs,
    )


def _engine_owned(name: str) -> bool:
    # The engine's own types (nonstop.Started, ...) evolve with the engine.
    return name in SYSTEM_TYPES or name.startswith(_ENGINE_PREFIX)


def check_lock(
    lock_path: Path,
    registry: WorkflowRegistry,
    *,
    types: EventTypeRegistry | None = None,
    upcasters: UpcasterRegistry | None = None,
) -> list[Change]:
    """Every difference between the lock at ``lock_path`` and the code.

    Raises:
        SchemaLockError: the lock file is missing or malformed.
    """
    lock = read_lock(lock_path)
    steps = upcasters if upcasters is not None else default_upcasters()
    return compare(lock, code_document(registry, types), steps)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``schema lock`` and ``schema check``."""
    p = sub.add_parser(
        "schema",
        help="lock event, state and input schemas; check changes against the lock",
    )
    inner = p.add_subparsers(dest="schema_command", metavar="ACTION", required=True)
    lock = inner.add_parser(
        "lock",
        help="write the schema lock (keeps the versions locked before)",
        description="Describe every registered event type, workflow state type "
        "and the start-input and command types of each workflow version into the "
        "lock file; schema versions locked earlier are kept.",
    )
    lock.add_argument(
        "--output",
        metavar="PATH",
        type=Path,
        default=DEFAULT_LOCK,
        help=f"lock file to write (default: {DEFAULT_LOCK})",
    )
    lock.set_defaults(run=_lock)
    check = inner.add_parser(
        "check",
        help="compare the code with the lock; exit 1 on a breaking change",
        description="Exit 1 when a change would make stored events unreadable "
        "and no upcaster covers it. Changes a mixed fleet (old and new release "
        "side by side) cannot share are reported as TWO-STEP.",
    )
    check.add_argument(
        "--lock",
        metavar="PATH",
        type=Path,
        default=DEFAULT_LOCK,
        help=f"lock file to compare with (default: {DEFAULT_LOCK})",
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="also exit 1 on changes that need a two-step release",
    )
    check.set_defaults(run=_check)


def _lock(ctx: CliContext, args: argparse.Namespace) -> int:
    path: Path = args.output
    doc = code_document(ctx.registry())
    old = read_lock(path) if path.exists() else None
    try:
        write_lock(path, merge_lock(old, doc))
    except OSError as exc:
        raise SchemaLockError(
            f"cannot write the schema lock {path}: {exc.strerror or exc}; pick a "
            "writable --output"
        ) from None
    events, states, inputs = doc["events"], doc["states"], doc["inputs"]
    ctx.out.print(
        Text(
            f"wrote {path}: {len(events)} event types, {len(states)} workflow "
            f"state types, the inputs of {len(inputs)} workflow versions"
        )
    )
    for name, entry in events.items():
        ctx.out.print(Text(f"  {name} schema {entry['schema']}"))
    for ref, entry in states.items():
        ctx.out.print(Text(f"  state {ref} schema {entry['schema']}"))
    for ref, entry in inputs.items():
        names = [f"{k} {n}" for k, types in entry.items() for n in types]
        ctx.out.print(Text(f"  inputs {ref}: {', '.join(names) or 'none declared'}"))
    return 0


def _check(ctx: CliContext, args: argparse.Namespace) -> int:
    path: Path = args.lock
    changes = check_lock(path, ctx.registry())
    breaking = [c for c in changes if c.kind == "breaking"]
    two_step = [c for c in changes if c.kind == "mixed-fleet-unsafe"]
    safe = [c for c in changes if c.kind == "safe"]
    ctx.out.print(
        f"schema check against {path}: {len(breaking)} breaking, "
        f"{len(two_step)} need a two-step release, {len(safe)} safe",
        markup=False,
    )
    for change in [*breaking, *two_step, *safe]:
        ctx.out.print(f"{_LABEL[change.kind]} ", end="")
        ctx.out.print(Text(f"{change.subject}: {change.message}"))
    if breaking:
        ctx.out.print(
            "[bold red]schema check FAILED[/]: stored events would not be "
            "readable; fix the code or add the upcasters named above"
        )
        return 1
    if two_step:
        ctx.out.print(
            "[yellow]release in two steps[/]: deploy code that reads the new "
            "schema everywhere first (expand), then code that writes it (contract)"
        )
        return 1 if args.strict else 0
    ctx.out.print("[green]schema check OK[/]: every stored event stays readable")
    if changes:
        ctx.out.print(Text(f"run `nonstop schema lock --output {path}` to record them"))
    return 0
