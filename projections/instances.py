"""The built-in projection: every instance with its workflow, version and status.

It folds each instance with the core replay step
(:class:`engine.core.replay.Replay`, the rule the engine replays with), and keeps
one row per instance (``nonstop_instances_by_id``): workflow, version, status,
position, when it started and its encoded state. ``nonstop instances`` and the
deployments' drain counts read it instead of scanning the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import takewhile
from typing import Any

import msgspec

from engine.core.codec import EventCodec
from engine.core.errors import NonstopError, ProjectionStateError
from engine.core.events import RecordedEvent, is_reserved_stream
from engine.core.replay import (
    STARTED,
    UNREADABLE,
    Instance,
    InstanceInfo,
    RecordRow,
    Replay,
    error_text,
)
from engine.core.workflow import ListingStatus, WorkflowRegistry
from engine.stats import StatsSource, VersionStats
from engine.store import EventStore
from projections._api import ALL, Projection, Undecodable
from projections._db import Database, Tx
from projections._meta import load_builds
from projections._ops import resume, status
from projections._runner import Runner, default_codec

__all__ = ["NAME", "InstancesReadModel", "StreamReader", "instances_projection"]

NAME = "nonstop_instances"
"""The projection's name; readers query the view ``nonstop_instances_by_id``."""
VIEW = f"{NAME}_by_id"
_CHUNK = 500
_COLUMNS = "instance_id, workflow, version, status, position, started_us, state, error"

_PAGE_INDEXES = (
    ("status_start", "status, started_global"),
    ("wf_start", "workflow, started_global"),
    ("wf_status_start", "workflow, status, started_global"),
)

StreamReader = Callable[[str], Iterable[RecordRow]]
"""``reader(stream_id)``: a stream's stored records in order (a store's
``iter_stream``); the read model re-reads an unreadable instance with it."""


@dataclass(slots=True)
class _Row:
    inst: Instance | None
    """The folded instance; None while it is unreadable."""
    started_global: int
    started_us: int
    workflow: str = ""
    version: int = 0
    position: int = 0
    error: str | None = None
    """Why it is unreadable (then ``position`` is the bad event's)."""
    reloaded: int = 0
    """Global position up to which it was re-read from the store in this batch."""


def instances_projection(
    registry: WorkflowRegistry,
    *,
    codec: EventCodec | None = None,
    stream: StreamReader | None = None,
) -> Projection:
    """The instances projection over the workflows of ``registry``.

    An instance whose events cannot be folded (an event that does not decode,
    one written by newer code, a gap in its positions, no start) gets status
    ``unreadable`` with the error; the projection goes on with the others.
    When a new event arrives for an unreadable instance it is re-read whole
    from ``stream`` (with ``codec``, which has the upcasters), so a repaired
    stream or a new upcaster makes it readable again; without ``stream`` it
    stays unreadable until the read model is rebuilt.

    Its handler raises (and so stops the projection at that event) when an
    instance's version is not in ``registry``: register every version that
    has instances.
    """
    p = Projection(NAME, version=2, tables=["by_id"], undecodable=True)
    replay = Replay(EventCodec(), registry.get)
    full = Replay(codec or default_codec(), registry.get)

    def reread(e: RecordedEvent) -> Instance:
        """The instance re-read from the store up to ``e`` (raises if unreadable)."""
        assert stream is not None
        g = e.global_position
        return full.replay(
            e.stream_id, takewhile(lambda r: r[2] <= g, stream(e.stream_id))
        )

    @p.setup
    def create(tx: Tx) -> None:
        t = tx.table("by_id")
        blob = "BYTEA" if tx.dialect == "postgres" else "BLOB"
        tx.execute(
            f"CREATE TABLE {t} (instance_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, "
            "version INTEGER NOT NULL, status TEXT NOT NULL, position BIGINT NOT NULL, "
            "started_global BIGINT NOT NULL, started_us BIGINT NOT NULL, "
            f"state {blob}, error TEXT)"
        )
        tx.execute(f"CREATE INDEX {t}_wvs ON {t} (workflow, version, status)")
        tx.execute(f"CREATE INDEX {t}_start ON {t} (started_global)")
        _page_indexes(tx, t)  # (status, started_global) serves status filters too

    @p.on_batch(ALL)
    def fold(tx: Tx, batch: Iterable[RecordedEvent]) -> None:
        events = [e for e in batch if not is_reserved_stream(e.stream_id)]
        rows = _load(tx, registry, {e.stream_id for e in events})
        dirty: set[str] = set()
        for e in events:
            _apply(replay, rows, e, None if stream is None else reread)
            dirty.add(e.stream_id)
        tx.executemany(
            f"INSERT INTO {tx.table('by_id')} (instance_id, workflow, version, status, "
            "position, started_global, started_us, state, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (instance_id) DO UPDATE SET "
            "workflow = excluded.workflow, version = excluded.version, "
            "status = excluded.status, position = excluded.position, "
            "state = excluded.state, error = excluded.error",
            [_params(iid, rows[iid]) for iid in sorted(dirty)],
        )

    return p


def _page_indexes(tx: Tx, t: str) -> None:
    """Indexes that serve a filtered page in start order without a sort.

    Created with new builds, and on first use for builds made before them.
    """
    for suffix, columns in _PAGE_INDEXES:
        tx.execute(f"CREATE INDEX IF NOT EXISTS {t}_{suffix} ON {t} ({columns})")


def _load(tx: Tx, registry: WorkflowRegistry, ids: set[str]) -> dict[str, _Row]:
    out: dict[str, _Row] = {}
    todo = sorted(ids)
    t = tx.table("by_id")
    for i in range(0, len(todo), _CHUNK):
        chunk = todo[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for iid, wf_name, version, st, pos, g, us, data, error in tx.query(
            "SELECT instance_id, workflow, version, status, position, "
            "started_global, started_us, state, error "
            f"FROM {t} WHERE instance_id IN ({marks})",
            chunk,
        ):
            if error is not None:
                out[iid] = _Row(None, g, us, wf_name, version, pos, error)
                continue
            wf = registry.get(wf_name, version)
            state = msgspec.msgpack.decode(bytes(data), type=wf.state_type)
            inst = Instance(wf, state, pos, cancelled=st == "cancelled")
            out[iid] = _Row(inst, g, us)
    return out


def _apply(
    replay: Replay,
    rows: dict[str, _Row],
    e: RecordedEvent,
    reread: Callable[[RecordedEvent], Instance] | None,
) -> None:
    row = rows.get(e.stream_id)
    if row is None:
        row = rows[e.stream_id] = _Row(None, e.global_position, e.recorded_at)
    elif e.global_position <= row.reloaded:
        return  # the re-read folded it already (a record an upcaster split)
    try:
        if row.error is not None:
            if reread is None:
                return  # nothing to re-read it from: it stays as it was marked
            row.inst, row.error = reread(e), None
            row.reloaded = e.global_position
            return
        if isinstance(e.event, Undecodable):
            raise e.event.error
        inst = replay.apply(row.inst, e)
    except UNREADABLE as exc:
        _mark(row, e, exc)
        return
    if inst is not row.inst:  # a start
        row.inst, row.started_global, row.started_us = (
            inst,
            e.global_position,
            e.recorded_at,
        )


def _mark(row: _Row, e: RecordedEvent, exc: NonstopError) -> None:
    """Record why ``row`` cannot be folded, keeping its workflow if known."""
    if row.inst is not None:
        row.workflow, row.version = row.inst.workflow.name, row.inst.workflow.version
    elif e.type == STARTED and not isinstance(e.event, Undecodable):
        row.workflow, row.version = e.event.workflow, e.event.version
    row.inst = None
    row.position = int(getattr(exc, "position", e.position))
    row.error = error_text(exc)


def _params(iid: str, r: _Row) -> tuple[Any, ...]:
    inst = r.inst
    if inst is None:
        return (
            iid,
            r.workflow,
            r.version,
            "unreadable",
            r.position,
            r.started_global,
            r.started_us,
            None,
            r.error,
        )
    return (
        iid,
        inst.workflow.name,
        inst.workflow.version,
        inst.status,
        inst.position,
        r.started_global,
        r.started_us,
        msgspec.msgpack.encode(inst.state),
        None,
    )


class InstancesReadModel(StatsSource):
    """Reads the instances projection, bringing it up to date first.

    Args:
        store: The event store, or its URL.
        registry: Every workflow version that has instances.
        db: The read-model database or its URL (default: the store's database).
        codec: The engine's codec (default: default types and upcasters).
        fresh: Catch up before every read, so answers are never stale.
    """

    def __init__(
        self,
        store: EventStore | str,
        registry: WorkflowRegistry,
        *,
        db: Database | str | None = None,
        codec: EventCodec | None = None,
        fresh: bool = True,
    ) -> None:
        self.registry = registry
        codec = codec or default_codec()
        self._replay = Replay(codec, registry.get)
        projection = instances_projection(
            registry, codec=codec, stream=lambda sid: self.runner.store.iter_stream(sid)
        )
        self.runner = Runner(store, [projection], db=db, codec=codec)
        self.fresh = fresh
        self._indexed = False

    def refresh(self) -> int:
        """Apply the events appended since the last read; returns how many.

        A stopped projection is retried first: each read is a resume.

        Raises:
            ProjectionStateError: an event cannot be applied (it names it).
        """
        _resume_if_failed(self.runner.db, NAME)
        n = self.runner.catch_up()
        for s in status(self.runner.db, self.runner.store):
            if s.name == NAME and s.failure is not None:
                raise ProjectionStateError(
                    f"the instances projection stopped at {s.failure.describe()}"
                )
        self.recheck()
        return n

    def recheck(self) -> int:
        """Re-read the unreadable instances from the store; returns how many recovered.

        A repaired stream (or one a newly installed upcaster can read) becomes
        readable here without waiting for its next event. It costs one stream
        read per unreadable instance; readable ones are not touched.
        """
        recovered = 0
        with self.runner.db.transaction() as tx:
            serving = [b for b in load_builds(tx, NAME) if b.state == "serving"]
            if not serving:
                return 0
            build = serving[0]
            t = tx.bound(build.build).table("by_id")
            bad = tx.query(
                f"SELECT instance_id, position FROM {t} WHERE status = 'unreadable'"
            )
        upto = build.position
        for iid, pos in bad:
            rows = takewhile(lambda r: r[2] <= upto, self.runner.store.iter_stream(iid))
            try:
                inst = self._replay.replay(iid, rows)
            except UNREADABLE:
                continue
            wf = inst.workflow
            with self.runner.db.transaction() as tx:
                # Only if the runner has not rewritten the row meanwhile.
                recovered += tx.execute(
                    f"UPDATE {t} SET workflow = ?, version = ?, status = ?, "
                    "position = ?, state = ?, error = NULL "
                    "WHERE instance_id = ? AND status = 'unreadable' AND position = ?",
                    (
                        wf.name,
                        wf.version,
                        wf.status(inst.state),
                        inst.position,
                        msgspec.msgpack.encode(inst.state),
                        iid,
                        pos,
                    ),
                )
        return recovered

    def instances(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: ListingStatus | None = None,
    ) -> list[InstanceInfo]:
        """Instances in start order, filtered by workflow, version and status.

        An instance the projection could not fold has status ``unreadable``,
        ``state`` None, the bad event's ``position`` and the ``error``.
        """
        out: list[InstanceInfo] = []
        for page in self.pages(workflow=workflow, version=version, status=status):
            out.extend(info for info, _ in page)
        return out

    def page(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: ListingStatus | None = None,
        after: int = 0,
        limit: int = 50,
    ) -> list[tuple[InstanceInfo, int]]:
        """At most ``limit`` instances that started after cursor ``after``.

        Each comes with its cursor (the global position of its start): pass
        the last one as ``after`` for the next page. One indexed query on the
        read model (``started_global``), whatever the size of the log.
        """
        if self.fresh:
            self.refresh()
        return self._page(workflow, version, status, after, limit)

    def pages(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: ListingStatus | None = None,
        after: int = 0,
        limit: int = 1_000,
    ) -> Iterator[list[tuple[InstanceInfo, int]]]:
        """Every matching instance after ``after``, a page at a time.

        The read model is brought up to date once, before the first page.
        """
        if self.fresh:
            self.refresh()
        while True:
            got = self._page(workflow, version, status, after, limit)
            if got:
                yield got
            if len(got) < limit:
                return
            after = got[-1][1]

    def _page(
        self,
        workflow: str | None,
        version: int | None,
        status: ListingStatus | None,
        after: int,
        limit: int,
    ) -> list[tuple[InstanceInfo, int]]:
        if not self._indexed:
            with self.runner.db.transaction() as tx:
                for b in load_builds(tx, NAME):
                    if b.state == "serving":
                        _page_indexes(tx, tx.bound(b.build).table("by_id"))
            self._indexed = True
        where, params = _filters(workflow, version, status)
        where += " AND started_global > ?" if where else " WHERE started_global > ?"
        rows = self.runner.db.query(
            f"SELECT {_COLUMNS}, started_global FROM {VIEW}{where} "
            "ORDER BY started_global LIMIT ?",
            [*params, after, limit],
        )
        out: list[tuple[InstanceInfo, int]] = []
        for iid, wf_name, ver, st, pos, _us, data, error, g in rows:
            if error is not None:
                info = InstanceInfo(iid, wf_name, ver, None, pos, st, error=error)
            else:
                wf = self.registry.get(wf_name, ver)
                state = msgspec.msgpack.decode(bytes(data), type=wf.state_type)
                info = InstanceInfo(iid, wf_name, ver, state, pos, st)
            out.append((info, int(g)))
        return out

    def version_stats(self, workflow: str | None = None) -> list[VersionStats]:
        """Counts per ``workflow@version``, sorted (see :class:`StatsSource`)."""
        if self.fresh:
            self.refresh()
        where, params = _filters(workflow, None, None)
        rows = self.runner.db.query(
            "SELECT workflow, version, "
            "SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
            "MIN(CASE WHEN status = 'running' THEN started_us END), "
            "SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN status = 'unreadable' THEN 1 ELSE 0 END) "
            f"FROM {VIEW}{where} GROUP BY workflow, version ORDER BY workflow, version",
            params,
        )
        return [
            VersionStats(
                str(w),
                int(v),
                int(r),
                int(c),
                int(f),
                None if o is None else int(o),
                int(x),
                int(u),
            )
            for w, v, r, c, f, o, x, u in rows
        ]

    def close(self) -> None:
        """Close what this read model opened."""
        self.runner.close()

    def __enter__(self) -> InstancesReadModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _resume_if_failed(db: Database, name: str) -> None:
    """Clear ``name``'s failures if it has any (a no-op for an unknown name)."""
    try:
        resume(db, name)
    except NonstopError:
        return


def _filters(
    workflow: str | None, version: int | None, status: str | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("workflow", workflow),
        ("version", version),
        ("status", status),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
