"""``nonstop instances``: list instances a page at a time, or stream them all.

It reads the built-in instances projection (brought up to date first, so the
listing is never stale), one indexed query per page: a page costs the same
at ten thousand and at ten million events. By default one page is shown
(``--limit``, 50) with the ``--after`` cursor of the next one; ``--all``
streams every row as a plain line, page after page, without building one
table of them all; ``--json`` writes a JSON array item by item.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from engine.commands import CliContext
from engine.commands.instances import info_json, plain
from engine.core.replay import InstanceInfo
from engine.store import redact

__all__ = ["DEFAULT_LIMIT", "add_arguments", "list_instances"]

DEFAULT_LIMIT = 50
"""Instances on one page of ``nonstop instances``."""
_STREAM_PAGE = 1_000
_json = msgspec.json.Encoder()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The paging options of ``nonstop instances``."""
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--limit",
        metavar="N",
        type=_positive,
        help=f"show at most N instances (default: {DEFAULT_LIMIT})",
    )
    which.add_argument(
        "--all",
        action="store_true",
        help="stream every instance, one line each, without one big table",
    )
    p.add_argument(
        "--after",
        metavar="CURSOR",
        type=_cursor,
        default=0,
        help="start after this cursor (printed below a page that has more)",
    )


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {text!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def _cursor(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a cursor is a whole number printed by a previous page, got {text!r}"
        ) from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"a cursor is 0 or more, got {n}")
    return n


Render = Callable[[Any], str]
"""Renders a status (rich markup) or a state (one short line) for a row."""


def list_instances(
    ctx: CliContext, args: argparse.Namespace, status: Render, summary: Render
) -> int:
    """Run ``nonstop instances``; returns the exit code.

    Args:
        ctx: The command's context.
        args: The parsed options.
        status: A status as the tables of the other commands show it.
        summary: A state as one short line.
    """
    from projections.instances import InstancesReadModel

    filters: dict[str, Any] = {
        "workflow": args.workflow,
        "version": args.version,
        "status": args.status,
    }
    with InstancesReadModel(ctx.store_url, ctx.registry()) as model:
        if args.all:
            pages = model.pages(**filters, after=args.after, limit=_STREAM_PAGE)
            if args.json:
                _json_array(info for page in pages for info, _ in page)
            else:
                _stream(ctx, pages, summary)
            return 0
        limit = args.limit or DEFAULT_LIMIT
        # One more than shown says whether a next page exists.
        got = model.page(**filters, after=args.after, limit=limit + 1)
    more = len(got) > limit
    shown = got[:limit]
    if args.json:
        _json_array(info for info, _ in shown)
        if more:
            print(f"more: --after {shown[-1][1]}", file=sys.stderr)
        return 0
    _table(ctx, [info for info, _ in shown], status, summary)
    if more:
        ctx.out.print(f"more instances: nonstop instances --after {shown[-1][1]}")
    return 0


def _table(
    ctx: CliContext, found: list[InstanceInfo], status: Render, summary: Render
) -> None:
    table = Table(title=Text(f"Instances in {redact(ctx.store_url)}"))
    table.add_column("instance id", no_wrap=True)
    table.add_column("workflow", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("position", justify="right")
    table.add_column("state")
    for info in found:
        table.add_row(
            Text(info.instance_id),
            Text(f"{info.workflow}@{info.version}"),
            status(info.status),
            str(info.position),
            Text(info.error) if info.error else Text(summary(info.state)),
        )
    if found:
        ctx.out.print(table)
    counts: dict[str, int] = {}
    for info in found:
        counts[info.status] = counts.get(info.status, 0) + 1
    ctx.out.print(_summary(len(found), counts))


def _stream(
    ctx: CliContext, pages: Iterator[list[tuple[InstanceInfo, int]]], summary: Render
) -> None:
    """One tab-separated line per instance, written a page at a time."""
    out = sys.stdout
    out.write("instance id\tworkflow\tstatus\tposition\tstate\tcursor\n")
    counts: dict[str, int] = {}
    n = 0
    for page in pages:
        lines = []
        for info, cursor in page:
            state = info.error if info.error else summary(info.state)
            lines.append(
                f"{info.instance_id}\t{info.workflow}@{info.version}\t"
                f"{info.status}\t{info.position}\t{state}\t{cursor}\n"
            )
            counts[info.status] = counts.get(info.status, 0) + 1
        n += len(page)
        out.write("".join(lines))
        out.flush()
    ctx.out.print(_summary(n, counts))


def _json_array(infos: Iterable[InstanceInfo]) -> None:
    """A JSON array written item by item (valid JSON, memory stays flat)."""
    out = sys.stdout
    out.write("[")
    sep = ""
    for info in infos:
        out.write(sep + _json.encode(plain(info_json(info))).decode())
        sep = ",\n"
    out.write("]\n")
    out.flush()


def _summary(n: int, counts: dict[str, int]) -> str:
    detail = ", ".join(f"{c} {s}" for s, c in sorted(counts.items()))
    noun = "instance" if n == 1 else "instances"
    return f"{n} {noun}" + (f" ({detail})" if detail else "")
