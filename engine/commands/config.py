"""``nonstop config set|show|history|rollback|promote|status`` and ``flags rollback``.

A refused change (a document some running version cannot decode, a rollback
to nowhere) prints ``nonstop: config refused: ...`` on stderr, writes nothing
and exits 1.
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
from engine.commands.deploy import _audit_args, _iso
from engine.commands.instances import print_json
from engine.core.config import ConfigFormat, parse_document
from engine.core.errors import ConfigError, DeployError, FlagError
from engine.deploy import Deployments
from engine.deploy.configadmin import (
    canary_config,
    describe_change,
    promote_config,
    rollback_config,
    set_config,
)
from engine.deploy.configs import read_reports
from engine.deploy.configview import WorkflowConfig
from engine.deploy.events import ConfigReported
from engine.deploy.flagadmin import rollback_flag

__all__ = ["engines_json", "register", "register_flags"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``config`` command group to ``sub``."""
    p = sub.add_parser("config", help="typed workflow config: set, show, roll back")
    inner = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    q = inner.add_parser("set", help="validate a document and make it current")
    q.add_argument("workflow", metavar="W")
    q.add_argument("--file", metavar="FILE", required=True, help="a .toml or .json")
    q.add_argument(
        "--canary", metavar="PCT", type=float, help="give it to this share only"
    )
    _audit_args(q)
    q.set_defaults(run=_set)
    q = inner.add_parser("show", help="a config version's document")
    q.add_argument("workflow", metavar="W")
    q.add_argument("--version", metavar="N", type=int, help="default: current")
    q.set_defaults(run=_show)
    q = inner.add_parser("history", help="who changed the config, when, why, diff")
    q.add_argument("workflow", metavar="W")
    q.set_defaults(run=_history)
    q = inner.add_parser("rollback", help="back to an earlier config version")
    q.add_argument("workflow", metavar="W")
    q.add_argument("--to", metavar="N", type=int, help="default: the previous one")
    _audit_args(q)
    q.set_defaults(run=_rollback)
    q = inner.add_parser("promote", help="give the canary config to everyone")
    q.add_argument("workflow", metavar="W")
    q.add_argument(
        "--percent",
        metavar="PCT",
        type=float,
        help="only raise (or lower) the canary's share to PCT",
    )
    _audit_args(q)
    q.set_defaults(run=_promote)
    q = inner.add_parser("status", help="which engines run which config version")
    q.add_argument("workflow", metavar="W")
    q.add_argument("--json", action="store_true", help="print JSON for scripts")
    q.set_defaults(run=_status)


def register_flags(inner: argparse._SubParsersAction[Any]) -> None:
    """Add ``flags rollback`` to the ``flags`` subcommands."""
    q = inner.add_parser("rollback", help="restore an earlier flag definition")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--to", metavar="N", type=int, help="definition N (see audit)")
    _audit_args(q)
    q.set_defaults(run=_flags_rollback)


def _refused(exc: Exception) -> int:
    print(f"nonstop: config refused: {exc}", file=sys.stderr)
    return 1


def read_file(path: str) -> dict[str, Any]:
    """Read and parse a ``.toml`` or ``.json`` config document.

    Raises:
        ConfigError: an unknown extension, an unreadable or unparsable file.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ConfigError(f"{path}: expected a .toml or .json file, got {suffix!r}")
    fmt: ConfigFormat = "toml" if suffix == ".toml" else "json"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_document(data, fmt, source=path)


def _set(ctx: CliContext, args: argparse.Namespace) -> int:
    try:
        document = read_file(args.file)
        with Deployments(ctx.store_url) as reg:
            wc = set_config(
                reg,
                args.workflow,
                document,
                canary=args.canary,
                by=args.by,
                reason=args.reason,
                registry=_app(ctx),
            )
    except ConfigError as exc:
        return _refused(exc)
    ctx.out.print(
        Text(f"config of {args.workflow}: v{wc.latest} stored; now {wc.describe()}")
    )
    return 0


def _rollback(ctx: CliContext, args: argparse.Namespace) -> int:
    try:
        with Deployments(ctx.store_url) as reg:
            wc = rollback_config(
                reg,
                args.workflow,
                to=args.to,
                by=args.by,
                reason=args.reason,
                registry=_app(ctx),
            )
    except ConfigError as exc:
        return _refused(exc)
    ctx.out.print(Text(f"config of {args.workflow} rolled back: now {wc.describe()}"))
    return 0


def _promote(ctx: CliContext, args: argparse.Namespace) -> int:
    try:
        with Deployments(ctx.store_url) as reg:
            if args.percent is None:
                wc = promote_config(reg, args.workflow, by=args.by, reason=args.reason)
            else:
                canary = reg.refresh().configs.get(args.workflow)
                if canary is None or canary.canary is None:
                    raise ConfigError(
                        f"{args.workflow} has no config canary; set one with "
                        f"nonstop config set {args.workflow} --file F --canary PCT"
                    )
                wc = canary_config(
                    reg,
                    args.workflow,
                    canary.canary,
                    args.percent,
                    by=args.by,
                    reason=args.reason,
                    registry=ctx.registry(),
                )
    except (ConfigError, DeployError) as exc:
        return _refused(exc)
    ctx.out.print(Text(f"config of {args.workflow} promoted: now {wc.describe()}"))
    return 0


def _config(ctx: CliContext, workflow: str) -> WorkflowConfig:
    with Deployments(ctx.store_url) as reg:
        return reg.refresh().configs.get(workflow) or WorkflowConfig(workflow)


def _show(ctx: CliContext, args: argparse.Namespace) -> int:
    wc = _config(ctx, args.workflow)
    version = wc.current if args.version is None else args.version
    if version and version not in wc.versions:
        known = ", ".join(f"v{v}" for v in sorted(wc.versions)) or "none"
        raise ConfigError(f"{args.workflow} has no config v{version} (stored: {known})")
    pretty = msgspec.json.format(msgspec.json.encode(wc.table(version)), indent=2)
    ctx.out.print(Text(f"# {args.workflow} config v{version} ({wc.describe()})"))
    ctx.out.print(Text(pretty.decode()))
    return 0


def _history(ctx: CliContext, args: argparse.Namespace) -> int:
    wc = _config(ctx, args.workflow)
    for change in wc.changes:
        why = f" ({change.reason})" if change.reason else ""
        lines = describe_change(wc, change)
        ctx.out.print(Text(f"{_iso(change.at)} {change.by}{why}: {lines[0]}"))
        for line in lines[1:]:
            ctx.out.print(Text(line))
    if not wc.changes:
        ctx.out.print(Text(f"{args.workflow} has no config change yet"))
    return 0


def _status(ctx: CliContext, args: argparse.Namespace) -> int:
    with Deployments(ctx.store_url) as reg:
        wc = reg.refresh().configs.get(args.workflow) or WorkflowConfig(args.workflow)
        reports = read_reports(reg.store, args.workflow, reg.codec)
    if args.json:
        print_json(
            {
                "workflow": args.workflow,
                "current": wc.current,
                "canary": wc.canary,
                "engines": engines_json(reports),
            }
        )
        return 0
    table = Table(title=f"config of {args.workflow}: {wc.describe()}")
    for col in ("engine", "runs", "refused", "reported at"):
        table.add_column(col)
    for worker, (at, r) in sorted(reports.items()):
        refused = f"v{r.refused}: {r.error}" if r.refused else ""
        table.add_row(worker, f"v{r.applied}", Text(refused), _iso(at))
    ctx.out.print(table)
    return 0


def _flags_rollback(ctx: CliContext, args: argparse.Namespace) -> int:
    try:
        with Deployments(ctx.store_url) as reg:
            flag = rollback_flag(
                reg, args.name, to=args.to, by=args.by, reason=args.reason
            )
    except FlagError as exc:
        print(f"nonstop: flag rollback refused: {exc}", file=sys.stderr)
        return 1
    ctx.out.print(Text(f"flag {flag.name} rolled back: {flag.describe()}"))
    return 0


def _app(ctx: CliContext) -> Any:
    """The app's registry when one loads, for validation (else deployed code)."""
    from engine.core.errors import NonstopError

    try:
        return ctx.load_app(ctx.app)
    except NonstopError:
        return None


def engines_json(
    reports: dict[str, tuple[int, ConfigReported]],
) -> list[dict[str, Any]]:
    """What each engine serves of a workflow's config (``config status --json``)."""
    return [
        {
            "worker": worker,
            "applied": r.applied,
            "refused": r.refused,
            "error": r.error,
            "at": _iso(at),
        }
        for worker, (at, r) in sorted(reports.items())
    ]
