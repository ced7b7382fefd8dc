"""``nonstop rollout start|status|pause|resume|abort|run`` and ``metrics serve``.

A rollout plan moves a candidate version through shares of new instances
while the controller compares its health with the baseline's over the same
windows; ``rollout run`` is a long-running controller (one acts per store,
under a lease). ``metrics serve`` exposes ``/metrics`` for Prometheus.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from rich.table import Table
from rich.text import Text

from engine.commands import CliContext
from engine.core.errors import RolloutError
from engine.health.controller import RolloutController, Rollouts
from engine.health.counters import DEFAULT_BUCKET_SECONDS
from engine.health.rollout import Rollout, RolloutPlan, parse_duration
from engine.store import open_store

__all__ = ["register", "status_table"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``rollout`` and ``metrics`` commands to ``sub``."""
    p = sub.add_parser("rollout", help="guarded rollouts of a new version")
    rs = p.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")

    s = rs.add_parser(
        "start", help="start a rollout plan for WORKFLOW@VERSION (or a flag ramp)"
    )
    s.add_argument("workflow", metavar="W")
    s.add_argument("version", metavar="V", type=int, nargs="?", default=0)
    s.add_argument("--flag", metavar="NAME", help="ramp this percentage flag on W")
    s.add_argument(
        "--config",
        metavar="N",
        type=int,
        help="ramp W's stored config version N (instead of a code version V)",
    )
    s.add_argument("--source", metavar="MOD:ATTR", help="deploy V from here first")
    s.add_argument("--plan", metavar="FILE", help="a TOML or JSON plan file")
    s.add_argument("--steps", metavar="PCTS", help="shares, e.g. 5,25,50,100")
    s.add_argument("--interval", metavar="DUR", help="window length (e.g. 60s)")
    s.add_argument("--min-sample", metavar="N", type=int)
    s.add_argument("--max-error-rate", metavar="R", type=float)
    s.add_argument("--max-latency-ratio", metavar="X", type=float)
    s.add_argument("--failure-limit", metavar="N", type=int)
    s.add_argument("--deadline", metavar="DUR", help="roll back if not done by then")
    s.add_argument(
        "--prometheus", metavar="URL", help="Prometheus server for --metric-query"
    )
    s.add_argument(
        "--metric-query",
        nargs=3,
        action="append",
        metavar=("NAME", "MAX", "PROMQL"),
        help="also fail a window when PROMQL (with $workflow, $version, $baseline, "
        "$interval) is above MAX (repeat; replaces the plan file's metrics)",
    )
    _who(s)
    s.set_defaults(run=_start)

    s = rs.add_parser("status", help="a rollout's decisions, as a table")
    s.add_argument("workflow", metavar="W")
    s.set_defaults(run=_status)
    for name, what in (
        ("pause", "stop judging windows (routing stays)"),
        ("resume", "judge windows again"),
        ("abort", "roll the candidate back now"),
    ):
        s = rs.add_parser(name, help=what)
        s.add_argument("workflow", metavar="W")
        _who(s)
        s.set_defaults(run=_operator, action=name)

    s = rs.add_parser("run", help="run the rollout controller (one acts per store)")
    s.add_argument("--ttl", metavar="DUR", default="10s", help="lease (default 10s)")
    s.add_argument("--poll", metavar="DUR", help="pass period (default ttl/4)")
    s.add_argument("--bucket-seconds", type=int, default=DEFAULT_BUCKET_SECONDS)
    s.add_argument("--settle", metavar="DUR", default="2s", help="flush allowance")
    s.add_argument("--once", action="store_true", help="one pass, then exit")
    s.set_defaults(run=_run)

    p = sub.add_parser("metrics", help="Prometheus metrics")
    ms = p.add_subparsers(dest="metrics_command", required=True, metavar="ACTION")
    s = ms.add_parser("serve", help="serve /metrics (lag of projections, log head)")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--addr", default="127.0.0.1")
    s.add_argument(
        "--projection", action="append", default=[], help="report its lag (repeat)"
    )
    s.set_defaults(run=_serve)


def _who(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", metavar="WHO", help="who (default: $USER)")
    p.add_argument("--reason", metavar="WHY", default="", help="why (kept in the log)")


def _rollouts(ctx: CliContext, **options: Any) -> Rollouts:
    return Rollouts(open_store(ctx.store_url), **options)


def _start(ctx: CliContext, args: argparse.Namespace) -> int:
    given = {
        "steps": args.steps,
        "interval": args.interval,
        "min_sample": args.min_sample,
        "max_error_rate": args.max_error_rate,
        "max_latency_ratio": args.max_latency_ratio,
        "failure_limit": args.failure_limit,
        "deadline": args.deadline,
        "flag": args.flag,
        "prometheus": args.prometheus,
        "metrics": _metric_queries(args.metric_query),
    }
    given = {k: v for k, v in given.items() if v is not None}
    version = args.version
    if args.config is not None:
        given["config"] = True
        version = args.config
    if args.plan:
        plan = RolloutPlan.from_file(
            args.plan, workflow=args.workflow, version=version, **given
        )
    else:
        plan = RolloutPlan.from_dict(
            {"workflow": args.workflow, "version": version, **given}
        )
    r = _rollouts(ctx).start(plan, source=args.source, by=args.by, reason=args.reason)
    what = (
        f"flag {plan.flag} on {plan.workflow} at {plan.steps[0]:g} %"
        if plan.flag
        else f"{plan.workflow}@{plan.version} at {plan.steps[0]:g} % beside "
        f"v{r.baseline}"
    )
    ctx.out.print(
        Text(
            f"rollout #{r.number}: {what}; steps "
            f"{','.join(f'{x:g}' for x in plan.steps)} every {plan.interval:g} s"
        )
    )
    return 0


def _metric_queries(given: list[list[str]] | None) -> list[dict[str, Any]] | None:
    """``--metric-query NAME MAX PROMQL`` arguments as plan metric checks.

    Raises:
        RolloutError: a MAX is not a number.
    """
    if not given:
        return None
    out: list[dict[str, Any]] = []
    for name, bound, query in given:
        try:
            top = float(bound)
        except ValueError:
            raise RolloutError(
                f"--metric-query {name}: MAX {bound!r} is not a number "
                "(e.g. --metric-query p99 0.5 'histogram_quantile(...)')"
            ) from None
        out.append({"name": name, "query": query, "max": top})
    return out


def status_table(r: Rollout) -> Table:
    """A rollout's decisions: step, share, samples, error rates, latency, verdict."""
    plan = r.plan
    t = Table(
        title=(
            f"rollout #{r.number} "
            + (
                f"flag {plan.flag} on {plan.workflow} (on vs off)"
                if plan.flag
                else f"{plan.workflow}@{plan.version} vs v{r.baseline}"
            )
            + ": "
            f"{r.status}, share {r.share:g} %"
        )
    )
    for col in ("step", "share", "samples", "error rate", "baseline", "latency x"):
        t.add_column(col, justify="right")
    t.add_column("verdict")
    t.add_column("action")
    t.add_column("reason")
    for d in r.decisions:
        t.add_row(
            str(d.step + 1),
            f"{d.share:g} %",
            f"{d.samples}/{d.baseline_samples}",
            f"{d.error_rate:.2%}",
            f"{d.baseline_error_rate:.2%}",
            "-" if d.latency_ratio is None else f"{d.latency_ratio:.2f}",
            d.verdict,
            d.action,
            d.reason,
        )
    if plan.metrics:
        t.caption = f"metric checks on {plan.prometheus}: " + "; ".join(
            f"{m.name} ({m.bounds})" for m in plan.metrics
        )
    return t


def _status(ctx: CliContext, args: argparse.Namespace) -> int:
    ctx.out.print(status_table(_rollouts(ctx).status(args.workflow)))
    return 0


def _operator(ctx: CliContext, args: argparse.Namespace) -> int:
    rollouts = _rollouts(ctx)
    getattr(rollouts, args.action)(args.workflow, by=args.by, reason=args.reason)
    r = rollouts.status(args.workflow)
    ctx.out.print(Text(f"rollout #{r.number} of {args.workflow}: {r.status}"))
    return 0


def _run(ctx: CliContext, args: argparse.Namespace) -> int:
    ttl = parse_duration(args.ttl)
    rollouts = _rollouts(
        ctx, bucket_seconds=args.bucket_seconds, settle=parse_duration(args.settle)
    )
    poll = parse_duration(args.poll) if args.poll else None
    controller = RolloutController(rollouts, ttl=ttl, poll=poll)
    if args.once:
        for d in controller.step():
            ctx.out.print(Text(f"rollout #{d.rollout}: {d.action} ({d.reason})"))
        controller.lease.release()
        return 0
    done = threading.Event()

    def _stop(*_: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ctx.out.print(Text(f"rollout controller {rollouts.name} running"))
    controller.start()
    done.wait()
    controller.stop()
    return 0


def _serve(ctx: CliContext, args: argparse.Namespace) -> int:
    import prometheus_client

    from engine.health.prometheus import StoreLagCollector, serve

    prometheus_client.REGISTRY.register(
        StoreLagCollector(open_store(ctx.store_url), args.projection)
    )
    server = serve(args.port, addr=args.addr)
    ctx.out.print(Text(f"serving http://{args.addr}:{args.port}/metrics"))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.shutdown()
    return 0
