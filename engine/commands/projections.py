"""``nonstop projections``: status, run, rebuild, resume and skip read models.

``status`` lists every build (name, version, position, lag, state) and exits 1
when one has failed. ``run`` catches up and follows the store (``--once``:
catch up and stop). ``rebuild NAME`` builds the serving version again beside
the serving one, switching reads over when it has caught up. ``resume`` retries
a failed projection; ``skip`` steps over the event it failed at, recording the
reason. The built-in ``nonstop_instances`` projection always runs; the user's
come from ``--projections MOD:ATTR``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from engine.commands import CliContext
from engine.commands.progress import INTERRUPTED, bar, interruptible, rate
from engine.core.errors import ProjectionsLoadError
from engine.loading import import_object
from engine.store import open_store

__all__ = ["load_projections", "register"]


def load_projections(spec: str) -> list[Any]:
    """Import ``MODULE:ATTRIBUTE`` and return the projections it names.

    Raises:
        ProjectionsLoadError: the module or attribute is missing, or holds
            something else.
    """
    from projections import Projection

    target = import_object(spec, ProjectionsLoadError)
    attr = spec.partition(":")[2]
    if callable(target) and not isinstance(target, Projection):
        try:
            target = target()
        except Exception as exc:  # user code
            raise ProjectionsLoadError(
                spec, f"calling {attr}() failed ({exc!r})"
            ) from None
    found = [target] if isinstance(target, Projection) else target
    if not isinstance(found, (list, tuple)) or not all(
        isinstance(p, Projection) for p in found
    ):
        raise ProjectionsLoadError(
            spec, f"{attr} is a {type(target).__name__}, not Projection(s)"
        )
    return list(found)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``projections status|run|rebuild|resume|skip|skips``."""
    p = sub.add_parser(
        "projections",
        help="read models: status, run, rebuild, resume, skip",
        description="Read models built from the global event order. They live "
        "in --db (default: the event store's database).",
    )
    inner = p.add_subparsers(
        dest="projections_command", metavar="ACTION", required=True
    )

    def db_option(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--db",
            metavar="URL",
            help="read-model database (default: the event store's)",
        )

    def code_option(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--projections",
            metavar="MOD:ATTR",
            help="your projections: a Projection, a list, or a function returning "
            "either (the built-in nonstop_instances always runs)",
        )

    q = inner.add_parser(
        "status",
        help="name, version, position, lag and state of every build",
        description="Exit code 1 when a projection has failed.",
    )
    db_option(q)
    q.add_argument("--json", action="store_true", help="print JSON for scripts")
    q.set_defaults(run=_status)

    q = inner.add_parser("run", help="catch up, then follow the store")
    db_option(q)
    code_option(q)
    q.add_argument("--once", action="store_true", help="catch up, then stop")
    q.add_argument(
        "--batch",
        type=_positive,
        default=1000,
        metavar="N",
        help="events per transaction (default: 1000)",
    )
    q.set_defaults(run=_run)

    q = inner.add_parser(
        "rebuild",
        help="build a projection again beside the serving one, then switch",
        description="Starts a new build of NAME at its serving version. When its "
        "code is here (the built-in one, or --projections) it is built now; else "
        "a running `nonstop projections run` builds it.",
    )
    q.add_argument("name", metavar="NAME")
    q.add_argument(
        "--keep", action="store_true", help="keep the old tables after the switch"
    )
    db_option(q)
    code_option(q)
    q.set_defaults(run=_rebuild)

    q = inner.add_parser("resume", help="retry a failed projection's event")
    q.add_argument("name", metavar="NAME")
    db_option(q)
    q.set_defaults(run=_resume)

    q = inner.add_parser(
        "skip", help="skip the event a projection failed at (recorded)"
    )
    q.add_argument("name", metavar="NAME")
    q.add_argument("--reason", required=True, help="why (stored with the skip)")
    db_option(q)
    q.set_defaults(run=_skip)

    q = inner.add_parser("skips", help="the events skipped so far, with reasons")
    q.add_argument("name", metavar="NAME", nargs="?")
    db_option(q)
    q.set_defaults(run=_skips)


def _db_url(ctx: CliContext, args: Any) -> str:
    return str(args.db or ctx.store_url)


def _code(ctx: CliContext, args: Any) -> list[Any]:
    from projections.instances import instances_projection

    found = [instances_projection(ctx.registry(), stream=_stream_reader(ctx))]
    if getattr(args, "projections", None):
        found.extend(load_projections(args.projections))
    return found


def _status(ctx: CliContext, args: Any) -> int:
    from projections import open_database, status

    store = open_store(ctx.store_url)
    try:
        with open_database(_db_url(ctx, args)) as db:
            rows = status(db, store)
    finally:
        store.close()
    if getattr(args, "json", False):  # also called by `run --once`
        from engine.commands.instances import print_json

        print_json(rows)
        return 1 if any(s.failure for s in rows) else 0
    table = Table(title=Text("Projections"))
    for col in ("name", "version", "build", "state", "position", "lag", "lag (s)"):
        table.add_column(
            col,
            no_wrap=True,
            justify="right"
            if col in ("version", "position", "lag", "lag (s)")
            else "left",
        )
    table.add_column("failed at")
    for s in rows:
        state = s.state + (" *" if s.serving else "")
        colour = {"failed": "red", "building": "yellow"}.get(s.state, "green")
        table.add_row(
            Text(s.name),
            str(s.version),
            Text(s.build),
            f"[{colour}]{state}[/]",
            str(s.position),
            str(s.lag_events),
            f"{s.lag_seconds:.1f}",
            Text(s.failure.describe() if s.failure else ""),
        )
    if rows:
        ctx.out.print(table)
        ctx.out.print("* serves reads")
    else:
        ctx.out.print("no projections yet (`nonstop projections run --once`)")
    return 1 if any(s.failure for s in rows) else 0


def _stream_reader(ctx: CliContext) -> Callable[[str], Iterable[Any]]:
    """Reads a stream (to re-read an unreadable instance), opening a store once."""
    opened: list[Any] = []

    def read(stream_id: str) -> Iterable[Any]:
        if not opened:
            opened.append(open_store(ctx.store_url))
            atexit.register(opened[0].close)
        return opened[0].iter_stream(stream_id)  # type: ignore[no-any-return]

    return read


def _runner(ctx: CliContext, args: Any, code: Sequence[Any]) -> Any:
    from projections import Runner

    return Runner(
        ctx.store_url, code, db=args.db, batch_size=getattr(args, "batch", 1000)
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _catch_up(ctx: CliContext, runner: Any, names: Sequence[str]) -> int | None:
    """Catch ``names`` up with a progress bar; None when Ctrl-C stopped it.

    Returns:
        The events applied, or None after an interrupt (the batch in flight
        committed; where each projection stopped is printed).
    """
    runner.prepare()
    head = runner.store.last_global_position()
    started = time.monotonic()
    with interruptible() as stop, bar(ctx.out) as progress:
        tasks = {n: progress.add_task(n, total=max(head, 1), rate="") for n in names}
        first: dict[str, int] = {}

        def show(name: str, position: int) -> None:
            done = position - first.setdefault(name, position)
            progress.update(
                tasks[name],
                completed=min(position, head),
                rate=rate(done, time.monotonic() - started, "events"),
            )

        n = runner.catch_up(names, progress=show, stop=stop)
        if stop.is_set():
            for name in names:
                at = runner.behind.get(name, 0)
                ctx.out.print(
                    Text(
                        f"{name}: stopped at global position {at} of {head} "
                        "(Ctrl-C; the batch in flight was committed); run it "
                        "again to go on"
                    )
                )
            return None
    return int(n)


def _run(ctx: CliContext, args: Any) -> int:
    code = _code(ctx, args)
    names = [p.name for p in code]
    with _runner(ctx, args, code) as runner:
        n = _catch_up(ctx, runner, names)
        if n is None:
            return INTERRUPTED
        ctx.out.print(f"applied {n} events to {len(code)} projections")
        if not args.once:
            shown = ", ".join(names)
            ctx.out.print(f"following {runner.store.url} for {shown} (Ctrl-C stops)")

            async def follow() -> None:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await runner.run(stop)

            asyncio.run(follow())
            at = ", ".join(f"{k} at {v}" for k, v in sorted(runner.positions.items()))
            ctx.out.print(Text(f"stopped following: {at}"))
        return _status(ctx, args)


def _rebuild(ctx: CliContext, args: Any) -> int:
    from projections import open_database, request_rebuild

    code = [p for p in _code(ctx, args) if p.name == args.name]
    with open_database(_db_url(ctx, args)) as db:
        build = request_rebuild(
            db, args.name, keep=args.keep, version=code[0].version if code else None
        )
    ctx.out.print(f"{args.name}: new build {build} requested")
    if code:
        with _runner(ctx, args, code) as runner:
            n = _catch_up(ctx, runner, [args.name])
        if n is None:
            ctx.out.print(
                f"{args.name}: build {build} goes on where it stopped at the next "
                "`nonstop projections run` (reads stay on the serving build)"
            )
            return INTERRUPTED
        ctx.out.print(f"{args.name}: built {build} from {n} events")
    else:
        ctx.out.print(
            "its code is not here: a running `nonstop projections run "
            "--projections ...` builds it and switches reads when caught up"
        )
    return _status(ctx, args)


def _resume(ctx: CliContext, args: Any) -> int:
    from projections import open_database, resume

    with open_database(_db_url(ctx, args)) as db:
        cleared = resume(db, args.name)
    if not cleared:
        ctx.out.print(f"{args.name} had not failed")
    for f in cleared:
        ctx.out.print(Text(f"{args.name}: retrying {f.describe()}"))
    return 0


def _skip(ctx: CliContext, args: Any) -> int:
    from projections import open_database, skip

    with open_database(_db_url(ctx, args)) as db:
        skipped = skip(db, args.name, args.reason)
    for f in skipped:
        ctx.out.print(Text(f"{args.name}: skipped {f.describe()}"))
    return 0


def _skips(ctx: CliContext, args: Any) -> int:
    from projections import open_database, skips

    with open_database(_db_url(ctx, args)) as db:
        rows = skips(db, args.name)
    table = Table(title=Text("Skipped events"))
    for col in ("name", "global", "stream", "type", "reason", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            Text(r["name"]),
            str(r["global_position"]),
            Text(f"{r['stream_id']}@{r['stream_position']}"),
            Text(str(r["type"])),
            Text(r["reason"]),
            Text(str(r["error"])),
        )
    ctx.out.print(table)
    ctx.out.print(f"{len(rows)} skipped")
    return 0
