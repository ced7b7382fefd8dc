"""What the console shows and does, as plain JSON-able values.

Both the JSON API (:mod:`engine.console.api`) and the pages
(:mod:`engine.console.pages`) call these functions; they go through the same
code as the command line (the deployments registry, the rollouts API, the
instances read model, the projections status, the dead-letter table), so the
console never has queries of its own. Each function opens what it reads and
closes it again, like one CLI command; the functions are synchronous (the app
runs them in a worker thread).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast, get_args

from engine.commands.deploy import audit_json, audit_rows, flag_rows, version_rows
from engine.commands.instances import event_json, info_json, plain
from engine.commands.kafka import letter_json
from engine.console.auth import Principal
from engine.core.errors import ConsoleError
from engine.core.replay import pinned_flags
from engine.core.workflow import ListingStatus, WorkflowRegistry
from engine.deploy import Deployments, default_user
from engine.health.controller import Rollouts
from engine.health.counters import DEFAULT_BUCKET_SECONDS
from engine.health.rollout import Rollout
from engine.health.window import read_window
from engine.runtime import Engine
from engine.store import EventStore, open_store

__all__ = [
    "MAX_LIMIT",
    "STATUSES",
    "Settings",
    "Shared",
    "audit",
    "deadletters",
    "flags",
    "instance",
    "instances",
    "projections",
    "rollout",
    "rollouts",
    "store_of",
    "versions",
    "workflows",
]

STATUSES: tuple[str, ...] = get_args(ListingStatus)
"""The instance statuses ``/api/instances?status=`` accepts."""
MAX_LIMIT = 1000
"""The largest page of instances one request may ask for."""


@dataclass
class Settings:
    """How one console serves a store.

    Attributes:
        store_url: The event store (its password is never shown).
        load_app: Returns the app's workflow registry (``--app``).
        operator: Who acts when a request names no operator.
        read_only: Refuse every action.
        token: A single bearer token of an operator named ``operator`` (None:
            none); kept for ``--token``, folded into ``tokens``.
        tokens: Bearer tokens, each naming a person and a role (see
            :mod:`engine.console.auth`). With neither ``token`` nor
            ``tokens``, requests need no token and act as ``operator``.
        kafka: The broker dead letters are replayed to (None: replay refused).
        config: What ``/api/config`` serves instead of the config panel's
            :func:`engine.console.configs.config` (None: that); it returns
            JSON-able values.
        secret: Signs the CSRF tokens of this process.
        bucket_seconds: Width of the health buckets the engines flush (as
            ``nonstop rollout run --bucket-seconds``).
        hosts: The host names requests may be addressed to (the ``Host``
            header, without its port); empty: any. A guard against DNS
            rebinding, where a page of another site reaches a loopback console
            under that site's name.
    """

    store_url: str
    load_app: Callable[[], WorkflowRegistry]
    operator: str = field(default_factory=default_user)
    read_only: bool = False
    token: str | None = None
    tokens: dict[str, Principal] = field(default_factory=dict)
    kafka: str | None = None
    config: Callable[[Settings], Any] | None = None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    bucket_seconds: int = DEFAULT_BUCKET_SECONDS
    hosts: tuple[str, ...] = ()
    _shared: Shared | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def principals(self) -> dict[str, Principal]:
        """Every token the console accepts, ``token`` as an operator included."""
        found = dict(self.tokens)
        if self.token is not None:
            found.setdefault(
                self.token, Principal(self.operator, "operator", personal=False)
            )
        return found

    @contextmanager
    def open(self) -> Iterator[Shared]:
        """What the reads share, brought up to date; one request at a time.

        The store, the deployments registry, the rollouts and the instances
        read model stay open between requests, so each request reads only
        what was written since the last one.
        """
        with self._lock:
            if self._shared is None:
                self._shared = Shared(self)
            shared = self._shared
            shared.deployments.refresh()
            shared.deployments.load_deployed(shared.registry)
            yield shared

    def close(self) -> None:
        """Close what :meth:`open` opened (the app does it on shutdown)."""
        with self._lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None


class Shared:
    """The open store, registry, rollouts and read model of one console."""

    def __init__(self, settings: Settings) -> None:
        from projections.instances import InstancesReadModel

        self.store = open_store(settings.store_url)
        try:
            self.deployments = Deployments(self.store, poll_interval=0.0)
            self.rollouts = Rollouts(self.store)
            self.registry = settings.load_app()
            self.deployments.load_deployed(self.registry)
            self.model = InstancesReadModel(
                self.store, self.registry, db=settings.store_url
            )
        except BaseException:
            self.store.close()
            raise

    def workflow_names(self) -> list[str]:
        """Every workflow the registry or the app knows."""
        names = set(self.deployments.view.workflows) | set(self.registry.names())
        return sorted(names)

    def close(self) -> None:
        """Close the read model and the store."""
        try:
            self.model.close()
        finally:
            self.store.close()


@contextmanager
def store_of(settings: Settings) -> Iterator[EventStore]:
    """A store of its own for an action (closed after it)."""
    store = open_store(settings.store_url)
    try:
        yield store
    finally:
        store.close()


# ------------------------------------------------------------------ reading


def workflows(settings: Settings) -> list[dict[str, Any]]:
    """Every workflow: routing, versions with counts and drain, its rollout."""
    with settings.open() as shared:
        counts = {(s.workflow, s.version): s for s in shared.model.version_stats()}
        view = shared.deployments.view
        rows = version_rows(view, counts, None)
        latest = shared.rollouts.refresh()
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            name = row["workflow"]
            if name not in out:
                routing = view.workflow(name).effective()
                r = latest.latest(name)
                out[name] = {
                    "workflow": name,
                    "routing": routing.describe() if routing else None,
                    "rollout": None if r is None else _rollout_head(r),
                    "versions": [],
                }
            out[name]["versions"].append(_with_drain(row))
    return list(out.values())


def _with_drain(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` plus ``drain``: the finished share of a version new work left."""
    finished = row["completed"] + row["failed"] + row["cancelled"]
    total = finished + row["running"]
    draining = row["share_percent"] == 0 and row["running"] > 0
    row = dict(row)
    row["drain"] = (finished / total if total else 1.0) if draining else None
    return row


def versions(settings: Settings, workflow: str) -> list[dict[str, Any]]:
    """The versions of ``workflow``.

    Raises:
        ConsoleError: 404, the store knows no such workflow.
    """
    for w in workflows(settings):
        if w["workflow"] == workflow:
            return list(w["versions"])
    raise ConsoleError(404, _unknown_workflow(settings, workflow))


def _unknown_workflow(settings: Settings, workflow: str) -> str:
    with settings.open() as shared:
        known = ", ".join(shared.workflow_names()) or "none"
    return f"unknown workflow {workflow!r}; known workflows: {known}"


def _rollout_head(r: Rollout) -> dict[str, Any]:
    plan = r.plan
    return {
        "number": r.number,
        "workflow": plan.workflow,
        "version": plan.version,
        "flag": plan.flag or None,
        "baseline": r.baseline,
        "status": r.status,
        "share": r.share,
        "step": r.progress.step,
        "failures": r.progress.failures,
        "steps": list(plan.steps),
        "started_at": r.started_at,
        "by": r.by,
        "plan": {
            "interval": plan.interval,
            "min_sample": plan.min_sample,
            "max_error_rate": plan.max_error_rate,
            "max_latency_ratio": plan.max_latency_ratio,
            "failure_limit": plan.failure_limit,
            "deadline": plan.deadline,
        },
    }


def rollouts(settings: Settings) -> list[dict[str, Any]]:
    """Every rollout of the store with its decisions, newest first."""
    with settings.open() as shared:
        view = shared.rollouts.refresh()
        found = sorted(view.rollouts.values(), key=lambda r: -r.number)
        return [
            {**_rollout_head(r), "decisions": [plain(d) for d in r.decisions]}
            for r in found
        ]


def rollout(settings: Settings, workflow: str) -> dict[str, Any]:
    """The newest rollout of ``workflow``, each decision with both sides' health.

    Each decision gets the candidate's and the baseline's mean latency (ms)
    over its window, read from the health buckets (cost: the window's
    buckets, never the log).

    Raises:
        ConsoleError: 404, ``workflow`` never had a rollout.
    """
    with settings.open() as shared:
        store = shared.store
        r = shared.rollouts.refresh().latest(workflow)
        if r is None:
            raise ConsoleError(
                404,
                f"{workflow!r} has no rollout; start one with `nonstop rollout "
                f"start {workflow} VERSION`",
            )
        subject, cand, base = r.plan.subject
        base = r.baseline if base == -1 else base
        decisions = []
        for d in r.decisions:
            span = (d.window_start, d.window_end)
            width = settings.bucket_seconds
            c = read_window(store, subject, cand, *span, bucket_seconds=width)
            b = read_window(store, subject, base, *span, bucket_seconds=width)
            decisions.append(
                {
                    **plain(d),
                    "latency_ms": _ms(c.mean_latency),
                    "baseline_latency_ms": _ms(b.mean_latency),
                }
            )
        return {**_rollout_head(r), "decisions": decisions}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def instances(
    settings: Settings,
    *,
    status: str | None = None,
    workflow: str | None = None,
    cursor: str | None = None,
    limit: str | int | None = None,
) -> dict[str, Any]:
    """One page of instances from the instances read model (no log scan).

    Returns ``{"instances": [...], "next": CURSOR or None}``.

    Raises:
        ConsoleError: 400, a bad status, cursor or limit; 404, an unknown
            workflow.
    """
    if status is not None and status not in STATUSES:
        raise ConsoleError(
            400, f"status {status!r} is not one of {', '.join(STATUSES)}"
        )
    after = _cursor(cursor)
    size = _limit(limit)
    with settings.open() as shared:
        if workflow is not None and workflow not in shared.workflow_names():
            raise ConsoleError(404, _unknown_workflow(settings, workflow))
        listed = cast(ListingStatus | None, status)  # checked above
        got = shared.model.page(
            workflow=workflow, status=listed, after=after, limit=size + 1
        )
    page = got[:size]
    nxt = page[-1][1] if len(got) > size else None
    return {
        "instances": [info_json(info) for info, _ in page],
        "next": None if nxt is None else str(nxt),
    }


def _cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    if not cursor.isdigit():
        raise ConsoleError(
            400,
            f"cursor {cursor!r} is not a cursor of this API: pass the 'next' "
            "value of the previous page, or none for the first page",
        )
    return int(cursor)


def _limit(limit: str | int | None) -> int:
    if limit is None or limit == "":
        return 100
    text = str(limit)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ConsoleError(
            400, f"limit {text!r} must be a whole number from 1 to {MAX_LIMIT}"
        )
    return int(text)


def instance(settings: Settings, instance_id: str) -> dict[str, Any]:
    """An instance's state, history (with schema versions) and the flags it read.

    Raises:
        UnknownInstance: no such instance (the API answers 404).
    """
    with settings.open() as shared:
        registry = shared.registry

    async def job() -> dict[str, Any]:
        engine = Engine(settings.store_url, registry)
        try:
            info = await engine.get(instance_id)
            events = await engine.history(instance_id)
        finally:
            await engine.close()
        flags_read: dict[str, Any] | None = None
        for e in events:
            if e.ctx:
                flags_read = pinned_flags(flags_read, e.ctx)
        return {
            **info_json(info),
            "flags_read": plain(flags_read or {}),
            "history": [event_json(e) for e in events],
        }

    return asyncio.run(job())


def audit(settings: Settings, subject: str | None = None) -> list[dict[str, Any]]:
    """Deployment, flag, rollout and console actions, oldest first."""
    with settings.open() as shared:
        return [audit_json(a) for a in audit_rows(shared.deployments, subject)]


def flags(settings: Settings) -> list[dict[str, Any]]:
    """Every flag with its definition and kill switch."""
    with settings.open() as shared:
        return flag_rows(shared.deployments.view)


def deadletters(settings: Settings) -> list[dict[str, Any]]:
    """Every dead letter, replayed ones included (``replayed_to`` set)."""
    with settings.open() as shared:
        found = shared.store.dead_letters(include_replayed=True)
        return [letter_json(x) for x in found]


def projections(settings: Settings) -> list[dict[str, Any]]:
    """Every projection build with its position and lag."""
    from projections import status

    with settings.open() as shared:
        return [plain(s) for s in status(shared.model.runner.db, shared.store)]
