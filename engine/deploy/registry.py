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

Its writes are its base classes: version changes in
:class:`~engine.deploy.operations.RegistryOperations`, the serialised append
and flags in :class:`~engine.deploy.writes.RegistryWrites`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from engine.core.codec import EventCodec
from engine.core.errors import (
    ConcurrencyConflict,
    NonstopError,
)
from engine.core.workflow import WorkflowRegistry
from engine.deploy.code import CodeWatch
from engine.deploy.configs import ConfigResolver
from engine.deploy.events import (
    DEPLOY_STREAM_PREFIX,
    FLAGS_STREAM,
    INDEX_STREAM,
    REGISTRY_TYPES,
    CodeMismatch,
    DeploymentFailed,
    deploy_stream,
)
from engine.deploy.operations import RegistryOperations
from engine.deploy.view import DeployView
from engine.deploy.writes import ATTEMPTS, default_user, load_source
from engine.store import EventStore, RecordRow, open_store

__all__ = ["Deployments", "default_user", "load_source"]

log = logging.getLogger("nonstop.deploy")


class Deployments(RegistryOperations):
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

    def refresh(self, exact: bool = False) -> DeployView:
        """Fold the registry events written since the last refresh.

        When attached to an engine's workflow registry, newly deployed versions
        are imported and registered (hot loading); a version that fails to load
        is marked failed in the registry and is not routed to.

        Args:
            exact: Read the registry by stream, so that every committed event
                is in the view, this process's own last write included. The
                default reads the global order, which on a store running
                several appends at once stops below the appends still in
                flight (see :meth:`~engine.store.EventStore.read_all`): what a
                change decides on is read exactly, a poll need not be.
        """
        with self._lock:
            if exact:
                head = self.store.last_global_position()
                self._fold_streams()
                self._cold_read = True
                self._view.seen = max(self._view.seen, head)
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
            for _ in range(ATTEMPTS):
                view = self.refresh(exact=True)
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

    def close(self) -> None:
        """Close the store if this object opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Deployments:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
