"""The deployments registry on the event store, and the router engines use.

:class:`Deployments` keeps a :class:`~engine.deploy.view.DeployView` in memory.
The first read takes the registry's own streams by id (the index stream
``nonstop.registry`` lists the workflow streams), so it costs the size of the
registry, not of the log; later refreshes fold only the registry events
written since (read from the global order after the last position seen).

Writes go to the registry's own streams with the expected stream position.
Routing changes of one workflow are serialised on its stream: when two
operators race, the loser's append fails, nothing of it is written, and it
raises :class:`~engine.core.errors.DeployConflict` naming the change that
won (it never re-decides on routing it did not see). Flag changes, failure
records and migration audits retry on the fresh state instead.

It is longer than most modules: the registry's reads (cold read by
stream, follow) and its serialised writes share one view and one lock, and
splitting them would expose that state between modules.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.core.codec import EventCodec
from engine.core.errors import (
    CanaryActive,
    ConcurrencyConflict,
    DeployConflict,
    DeployError,
    DeploySourceError,
    FlagError,
    NonstopError,
    RetireRefused,
)
from engine.core.events import Metadata, now_micros
from engine.core.workflow import Workflow, WorkflowRegistry
from engine.deploy.code import CodeWatch, version_fingerprint
from engine.deploy.configs import ConfigResolver
from engine.deploy.events import (
    CONFIG_STREAM_PREFIX,
    DEPLOY_STREAM_PREFIX,
    FLAGS_STREAM,
    INDEX_STREAM,
    REGISTRY_TYPES,
    CodeMismatch,
    Deployed,
    DeploymentFailed,
    FlagChanged,
    InstancesMigrated,
    Redeployed,
    RegistryStream,
    Retired,
    Routed,
    deploy_stream,
)
from engine.deploy.flags import Flag, FlagKind
from engine.deploy.routing import Routing, percent_to_bp
from engine.deploy.view import DeployView
from engine.loading import import_object
from engine.stats import StatsSource
from engine.store import EventStore, NewRecord, RecordRow, open_store

__all__ = ["Deployments", "default_user", "load_source", "pending_outbox"]

log = logging.getLogger("nonstop.deploy")
_ATTEMPTS = 8


def default_user() -> str:
    """Who is making a change when ``by`` is not given: ``$USER`` or the login."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def load_source(source: str, workflow: str, version: int) -> Workflow[Any]:
    """Import ``package.module:attr`` and check it is ``workflow@version``.

    The attribute is a :class:`Workflow` or a zero-argument callable returning
    one. Importing runs the module, which also registers its event types.

    Raises:
        DeploySourceError: the import failed or it is not that workflow version.
    """
    target = import_object(source, DeploySourceError)
    attr = source.partition(":")[2]
    if not isinstance(target, Workflow) and callable(target):
        try:
            target = target()
        except Exception as exc:  # user code
            raise DeploySourceError(
                source, f"calling {attr}() failed ({exc!r})"
            ) from None
    if not isinstance(target, Workflow):
        raise DeploySourceError(
            source, f"{attr} is a {type(target).__name__}, not a Workflow"
        )
    if (target.name, target.version) != (workflow, version):
        raise DeploySourceError(
            source, f"it defines {target.ref}, not {workflow}@{version}"
        )
    return target


class Deployments:
    """The registry of deployments and flags in a store; a router for engines.

    Args:
        store: An open :class:`EventStore` (left open by :meth:`close`) or a URL.
        poll_interval: Seconds after which a start re-reads the registry.
        worker: Names this process in ``DeploymentFailed`` events (host:pid).
        codec: Decodes the registry events (the default registry of types).
    """

    def __init__(
        self,
        store: EventStore | str,
        *,
        poll_interval: float = 0.25,
        worker: str | None = None,
        codec: EventCodec | None = None,
    ) -> None:
        self._owns_store = isinstance(store, str)
        self.store = open_store(store) if isinstance(store, str) else store
        self.poll_interval = poll_interval
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.codec = codec if codec is not None else EventCodec()
        self._view = DeployView()
        self._lock = threading.Lock()
        self._refreshed = float("-inf")
        self._cold_read = False
        self._registry: WorkflowRegistry | None = None
        self.configs = ConfigResolver(self)
        """The typed config this process serves (see :mod:`engine.deploy.configs`)."""
        self.config = self.configs.config  # the ConfigReader, without a hop
        self.code = CodeWatch()
        """Compares the loaded code with the recorded fingerprints."""
        self._load_failed: set[tuple[str, int, int]] = set()
        """Deployments (workflow, version, deployed at) that failed to load here:
        not tried again until they are deployed again."""

    # ----------------------------------------------------------- reading

    @property
    def view(self) -> DeployView:
        """The registry as last read (call :meth:`refresh` for the newest)."""
        return self._view

    def refresh(self) -> DeployView:
        """Fold the registry events written since the last refresh.

        When attached to an engine's workflow registry, newly deployed versions
        are imported and registered (hot loading); a version that fails to load
        is marked failed in the registry and is not routed to.
        """
        with self._lock:
            self._fold()
            if self._registry is not None and self._hot_load(self._registry):
                self._fold()  # this process just recorded a failure
            if self._view.configs:
                self.configs.check()
            if self._registry is not None:
                found = self.code.check(self._view, self._registry)
                if found:
                    self._record_mismatches(found)
                    self._fold()
            self._refreshed = time.monotonic()
            return self._view

    def _fold(self) -> None:
        view = self._view
        # The store assigns global positions in commit order, so nothing can
        # appear at or below the head read here: the next refresh starts there,
        # and a refresh with no new event at all costs one small query.
        head = self.store.last_global_position()
        if head <= view.seen:
            return
        if not self._cold_read:
            self._fold_streams()
            self._cold_read = True
        else:
            self._apply(self.store.iter_all(after=view.seen, types=REGISTRY_TYPES))
        view.seen = head

    def _fold_streams(self) -> None:
        """Read the registry by stream: the index, then the streams it lists.

        Events written meanwhile may be read here and again by the next
        incremental refresh; :meth:`_apply` skips what a stream already holds.
        """
        self._apply(self.store.read_stream(INDEX_STREAM))
        streams = [FLAGS_STREAM, *sorted(self._view.streams)]
        decoded = self._decode(
            row for chunk in self.store.iter_streams(streams) for row in chunk
        )
        # The global order for the audit trail; an adapter whose stream reads
        # omit the global position (memory) falls back on the recording time.
        decoded.sort(key=lambda d: (d[2], d[3]))
        self._fold_decoded(decoded)

    def _apply(self, rows: Iterable[RecordRow]) -> None:
        self._fold_decoded(self._decode(rows))

    def _decode(
        self, rows: Iterable[RecordRow]
    ) -> list[tuple[str, int, int, int, Any]]:
        out: list[tuple[str, int, int, int, Any]] = []
        for stream_id, position, global_position, type_, data in rows:
            for e in self.codec.decode(
                stream_id, position, global_position, type_, data
            ):
                out.append(
                    (stream_id, position, global_position, e.recorded_at, e.event)
                )
        return out

    def _fold_decoded(self, decoded: list[tuple[str, int, int, int, Any]]) -> None:
        view = self._view
        held = dict(view.positions)
        for stream_id, position, global_position, at, event in decoded:
            if position <= held.get(stream_id, 0):
                continue  # read twice (a cold read racing a write)
            view.apply(stream_id, position, global_position, at, event)

    def reindex(self) -> list[str]:
        """List every workflow stream in the index (stores written before it).

        Scans the global order once for the registry's events and appends a
        :class:`~engine.deploy.events.RegistryStream` for each workflow stream
        the index lacks.

        Returns:
            The streams added to the index.
        """
        found: set[str] = set()
        for rec in self.store.iter_all(after=0, types=REGISTRY_TYPES):
            if rec.stream_id.startswith(DEPLOY_STREAM_PREFIX):
                found.add(rec.stream_id)
        added: list[str] = []
        for stream in sorted(found):
            for _ in range(_ATTEMPTS):
                view = self.refresh()
                if stream in view.streams:
                    break
                try:
                    self._write(self._index_entry(view, stream))
                except ConcurrencyConflict:
                    continue
                added.append(stream)
                break
        self.refresh()
        return added

    def refresh_due(self) -> bool:
        """True when the view is older than ``poll_interval``."""
        return time.monotonic() - self._refreshed >= self.poll_interval

    # ------------------------------------------------------------ router

    def attach(self, registry: WorkflowRegistry) -> None:
        """Load new deployments into ``registry`` from now on (hot loading)."""
        self._registry = registry

    @property
    def attached(self) -> WorkflowRegistry | None:
        """The engine's workflow registry, when attached."""
        return self._registry

    def route(self, workflow: str, key: str) -> int | None:
        """The version for a new instance with routing key ``key``, if routed.

        A version this process cannot run (not loaded, failed) is never
        returned: its share goes to the stable version.
        """
        wd = self._view.workflows.get(workflow)
        if wd is None:
            return None
        version = self._view.route(workflow, key)
        reg = self._registry
        if version is None or reg is None or self._runnable(reg, workflow, version):
            return version
        r = wd.effective()
        if r is not None and self._runnable(reg, workflow, r.stable):
            return r.stable
        return None

    def evaluate(self, kind: str, name: str, key: str, default: Any) -> Any:
        """Flag ``name`` (asked as ``flag`` or ``variant``) for routing key ``key``."""
        return self._view.evaluate(kind, name, key, default)

    def load_deployed(self, registry: WorkflowRegistry) -> list[str]:
        """Register the deployed versions ``registry`` lacks and that import here.

        Failures are returned (as ``name@version: error``), not recorded: this
        is for tools that read instances, not for workers.
        """
        problems: list[str] = []
        for wd in self.refresh().workflows.values():
            for d in wd.deployments.values():
                if d.version in registry.versions(d.workflow):
                    continue
                try:
                    registry.register(load_source(d.source, d.workflow, d.version))
                except NonstopError as exc:
                    problems.append(f"{d.workflow}@{d.version}: {exc}")
        return problems

    @staticmethod
    def _runnable(reg: WorkflowRegistry, workflow: str, version: int) -> bool:
        return version in reg.versions(workflow)

    def _hot_load(self, reg: WorkflowRegistry) -> bool:
        """Load new deployments into ``reg``; True if one failed to load."""
        failed = False
        for wd in self._view.workflows.values():
            for d in wd.deployments.values():
                key = (d.workflow, d.version, d.deployed_at)
                if d.state not in ("active", "draining") or key in self._load_failed:
                    continue
                if d.version in reg.versions(d.workflow):
                    continue
                try:
                    reg.register(load_source(d.source, d.workflow, d.version))
                    log.info("loaded %s@%s from %s", d.workflow, d.version, d.source)
                except NonstopError as exc:
                    self._load_failed.add(key)
                    log.error("cannot load %s@%s: %s", d.workflow, d.version, exc)
                    self._record_failure(d.workflow, d.version, str(exc))
                    failed = True
        return failed

    def _record_mismatches(self, found: list[tuple[str, int, str, str]]) -> None:
        for workflow, version, recorded, loaded in found:
            event = CodeMismatch(
                workflow, version, self.worker, recorded, loaded, self.worker
            )
            try:
                self._write(self._batch(self._view, deploy_stream(workflow), [event]))
            except NonstopError:  # someone else wrote first, or the store is down
                log.warning("could not record the code of %s@%s", workflow, version)

    def _record_failure(self, workflow: str, version: int, error: str) -> None:
        event = DeploymentFailed(workflow, version, error, self.worker, self.worker)
        try:
            self._write(self._batch(self._view, deploy_stream(workflow), [event]))
        except NonstopError:  # someone else wrote first, or the store is down
            log.warning("could not record the failure of %s@%s", workflow, version)

    # ----------------------------------------------------------- writing

    def deploy(
        self,
        workflow: str,
        version: int,
        source: str,
        *,
        canary: float | None = None,
        by: str | None = None,
        reason: str = "",
        check: bool = True,
        replace: bool = False,
        fingerprint: str | None = None,
        verified: str = "",
    ) -> Routing:
        """Deploy ``workflow@version`` from ``source`` and route new instances to it.

        Without ``canary`` it takes every new instance; with it, that share (in
        percent) beside the current stable version. The first deployment of a
        workflow takes every new instance.

        Args:
            workflow: Workflow name.
            version: The version deployed.
            source: ``package.module:attr`` naming it.
            canary: Its share of new instances in percent (all when None).
            by: Who deploys (default: the login name).
            reason: Why (kept in the audit trail).
            check: Import ``source`` here first.
            replace: Let a canary take the place of another active canary
                (which then drains; the change names it in the audit trail).
            fingerprint: Its code fingerprint (computed from ``source`` when
                ``check``; empty otherwise).
            verified: What the replay check said, when the version already
                had instances (see :func:`engine.deploy.guard.deploy_guarded`).

        Returns:
            The routing read back from the store after the write.

        Raises:
            DeploySourceError: ``check`` and ``source`` does not load.
            CanaryActive: another canary is active and ``replace`` is False.
            DeployConflict: another change of the workflow's routing won the
                race; nothing was written.
            DeployError: the version is deployed already (and not failed), or a
                canary is asked for a workflow with no stable version.
        """
        if check:
            wf = load_source(source, workflow, version)
            if fingerprint is None:
                fingerprint = version_fingerprint(wf)
        fp = fingerprint or ""
        bp = percent_to_bp(canary) if canary is not None else None
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            wd = view.workflow(workflow)
            known = wd.deployments.get(version)
            if known is not None and known.state != "failed":
                raise DeployError(
                    f"{workflow}@{version} is already deployed ({known.state}); "
                    "versions are immutable: deploy the change as a new version, "
                    "or promote this one"
                )
            current = wd.effective()
            if bp is None or bp == 10_000:
                routing = Routing(version)
            elif current is None or current.stable == version:
                raise DeployError(
                    f"{workflow} has no stable version to run a canary beside; "
                    f"deploy {workflow}@{version} without --canary first"
                )
            else:
                routing = Routing(current.stable, version, bp)
            replaced = _replaced_canary(workflow, current, routing, replace)
            return [
                Deployed(workflow, version, source, user, reason, fp, verified),
                _routed(workflow, "deploy", routing, user, reason, replaced),
            ]

        self._change(deploy_stream(workflow), make)
        return self._routing(workflow)

    def redeploy(
        self,
        workflow: str,
        version: int,
        source: str,
        fingerprint: str,
        *,
        check: str,
        by: str | None = None,
        reason: str = "",
    ) -> None:
        """Record new code for deployed ``workflow@version`` (routing unchanged).

        The caller proves the change safe first (``check``: ``verified``) or
        says why it did not (``forced``, ``skipped``, with ``reason``); see
        :func:`engine.deploy.guard.deploy_guarded`.

        Raises:
            DeployError: the version is not deployed, or records this code.
            DeployConflict: another change of the workflow won the race.
        """
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            known = view.workflow(workflow).deployments.get(version)
            if known is None or known.state == "failed":
                raise DeployError(
                    f"{workflow}@{version} is not deployed; deploy it instead"
                )
            if known.fingerprint == fingerprint:
                raise DeployError(
                    f"{workflow}@{version} is already deployed with this code"
                )
            return [
                Redeployed(
                    workflow,
                    version,
                    source,
                    fingerprint,
                    known.fingerprint,
                    check,
                    user,
                    reason,
                )
            ]

        self._change(deploy_stream(workflow), make)

    def promote(
        self,
        workflow: str,
        version: int,
        *,
        percent: float = 100.0,
        by: str | None = None,
        reason: str = "",
        replace: bool = False,
    ) -> Routing:
        """Give ``version`` ``percent`` of new instances (all by default).

        Returns:
            The routing read back from the store after the write.

        Raises:
            CanaryActive: ``version`` would become a canary beside another
                active canary and ``replace`` is False.
            DeployConflict: another change of the workflow's routing won the
                race; nothing was written.
            DeployError: the version is not deployed, failed or retired.
        """
        bp = percent_to_bp(percent)
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            wd = view.workflow(workflow)
            d = wd.deployments.get(version)
            if d is None or not wd.usable(version):
                state = "not deployed" if d is None else d.state
                raise DeployError(
                    f"cannot promote {workflow}@{version}: it is {state}; "
                    f"deploy it first (nonstop deploy {workflow} {version} "
                    "--source MOD:ATTR)"
                )
            current = wd.effective()
            if bp == 10_000 or current is None or current.stable == version:
                routing = Routing(version)
            else:
                routing = Routing(current.stable, version, bp)
            replaced = _replaced_canary(workflow, current, routing, replace)
            return [_routed(workflow, "promote", routing, user, reason, replaced)]

        self._change(deploy_stream(workflow), make)
        return self._routing(workflow)

    def rollback(
        self, workflow: str, *, by: str | None = None, reason: str = ""
    ) -> Routing:
        """Send new instances back to the previous version (drop a canary first).

        Running instances are not touched: they stay on their pinned version.

        Returns:
            The routing read back from the store after the write.

        Raises:
            DeployConflict: another change of the workflow's routing won the
                race; nothing was written.
            DeployError: there is nothing to roll back to.
        """
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            target = view.workflow(workflow).rollback_target()
            if target is None:
                raise DeployError(
                    f"{workflow} has no previous version to roll back to; "
                    "deploy or promote the version you want instead"
                )
            return [_routed(workflow, "rollback", target, user, reason)]

        self._change(deploy_stream(workflow), make)
        return self._routing(workflow)

    def retire(
        self,
        workflow: str,
        version: int,
        stats: StatsSource,
        *,
        by: str | None = None,
        reason: str = "",
    ) -> None:
        """Retire a drained version.

        Raises:
            RetireRefused: the version still gets new instances, instances
                of it still run, or effects or timers it asked for are pending
                or failed (the count is in the message).
            DeployError: the version is not deployed or already retired.
        """
        user = by or default_user()
        running = sum(
            s.running for s in stats.version_stats(workflow) if s.version == version
        )
        outbox = pending_outbox(self.store, f"{workflow}@{version}")

        def make(view: DeployView) -> list[Any]:
            wd = view.workflow(workflow)
            d = wd.deployments.get(version)
            if d is None or d.state == "retired":
                state = "not deployed" if d is None else "already retired"
                raise DeployError(f"cannot retire {workflow}@{version}: it is {state}")
            r = wd.effective()
            if r is not None and r.share_bp(version):
                raise RetireRefused(
                    f"cannot retire {workflow}@{version}: it still gets "
                    f"{r.share_bp(version) / 100:g} % of new instances; promote "
                    "another version or roll back first"
                )
            if running:
                raise RetireRefused(
                    f"cannot retire {workflow}@{version}: {running} instance(s) "
                    "still run on it; wait until they finish or migrate them "
                    f"(nonstop migrate {workflow} --from {version} --to V)"
                )
            if outbox:
                raise RetireRefused(
                    f"cannot retire {workflow}@{version}: {outbox} still wait in "
                    "its outbox and are delivered to its logic; let the runner "
                    "finish them, or retry or cancel the failed ones "
                    "(nonstop effects list --failed)"
                )
            return [Retired(workflow, version, user, reason)]

        self._change(deploy_stream(workflow), make)

    def set_flag(
        self,
        name: str,
        kind: FlagKind,
        *,
        enabled: bool = False,
        percent: float = 0.0,
        variants: Sequence[tuple[str, float]] = (),
        by: str | None = None,
        reason: str = "",
    ) -> Flag:
        """Define or change a flag (clears its kill switch).

        Raises:
            FlagError: the definition is malformed.
        """
        user = by or default_user()
        if not name or name != name.strip() or name.startswith("@"):
            raise FlagError(
                f"flag name {name!r} is empty, padded or starts with '@' "
                "(reserved for the engine's own recorded values)"
            )
        flag = Flag(
            name,
            kind,
            enabled,
            percent_to_bp(percent),
            tuple((v, percent_to_bp(w)) for v, w in variants),
        )
        action = "set"

        def make(view: DeployView) -> list[Any]:
            return [_flag_event(flag, action, user, reason)]

        self._change(FLAGS_STREAM, make)
        return self._view.flags[name]

    def kill_flag(
        self,
        name: str,
        *,
        revive: bool = False,
        by: str | None = None,
        reason: str = "",
    ) -> Flag:
        """Turn flag ``name`` off for everyone (or, with ``revive``, back on).

        Raises:
            FlagError: no such flag.
        """
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            known = view.flags.get(name)
            if known is None:
                choices = ", ".join(sorted(view.flags)) or "none"
                raise FlagError(
                    f"unknown flag {name!r} (defined: {choices}); define it "
                    "with nonstop flags set first"
                )
            flag = Flag(
                known.name,
                known.kind,
                known.enabled,
                known.percent_bp,
                known.variants,
                killed=not revive,
            )
            return [_flag_event(flag, "revive" if revive else "kill", user, reason)]

        self._change(FLAGS_STREAM, make)
        return self._view.flags[name]

    def close(self) -> None:
        """Close the store if this object opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Deployments:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------- internal

    def _routing(self, workflow: str) -> Routing:
        r = self._view.workflow(workflow).routing
        assert r is not None
        return r

    def _change(self, stream: str, make: Callable[[DeployView], list[Any]]) -> None:
        """Decide events against a fresh view and append them at its position.

        A workflow stream is serialised: when its position moved under this
        command, the command fails with :class:`DeployConflict` instead of
        deciding again on routing its caller never saw. Other streams (flags)
        and a race on the index alone are retried on the fresh state.
        """
        for _ in range(_ATTEMPTS):
            view = self.refresh()
            decided_at = view.positions.get(stream, 0)
            audited = len(view.audit)
            events = make(view)
            try:
                self._write(self._batch(view, stream, events))
            except ConcurrencyConflict:
                view = self.refresh()
                if stream.startswith(DEPLOY_STREAM_PREFIX) and (
                    view.positions.get(stream, 0) != decided_at
                ):
                    raise _lost_race(stream, view, audited) from None
                continue
            self.refresh()
            return
        raise DeployConflict(
            f"the registry stream {stream!r} kept changing under this command "
            f"({_ATTEMPTS} attempts); nothing was written: retry"
        )

    def record_migration(
        self,
        workflow: str,
        from_version: int,
        to_version: int,
        *,
        migrated: int,
        failed: int,
        mapper: str = "",
        by: str | None = None,
        reason: str = "",
    ) -> None:
        """Add a migration of running instances to the audit trail."""
        event = InstancesMigrated(
            workflow,
            from_version,
            to_version,
            migrated,
            failed,
            mapper,
            by or default_user(),
            reason,
        )
        stream = deploy_stream(workflow)
        for _ in range(_ATTEMPTS):
            view = self.refresh()
            try:
                self._write(self._batch(view, stream, [event]))
            except ConcurrencyConflict:
                continue
            self.refresh()
            return
        raise DeployConflict(
            f"the registry stream {stream!r} kept changing while recording the "
            f"migration of {workflow} (v{from_version} -> v{to_version}); the "
            "instances are migrated, only the audit entry is missing: retry"
        )

    def _batch(
        self, view: DeployView, stream: str, events: list[Any]
    ) -> list[tuple[str, list[Any], int]]:
        """``events`` at the end of ``stream``, plus its index entry if new."""
        batch = [(stream, events, view.positions.get(stream, 0))]
        indexed = stream.startswith((DEPLOY_STREAM_PREFIX, CONFIG_STREAM_PREFIX))
        if indexed and stream not in view.streams:
            batch += self._index_entry(view, stream)
        return batch

    @staticmethod
    def _index_entry(view: DeployView, stream: str) -> list[tuple[str, list[Any], int]]:
        return [
            (
                INDEX_STREAM,
                [RegistryStream(stream)],
                view.positions.get(INDEX_STREAM, 0),
            )
        ]

    def _write(self, batch: list[tuple[str, list[Any], int]]) -> None:
        """Append each ``(stream, events, after)`` in one transaction."""
        now = now_micros()
        records = []
        for stream, events, after in batch:
            meta = Metadata(stream)
            for i, e in enumerate(events, start=1):
                name, data = self.codec.encode(e, meta, recorded_at=now)
                records.append(NewRecord(stream, after + i, name, data))
        self.store.append(records)


def _lost_race(stream: str, view: DeployView, audited: int) -> DeployConflict:
    workflow = stream.removeprefix(DEPLOY_STREAM_PREFIX)
    won = [a for a in view.audit[audited:] if a.subject == workflow]
    what = (
        "; ".join(
            f"{a.action} by {a.by}{f' ({a.reason})' if a.reason else ''}: {a.detail}"
            for a in won
        )
        or "a change"
    )
    routing = view.workflow(workflow).routing
    now = routing.describe() if routing is not None else "none"
    return DeployConflict(
        f"{workflow}'s deployments changed while this command ran ({what}); "
        f"nothing was written. Routing is now {now}: check it (nonstop versions "
        f"{workflow}) and run the command again if it still applies"
    )


def _replaced_canary(
    workflow: str, current: Routing | None, new: Routing, replace: bool
) -> int | None:
    """The active canary ``new`` takes the place of, if any.

    Raises:
        CanaryActive: there is one and ``replace`` is False.
    """
    if current is None or current.canary is None or new.canary is None:
        return None
    if current.canary == new.canary:
        return None
    if not replace:
        raise CanaryActive(
            f"{workflow} already has a canary: v{current.canary} at "
            f"{current.canary_bp / 100:g} % ({current.describe()}); promote or "
            f"roll it back first, or pass --replace to put v{new.canary} in its "
            f"place (v{current.canary} then drains)"
        )
    return current.canary


def _routed(
    workflow: str,
    action: str,
    routing: Routing,
    by: str,
    reason: str,
    replaced: int | None = None,
) -> Routed:
    bp = routing.canary_bp if routing.canary is not None else 0
    return Routed(
        workflow, action, routing.stable, routing.canary, bp, by, reason, replaced
    )


def _flag_event(flag: Flag, action: str, by: str, reason: str) -> FlagChanged:
    return FlagChanged(
        flag.name,
        action,
        flag.kind,
        flag.enabled,
        flag.percent_bp,
        list(flag.variants),
        flag.killed,
        by,
        reason,
    )


def pending_outbox(store: EventStore, ref: str) -> str:
    """What ``ref`` (``name@version``) still has pending or failed in the outbox.

    Returns:
        E.g. ``"2 effect(s), 1 timer(s)"``; empty when there is nothing.
    """
    try:
        pending = store.outbox().pending()
    except NotImplementedError:
        return ""
    counts = {"effect": 0, "timer": 0}
    for p in pending:
        if p.workflow == ref:
            counts[p.kind] += p.count
    return ", ".join(f"{n} {kind}(s)" for kind, n in counts.items() if n)
