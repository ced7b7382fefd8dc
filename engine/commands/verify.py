"""``nonstop verify``, and the replay check ``nonstop deploy`` runs first.

``verify W V --source MOD:ATTR`` replays the instances of ``W@V`` under the
candidate code and compares the state after each recorded decision with the
digest stored at write time; ``verify W --migrate --from A --to B --mapper
MOD:ATTR`` checks a state mapper the same way. Exit 0 when every instance
matches, 1 on any divergence (each divergent instance's first divergent
event is listed), 2 for a usage error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text

from engine.commands import CliContext
from engine.commands.progress import counting
from engine.core.errors import MapperLoadError, VerifyError, VerifyFailed
from engine.core.fingerprint import short
from engine.core.workflow import WorkflowRegistry
from engine.deploy import Deployment, Deployments
from engine.deploy.code import version_fingerprint
from engine.deploy.guard import deploy_guarded
from engine.deploy.registry import load_source
from engine.deploy.verify import (
    VerifyReport,
    parse_selection,
    verify_migration,
    verify_version,
)
from engine.loading import import_object

__all__ = ["code_cell", "code_columns", "deploy_args", "register", "run_deploy"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``verify`` to ``sub``."""
    p = sub.add_parser(
        "verify",
        help="replay stored instances under new code; compare with recorded states",
    )
    p.add_argument("workflow", metavar="W")
    p.add_argument("version", metavar="V", type=int, nargs="?")
    p.add_argument("--source", metavar="MOD:ATTR", help="the candidate code")
    p.add_argument(
        "--instances",
        metavar="running|all|N",
        default="running",
        help="which instances: running (default), all, or a sample of N",
    )
    p.add_argument("--jobs", metavar="N", type=int, default=1, help="processes")
    p.add_argument("--migrate", action="store_true", help="check a state mapper")
    p.add_argument("--from", dest="from_version", metavar="A", type=int)
    p.add_argument("--to", dest="to_version", metavar="B", type=int)
    p.add_argument("--mapper", metavar="MOD:ATTR")
    p.set_defaults(run=_verify)


def deploy_args(p: argparse.ArgumentParser) -> None:
    """The replay-check options of ``nonstop deploy``."""
    p.add_argument(
        "--force",
        action="store_true",
        help="record changed code of a deployed version without verifying",
    )
    p.add_argument(
        "--skip-verify",
        action="store_true",
        help="do not replay the version's instances first (needs --reason)",
    )
    p.add_argument("--jobs", metavar="N", type=int, default=1, help="verify processes")


def code_columns(
    d: Deployment | None, registry: WorkflowRegistry | None
) -> dict[str, Any]:
    """The code columns of ``nonstop versions`` for one version.

    ``fingerprint`` is the recorded one, ``code_here`` this process's (None
    when it does not load the version), ``other_code_on`` the workers that
    reported running other code.
    """
    recorded = d.fingerprint if d is not None and d.fingerprint else None
    here = None
    if (
        d is not None
        and registry is not None
        and d.version in registry.versions(d.workflow)
    ):
        here = version_fingerprint(registry.get(d.workflow, d.version))
    workers = list(d.mismatched) if d is not None else []
    return {"fingerprint": recorded, "code_here": here, "other_code_on": workers}


def code_cell(row: dict[str, Any]) -> Text:
    """The ``code`` cell of ``nonstop versions``: red when the code here differs."""
    recorded, here = row.get("fingerprint"), row.get("code_here")
    cell = Text(short(recorded or ""))
    if recorded and here and here != recorded:
        cell.append(f" != here {short(here)}", style="red")
    workers = row.get("other_code_on") or []
    if workers:
        cell.append(f" (other code on {len(workers)} worker(s))", style="red")
    return cell


def _verify(ctx: CliContext, args: argparse.Namespace) -> int:
    selection = parse_selection(args.instances)
    if args.migrate:
        return _verify_mapper(ctx, args)
    if args.version is None or not args.source:
        raise VerifyError(
            "verify needs W V --source MOD:ATTR (or --migrate --from A --to B "
            "--mapper MOD:ATTR)"
        )
    candidate = load_source(args.source, args.workflow, args.version)
    registry = ctx.registry()
    with counting(ctx.out, f"verify {candidate.ref}") as show:
        report = verify_version(
            ctx.store_url,
            candidate,
            registry,
            instances=selection,
            jobs=args.jobs,
            progress=show,
        )
    return _print_report(ctx, report)


def _verify_mapper(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.from_version is None or args.to_version is None or not args.mapper:
        raise VerifyError("verify --migrate needs --from A --to B --mapper MOD:ATTR")
    mapper = import_object(args.mapper, MapperLoadError)
    if not callable(mapper):
        raise MapperLoadError(args.mapper, "it is not callable")
    registry = ctx.registry()
    what = f"verify {args.workflow} v{args.from_version} -> v{args.to_version}"
    with counting(ctx.out, what) as show:
        report = verify_migration(
            ctx.store_url,
            registry,
            args.workflow,
            args.from_version,
            args.to_version,
            mapper,
            progress=show,
        )
    return _print_report(ctx, report)


def _print_report(ctx: CliContext, report: VerifyReport) -> int:
    if report.divergences:
        table = Table(title=f"divergent instances of {report.ref}")
        for col in ("instance", "position", "event", "old -> new"):
            table.add_column(col)
        for d in report.divergences[:50]:
            what = d.diff or (
                f"digest {d.replayed:016x} != recorded {d.recorded:016x}"
                if d.replayed is not None and d.recorded is not None
                else "state differs"
            )
            table.add_row(d.instance_id, str(d.position), d.event_type, Text(what))
        ctx.out.print(table)
    per = report.events / report.seconds if report.seconds > 0 else 0.0
    ctx.out.print(
        Text(
            f"{report.ref}: {report.instances} instance(s), {report.events} events, "
            f"{report.digests} digests matched, {len(report.divergences)} "
            f"divergent, {report.undigested} without digests ({per:,.0f} events/s)"
        )
    )
    return 1 if report.divergences else 0


def run_deploy(
    ctx: CliContext,
    args: argparse.Namespace,
    took_effect: Callable[[Deployments, str], str],
) -> int:
    """``nonstop deploy``: verify against stored instances first, then record.

    ``took_effect(registry, workflow)`` words the routing after a deployment.
    """
    ref = f"{args.workflow}@{args.version}"
    with Deployments(ctx.store_url) as reg:
        try:
            outcome = deploy_guarded(
                reg,
                ctx.store_url,
                args.workflow,
                args.version,
                args.source,
                registry=ctx.registry(),
                canary=args.canary,
                by=args.by,
                reason=args.reason,
                replace=args.replace,
                force=args.force,
                skip_verify=args.skip_verify,
                jobs=args.jobs,
            )
        except VerifyFailed as exc:
            for line in exc.divergences[:20]:
                ctx.out.print(Text(f"  diverges: {line}"))
            ctx.out.print(Text(f"nonstop: {exc}"))
            return 1
        if outcome.action == "redeployed":
            ctx.out.print(
                Text(
                    f"redeployed {ref} with code {outcome.fingerprint[:8]} "
                    f"({outcome.check}); workers load it when they restart"
                )
            )
            return 0
        took = took_effect(reg, args.workflow)
    checked = "" if outcome.check == "no instances" else f" ({outcome.check})"
    ctx.out.print(Text(f"deployed {ref}{checked}; {took}"))
    return 0
