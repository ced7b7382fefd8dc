"""``nonstop`` deployment subcommands: deploy, promote, rollback, versions, ...

Also ``retire``, ``migrate``, ``audit`` and ``flags list|set|kill|rollback``.

Every change is written to the deployments registry in the store with who made
it (``--by``, default ``$USER``) and why (``--reason``); every engine on the
store sees it within its poll interval.

It is a little over 500 lines: one command group (deploy, promote,
rollback, versions, retire, migrate, audit, flags) with its tables.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from engine.commands import CliContext
from engine.commands.effects import add_outbox, outbox_by_version
from engine.commands.instances import print_json
from engine.commands.progress import INTERRUPTED, counting, interruptible
from engine.commands.verify import code_cell, code_columns, deploy_args
from engine.core.errors import MapperLoadError
from engine.core.workflow import WorkflowRegistry
from engine.deploy import (
    Deployments,
    DeployView,
    FlagError,
    default_user,
    migrate_instances,
)
from engine.deploy.migrate import MigrationReport
from engine.deploy.view import AuditEntry, DeploymentState
from engine.loading import import_object
from engine.runtime import Engine
from engine.stats import StatsSource, VersionStats

__all__ = [
    "audit_json",
    "audit_rows",
    "flag_rows",
    "register",
    "stats_source",
    "version_rows",
]


@contextmanager
def stats_source(ctx: CliContext, registry: WorkflowRegistry) -> Iterator[StatsSource]:
    """The per-version counts the commands use.

    They come from the built-in instances projection, brought up to date first
    (no scan of the log); :class:`~engine.deploy.ScanStats` gives the same
    answer by scanning, for embedders that run no projections.
    """
    from projections.instances import InstancesReadModel

    with InstancesReadModel(ctx.store_url, registry) as model:
        yield model


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the deployment and flag commands to ``sub``."""
    p = sub.add_parser(
        "deploy",
        help="deploy WORKFLOW@VERSION from MOD:ATTR (all new instances, or a canary)",
    )
    p.add_argument("workflow", metavar="W")
    p.add_argument("version", metavar="V", type=int)
    p.add_argument("--source", metavar="MOD:ATTR", required=True)
    p.add_argument(
        "--canary", metavar="PCT", type=float, help="share of new instances (0-100)"
    )
    _replace_arg(p)
    _audit_args(p)
    deploy_args(p)
    p.set_defaults(run=_deploy)

    p = sub.add_parser("promote", help="give a deployed version more new instances")
    p.add_argument("workflow", metavar="W")
    p.add_argument("version", metavar="V", type=int)
    p.add_argument(
        "--percent", metavar="PCT", type=float, default=100.0, help="(default: 100)"
    )
    _replace_arg(p)
    _audit_args(p)
    p.set_defaults(run=_promote)

    p = sub.add_parser("rollback", help="new instances go to the previous version")
    p.add_argument("workflow", metavar="W")
    _audit_args(p)
    p.set_defaults(run=_rollback)

    p = sub.add_parser("versions", help="deployed versions with routing and counts")
    p.add_argument("workflow", metavar="W", nargs="?")
    _json_arg(p)
    p.set_defaults(run=_versions)

    p = sub.add_parser("retire", help="retire a version no instance runs on")
    p.add_argument("workflow", metavar="W")
    p.add_argument("version", metavar="V", type=int)
    _audit_args(p)
    p.set_defaults(run=_retire)

    p = sub.add_parser(
        "migrate", help="move running instances to another version (state mapper)"
    )
    p.add_argument("workflow", metavar="W")
    p.add_argument("--from", dest="from_version", metavar="V1", type=int, required=True)
    p.add_argument("--to", dest="to_version", metavar="V2", type=int, required=True)
    p.add_argument(
        "--mapper",
        metavar="MOD:ATTR",
        help="function old_state -> new_state (default: the state as it is)",
    )
    p.add_argument(
        "--instance", metavar="ID", action="append", help="only these (repeatable)"
    )
    p.add_argument("--dry-run", action="store_true", help="report, write nothing")
    _audit_args(p)
    p.set_defaults(run=_migrate)

    p = sub.add_parser("audit", help="who changed deployments and flags, when, why")
    p.add_argument("subject", metavar="W", nargs="?", help="a workflow or flag:NAME")
    _json_arg(p)
    p.set_defaults(run=_audit)

    p = sub.add_parser("flags", help="feature flags: list, set, kill, rollback")
    inner = p.add_subparsers(dest="flags_command", metavar="ACTION", required=True)
    q = inner.add_parser("list", help="every flag with its definition")
    _json_arg(q)
    q.set_defaults(run=_flags_list)
    q = inner.add_parser("set", help="define or change a flag")
    q.add_argument("name", metavar="NAME")
    kind = q.add_mutually_exclusive_group(required=True)
    kind.add_argument("--on", action="store_true", help="boolean, on")
    kind.add_argument("--off", action="store_true", help="boolean, off")
    kind.add_argument("--percent", metavar="PCT", type=float, help="percentage")
    kind.add_argument(
        "--variants", metavar="A=PCT,B=PCT", help="variants and their shares"
    )
    _audit_args(q)
    q.set_defaults(run=_flags_set)
    q = inner.add_parser("kill", help="turn a flag off for everyone")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--revive", action="store_true", help="undo a kill")
    _audit_args(q)
    q.set_defaults(run=_flags_kill)
    from engine.commands.config import register_flags  # it imports this module

    register_flags(inner)


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts")


def _replace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--replace",
        action="store_true",
        help="let this canary take the place of an active one (which drains)",
    )


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", metavar="WHO", help="who makes the change (default: $USER)")
    p.add_argument("--reason", metavar="WHY", default="", help="why (kept in audit)")


def _registry(ctx: CliContext) -> Deployments:
    return Deployments(ctx.store_url)


# --------------------------------------------------------------- deployments


def _deploy(ctx: CliContext, args: argparse.Namespace) -> int:
    from engine.commands.verify import run_deploy

    return run_deploy(ctx, args, _took_effect)


def _promote(ctx: CliContext, args: argparse.Namespace) -> int:
    with _registry(ctx) as reg:
        reg.promote(
            args.workflow,
            args.version,
            percent=args.percent,
            by=args.by,
            reason=args.reason,
            replace=args.replace,
        )
        took = _took_effect(reg, args.workflow)
    ctx.out.print(Text(f"promoted; {args.workflow} {took}"))
    return 0


def _rollback(ctx: CliContext, args: argparse.Namespace) -> int:
    with _registry(ctx) as reg:
        reg.rollback(args.workflow, by=args.by, reason=args.reason)
        took = _took_effect(reg, args.workflow)
    ctx.out.print(
        Text(
            f"rolled back; {args.workflow} {took} "
            "(running instances keep their version)"
        )
    )
    return 0


def _took_effect(reg: Deployments, workflow: str) -> str:
    """The routing of ``workflow`` as read back from the store now."""
    wd = reg.refresh().workflow(workflow)
    routing = wd.effective()
    said = f"routing {routing.describe() if routing else 'none'}"
    if wd.replaced is not None:
        said += f" (replaced canary v{wd.replaced}, which now drains)"
    return said


def _retire(ctx: CliContext, args: argparse.Namespace) -> int:
    with (
        _registry(ctx) as reg,
        stats_source(ctx, _loaded(ctx, reg)) as stats,
    ):
        reg.retire(args.workflow, args.version, stats, by=args.by, reason=args.reason)
    ctx.out.print(Text(f"retired {args.workflow}@{args.version}"))
    return 0


def _versions(ctx: CliContext, args: argparse.Namespace) -> int:
    with _registry(ctx) as reg:
        registry = _loaded(ctx, reg)
        with stats_source(ctx, registry) as stats:
            counts = {
                (s.workflow, s.version): s for s in stats.version_stats(args.workflow)
            }
        view = reg.view
        outbox = outbox_by_version(reg.store)
    rows = version_rows(view, counts, args.workflow, registry)
    missing = add_outbox(rows, outbox)
    if args.json:
        print_json(rows)
    else:
        ctx.out.print(_versions_table(rows))
    for r in rows:
        if r["missing_handlers"]:
            print(
                f"nonstop: error: {r['workflow']}@{r['version']} has pending "
                f"effects without a handler: {', '.join(r['missing_handlers'])}; "
                "register them (@effect_handler) in the app every runner imports",
                file=sys.stderr,
            )
    return 1 if missing else 0


def version_rows(
    view: DeployView,
    counts: dict[tuple[str, int], VersionStats],
    only: str | None,
    registry: WorkflowRegistry | None = None,
) -> list[dict[str, Any]]:
    """One row per ``workflow@version``: state, routing share and counts.

    ``counts`` come from a :class:`~engine.stats.StatsSource`; ``only`` keeps
    one workflow. ``nonstop versions --json`` prints these rows.
    """
    rows: list[dict[str, Any]] = []
    names = sorted({w for w, _ in counts} | set(view.workflows))
    for name in names:
        if only is not None and name != only:
            continue
        wd = view.workflow(name)
        routing = wd.effective()
        versions = sorted({v for w, v in counts if w == name} | set(wd.deployments))
        for version in versions:
            d = wd.deployments.get(version)
            c = counts.get((name, version))
            running = c.running if c else 0
            state: DeploymentState | str = d.state if d else "not deployed"
            if state == "draining" and running == 0:
                state = "drained"
            rows.append(
                {
                    "workflow": name,
                    "version": version,
                    "state": state,
                    "share_percent": (routing.share_bp(version) if routing else 0)
                    / 100,
                    "running": running,
                    "completed": c.completed if c else 0,
                    "failed": c.failed if c else 0,
                    "cancelled": c.cancelled if c else 0,
                    "unreadable": c.unreadable if c else 0,
                    "oldest_running_started_us": c.oldest_running_started_us
                    if c
                    else None,
                    "source": d.source if d else None,
                    **code_columns(d, registry),
                }
            )
    return rows


def _versions_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="versions")
    for name in ("workflow", "version", "state", "routing", "running", "completed"):
        table.add_column(
            name, justify="right" if name in ("running", "completed") else "left"
        )
    table.add_column("failed", justify="right")
    table.add_column("cancelled", justify="right")
    table.add_column("oldest in-flight", justify="right")
    table.add_column("code")
    table.add_column("outbox", justify="right")
    table.add_column("source")
    now = time.time() * 1e6
    for r in rows:
        share = r["share_percent"]
        oldest = r["oldest_running_started_us"]
        table.add_row(
            r["workflow"],
            str(r["version"]),
            _state(str(r["state"])),
            f"{share:g} %" if share else "-",
            str(r["running"]),
            str(r["completed"]),
            f"{r['failed']} (+{r['unreadable']} unreadable)"
            if r["unreadable"]
            else str(r["failed"]),
            str(r["cancelled"]),
            _age((now - oldest) / 1e6) if oldest else "-",
            code_cell(r),
            _outbox_cell(r),
            Text(r["source"] or ""),
        )
    return table


def _outbox_cell(r: dict[str, Any]) -> str:
    """Pending effects and timers, with the handlers missing in red."""
    parts = [
        f"{n} {what}"
        for n, what in ((r["pending_effects"], "eff"), (r["pending_timers"], "tmr"))
        if n
    ]
    cell = ", ".join(parts) or "-"
    if r["missing_handlers"]:
        cell += f" [red](no handler: {', '.join(r['missing_handlers'])})[/]"
    return cell


def _state(state: str) -> str:
    colour = {"active": "green", "failed": "red", "draining": "yellow"}.get(state)
    return f"[{colour}]{state}[/]" if colour else state


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _loaded(ctx: CliContext, reg: Deployments) -> WorkflowRegistry:
    """The app's registry plus every deployed version this process can import.

    A version that does not import is left out quietly: this machine is not a
    worker, so its failure is not recorded.
    """
    registry = ctx.load_app(ctx.app)
    reg.load_deployed(registry)
    return registry


def _iso(micros: int) -> str:
    stamp = datetime.fromtimestamp(micros / 1e6, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def audit_rows(reg: Deployments, subject: str | None = None) -> list[AuditEntry]:
    """Deployment, flag, rollout and operator-action audit entries, oldest first.

    ``subject`` keeps one workflow (or ``flag:NAME``).
    """
    from engine.deploy.actions import action_audit
    from engine.health.audit import rollout_audit

    view = reg.refresh()
    found = sorted(
        [*view.audit, *rollout_audit(reg.store), *action_audit(reg.store)],
        key=lambda a: a.at,
    )
    return [a for a in found if subject is None or a.subject == subject]


def audit_json(a: AuditEntry) -> dict[str, Any]:
    """An audit entry as plain JSON-able values (``at`` in ISO 8601, UTC)."""
    return {
        "at": _iso(a.at),
        "subject": a.subject,
        "action": a.action,
        "detail": a.detail,
        "by": a.by,
        "reason": a.reason,
    }


def _audit(ctx: CliContext, args: argparse.Namespace) -> int:
    with _registry(ctx) as reg:
        entries = audit_rows(reg, args.subject)
    if args.json:
        print_json([audit_json(a) for a in entries])
        return 0
    table = Table(title="audit")
    for col in ("when (UTC)", "subject", "action", "detail", "by", "reason"):
        table.add_column(col)
    for a in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a.at / 1e6))
        table.add_row(when, a.subject, a.action, Text(a.detail), a.by, Text(a.reason))
    ctx.out.print(table)
    return 0


# ----------------------------------------------------------------- migration


def _migrate(ctx: CliContext, args: argparse.Namespace) -> int:
    mapper = _mapper(args.mapper) if args.mapper else None
    with _registry(ctx) as reg:
        registry = _loaded(ctx, reg)
        what = f"{args.workflow} v{args.from_version} -> v{args.to_version}"
        with interruptible() as stop, counting(ctx.out, what) as show:

            async def job() -> MigrationReport:
                engine = Engine(reg.store, registry)
                return await migrate_instances(
                    engine,
                    args.workflow,
                    args.from_version,
                    args.to_version,
                    mapper,
                    instance_ids=args.instance,
                    dry_run=args.dry_run,
                    registry=reg,
                    by=args.by or default_user(),
                    reason=args.reason,
                    mapper_name=args.mapper or "",
                    progress=show,
                    stop=stop,
                )

            report = asyncio.run(job())
    _migration_table(ctx, args, report)
    done = report.count("would migrate" if report.dry_run else "migrated")
    ctx.out.print(
        f"{done} {'would be ' if report.dry_run else ''}migrated, "
        f"{report.count('failed')} failed"
    )
    if report.stopped:
        left = report.remaining
        ctx.out.print(
            Text(
                f"stopped by Ctrl-C before {left[0]}: the instance in flight was "
                f"finished, {len(left)} still run v{args.from_version}; run the "
                "same command again to go on (migrated instances are skipped)"
            )
        )
        return INTERRUPTED
    return 1 if report.count("failed") else 0


def _migration_table(
    ctx: CliContext, args: argparse.Namespace, report: MigrationReport
) -> None:
    title = "dry run: nothing written" if report.dry_run else "migration"
    table = Table(
        title=f"{title}: {args.workflow} v{args.from_version} -> v{args.to_version}"
    )
    for col in ("instance", "outcome", "detail"):
        table.add_column(col)
    for r in report.results:
        colour = "red" if r.outcome == "failed" else "green"
        table.add_row(r.instance_id, f"[{colour}]{r.outcome}[/]", Text(r.detail))
    ctx.out.print(table)


def _mapper(spec: str) -> Any:
    target = import_object(spec, MapperLoadError)
    attr = spec.partition(":")[2]
    if not callable(target):
        raise MapperLoadError(spec, f"{attr} is not callable")
    return target


# --------------------------------------------------------------------- flags


def flag_rows(view: DeployView) -> list[dict[str, Any]]:
    """Every flag of ``view`` as plain JSON-able values, by name."""
    return [
        {
            "flag": name,
            "kind": f.kind,
            "enabled": f.enabled,
            "percent": f.percent_bp / 100,
            "variants": {v: w / 100 for v, w in f.variants},
            "killed": f.killed,
            "value": f.describe(),
        }
        for name, f in sorted(view.flags.items())
    ]


def _flags_list(ctx: CliContext, args: argparse.Namespace) -> int:
    with _registry(ctx) as reg:
        view = reg.refresh()
    if args.json:
        print_json(flag_rows(view))
        return 0
    table = Table(title="flags")
    for col in ("flag", "kind", "value", "killed"):
        table.add_column(col)
    for name, f in sorted(view.flags.items()):
        table.add_row(name, f.kind, Text(f.describe()), "yes" if f.killed else "no")
    ctx.out.print(table)
    return 0


def _flags_set(ctx: CliContext, args: argparse.Namespace) -> int:
    with _registry(ctx) as reg:
        if args.on or args.off:
            flag = reg.set_flag(
                args.name, "boolean", enabled=args.on, by=args.by, reason=args.reason
            )
        elif args.percent is not None:
            flag = reg.set_flag(
                args.name,
                "percentage",
                percent=args.percent,
                by=args.by,
                reason=args.reason,
            )
        else:
            flag = reg.set_flag(
                args.name,
                "variant",
                variants=_variants(args.variants),
                by=args.by,
                reason=args.reason,
            )
    ctx.out.print(Text(f"flag {flag.name} ({flag.kind}): {flag.describe()}"))
    return 0


def _variants(spec: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for part in spec.split(","):
        name, sep, share = part.strip().partition("=")
        try:
            value = float(share)
        except ValueError:
            value = float("nan")
        if not sep or not name or value != value:
            raise FlagError(
                f"--variants {spec!r}: expected NAME=PCT,NAME=PCT adding up to 100"
            )
        out.append((name, value))
    return out


def _flags_kill(ctx: CliContext, args: argparse.Namespace) -> int:
    with _registry(ctx) as reg:
        flag = reg.kill_flag(
            args.name, revive=args.revive, by=args.by, reason=args.reason
        )
    what = "revived" if args.revive else "killed (off for everyone)"
    ctx.out.print(Text(f"flag {flag.name} {what}: {flag.describe()}"))
    return 0
