"""The built-in projection: every instance with its workflow, version and status.

It folds each instance with the core replay step
(:class:`engine.core.replay.Replay`, the rule the engine replays with), and keeps
one row per instance (``nonstop_instances_by_id``): workflow, version, status,
position, when it started and its encoded state. ``nonstop instances`` and the
deployments' drain counts read it instead of scanning the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from engine.core.codec import EventCodec
from engine.core.errors import NonstopError, ProjectionStateError
from engine.core.events import RecordedEvent, is_reserved_stream
from engine.core.replay import Instance, InstanceInfo, Replay
from engine.core.workflow import Status, WorkflowRegistry
from engine.stats import StatsSource, VersionStats
from engine.store import EventStore
from projections._api import ALL, Projection
from projections._db import Database, Tx
from projections._runner import Runner, resume, status

__all__ = ["NAME", "InstancesReadModel", "instances_projection"]

NAME = "nonstop_instances"
"""The projection's name; readers query the view ``nonstop_instances_by_id``."""
VIEW = f"{NAME}_by_id"
_CHUNK = 500
_COLUMNS = "instance_id, workflow, version, status, position, started_us, state"


@dataclass(slots=True)
class _Row:
    inst: Instance
    started_global: int
    started_us: int


def instances_projection(registry: WorkflowRegistry) -> Projection:
    """The instances projection over the workflows of ``registry``.

    Its handler raises (and so stops the projection at that event) when an
    instance's version is not in ``registry``: register every version that
    has instances.
    """
    p = Projection(NAME, version=1, tables=["by_id"])
    replay = Replay(EventCodec(), registry.get)

    @p.setup
    def create(tx: Tx) -> None:
        t = tx.table("by_id")
        blob = "BYTEA" if tx.dialect == "postgres" else "BLOB"
        tx.execute(
            f"CREATE TABLE {t} (instance_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, "
            "version INTEGER NOT NULL, status TEXT NOT NULL, position BIGINT NOT NULL, "
            f"started_global BIGINT NOT NULL, started_us BIGINT NOT NULL, state {blob})"
        )
        tx.execute(f"CREATE INDEX {t}_wvs ON {t} (workflow, version, status)")
        tx.execute(f"CREATE INDEX {t}_start ON {t} (started_global)")

    @p.on_batch(ALL)
    def fold(tx: Tx, batch: Iterable[RecordedEvent]) -> None:
        events = [e for e in batch if not is_reserved_stream(e.stream_id)]
        rows = _load(tx, registry, {e.stream_id for e in events})
        dirty: set[str] = set()
        for e in events:
            _apply(replay, rows, e)
            dirty.add(e.stream_id)
        tx.executemany(
            f"INSERT INTO {tx.table('by_id')} (instance_id, workflow, version, status, "
            "position, started_global, started_us, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET "
            "version = excluded.version, status = excluded.status, "
            "position = excluded.position, state = excluded.state",
            [_params(iid, rows[iid]) for iid in sorted(dirty)],
        )

    return p


def _load(tx: Tx, registry: WorkflowRegistry, ids: set[str]) -> dict[str, _Row]:
    out: dict[str, _Row] = {}
    todo = sorted(ids)
    t = tx.table("by_id")
    for i in range(0, len(todo), _CHUNK):
        chunk = todo[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for iid, wf_name, version, st, pos, g, us, data in tx.query(
            "SELECT instance_id, workflow, version, status, position, started_global, "
            f"started_us, state FROM {t} WHERE instance_id IN ({marks})",
            chunk,
        ):
            wf = registry.get(wf_name, version)
            state = msgspec.msgpack.decode(bytes(data), type=wf.state_type)
            inst = Instance(wf, state, pos, cancelled=st == "cancelled")
            out[iid] = _Row(inst, g, us)
    return out


def _apply(replay: Replay, rows: dict[str, _Row], e: RecordedEvent) -> None:
    row = rows.get(e.stream_id)
    inst = replay.apply(None if row is None else row.inst, e)
    if row is None or inst is not row.inst:  # a start
        rows[e.stream_id] = _Row(inst, e.global_position, e.recorded_at)


def _params(iid: str, r: _Row) -> tuple[Any, ...]:
    inst = r.inst
    return (
        iid,
        inst.workflow.name,
        inst.workflow.version,
        inst.status,
        inst.position,
        r.started_global,
        r.started_us,
        msgspec.msgpack.encode(inst.state),
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
        self.runner = Runner(
            store, [instances_projection(registry)], db=db, codec=codec
        )
        self.fresh = fresh

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
        return n

    def instances(
        self,
        *,
        workflow: str | None = None,
        version: int | None = None,
        status: Status | None = None,
    ) -> list[InstanceInfo]:
        """Instances in start order, filtered by workflow, version and status."""
        if self.fresh:
            self.refresh()
        where, params = _filters(workflow, version, status)
        rows = self.runner.db.query(
            f"SELECT {_COLUMNS} FROM {VIEW}{where} ORDER BY started_global", params
        )
        out: list[InstanceInfo] = []
        for iid, wf_name, ver, st, pos, _us, data in rows:
            wf = self.registry.get(wf_name, ver)
            state = msgspec.msgpack.decode(bytes(data), type=wf.state_type)
            out.append(InstanceInfo(iid, wf_name, ver, state, pos, st))
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
            "SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) "
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
            )
            for w, v, r, c, f, o, x in rows
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
