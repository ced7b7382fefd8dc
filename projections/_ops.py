"""Operator actions on projections: status, resume, skip, and blue/green rebuilds.

They work on the read-model database alone (and the store for the lag), so the
CLI can run them beside a running runner: the runner picks each change up on
its next round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.core.errors import ProjectionStateError, UnknownProjection
from engine.core.events import now_micros
from engine.store import EventStore
from projections import _meta
from projections._db import Database, Tx
from projections._decode import recorded_at
from projections._meta import BUILDS, SERVING, SKIPS, Build, Failure

__all__ = [
    "ProjectionStatus",
    "new_build_id",
    "request_rebuild",
    "resume",
    "skip",
    "skips",
    "status",
]


@dataclass(frozen=True)
class ProjectionStatus:
    """Where one build of a projection stands."""

    name: str
    """Projection name."""
    version: int
    """Projection version of the build."""
    build: str
    """Build id (prefix of its tables)."""
    state: str
    """``serving``, ``building``, ``failed`` or ``retired``."""
    serving: bool
    """Reads are served from this build."""
    position: int
    """The last global position applied."""
    lag_events: int
    """Events in the store after ``position``."""
    lag_seconds: float
    """Age of the oldest event not applied yet (0 when caught up)."""
    failure: Failure | None
    """The event it stopped at, if it failed."""


def status(db: Database, store: EventStore) -> list[ProjectionStatus]:
    """Every build that is not retired, with its lag behind the store."""
    _meta.ensure(db)
    with db.transaction() as tx:
        builds = _meta.load_builds(tx)
        serving = {
            str(n): str(b) for n, b in tx.query(f"SELECT name, build FROM {SERVING}")
        }
    head = store.last_global_position()
    now = now_micros()
    out: list[ProjectionStatus] = []
    for b in builds:
        if b.state == "retired":
            continue
        lag_s = 0.0
        if b.position < head:
            first = store.read_all(after=b.position, limit=1)
            if first:
                lag_s = max(0.0, (now - recorded_at(first[0].data)) / 1e6)
        state = "failed" if b.failure is not None else b.state
        out.append(
            ProjectionStatus(
                name=b.name,
                version=b.version,
                build=b.build,
                state=state,
                serving=serving.get(b.name) == b.build,
                position=b.position,
                lag_events=max(0, head - b.position),
                lag_seconds=lag_s,
                failure=b.failure,
            )
        )
    return out


def new_build_id(name: str, version: int, taken: set[str]) -> str:
    build = f"{name}_v{version}"
    n = 1
    while build in taken:
        build = f"{name}_v{version}_r{n}"
        n += 1
    return build


def _known(tx: Tx, name: str) -> list[Build]:
    builds = _meta.load_builds(tx, name)
    if not builds:
        known = sorted({b.name for b in _meta.load_builds(tx)})
        raise UnknownProjection(name, known)
    return builds


def resume(db: Database, name: str) -> list[Failure]:
    """Clear the failures of ``name``; a running runner retries the events.

    Returns:
        The failures cleared (empty when it had not failed).
    """
    _meta.ensure(db)
    with db.transaction() as tx:
        failed = [b.failure for b in _known(tx, name) if b.failure is not None]
        tx.execute(
            f"UPDATE {BUILDS} SET failed_global = NULL, failed_stream = NULL, "
            "failed_stream_position = NULL, failed_type = NULL, failed_error = NULL, "
            "failed_us = NULL, updated_us = ? WHERE name = ?",
            (now_micros(), name),
        )
    return failed


def skip(db: Database, name: str, reason: str) -> list[Failure]:
    """Skip the event each failed build of ``name`` stopped at, recording why.

    Returns:
        The failures skipped.

    Raises:
        ProjectionStateError: ``reason`` is empty or nothing has failed.
    """
    if not reason.strip():
        raise ProjectionStateError(
            "skipping an event needs a reason (--reason TEXT); it is recorded"
        )
    _meta.ensure(db)
    with db.transaction() as tx:
        failed = [b for b in _known(tx, name) if b.failure is not None]
        if not failed:
            raise ProjectionStateError(
                f"projection {name!r} has not failed; there is no event to skip"
            )
        now = now_micros()
        for b in failed:
            f = b.failure
            assert f is not None
            tx.execute(
                f"INSERT INTO {SKIPS} (name, build, global_position, stream_id, "
                "stream_position, type, error, reason, skipped_us) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    b.build,
                    f.global_position,
                    f.stream_id,
                    f.stream_position,
                    f.type,
                    f.error,
                    reason,
                    now,
                ),
            )
            tx.execute(
                f"UPDATE {BUILDS} SET position = ?, failed_global = NULL, "
                "failed_stream = NULL, failed_stream_position = NULL, "
                "failed_type = NULL, failed_error = NULL, failed_us = NULL, "
                "updated_us = ? WHERE name = ? AND build = ?",
                (f.global_position, now, name, b.build),
            )
    return [b.failure for b in failed if b.failure is not None]


def skips(db: Database, name: str | None = None) -> list[dict[str, Any]]:
    """The recorded skips (of ``name``, or all), oldest first."""
    _meta.ensure(db)
    where, params = ("WHERE name = ?", (name,)) if name else ("", ())
    rows = db.query(
        "SELECT name, build, global_position, stream_id, stream_position, type, "
        f"error, reason, skipped_us FROM {SKIPS} {where} ORDER BY skipped_us",
        params,
    )
    keys = (
        "name",
        "build",
        "global_position",
        "stream_id",
        "stream_position",
        "type",
        "error",
        "reason",
        "skipped_us",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def request_rebuild(
    db: Database, name: str, *, keep: bool = False, version: int | None = None
) -> str:
    """Start a blue/green rebuild of ``name`` at its serving version.

    A runner with the projection's code builds the new build from the first
    event beside the serving one, and switches reads to it once caught up.

    Returns:
        The id of the new build.

    Args:
        db: The read-model database.
        name: The projection.
        keep: Keep the serving build's tables after the switch.
        version: The version of the code that will build it; refused unless it
            is the serving version (a new version rebuilds by itself).

    Raises:
        UnknownProjection: no build of ``name`` exists.
        ProjectionStateError: a build of ``name`` is already in progress, or
            ``version`` is not the serving one.
    """
    _meta.ensure(db)
    with db.transaction() as tx:
        builds = _known(tx, name)
        pending = [b.build for b in builds if b.state == "building"]
        if pending:
            raise ProjectionStateError(
                f"projection {name!r} is already being built ({pending[0]}); "
                "wait for it to switch"
            )
        serving = [b.version for b in builds if b.state == "serving"]
        if not serving:
            raise ProjectionStateError(
                f"projection {name!r} serves no reads yet; its first build is "
                "still running"
            )
        if version is not None and version != serving[0]:
            raise ProjectionStateError(
                f"projection {name!r}: the code has version {version} but version "
                f"{serving[0]} serves reads; a new version is built beside the "
                "serving one by `nonstop projections run`, no rebuild needed"
            )
        version = serving[0]
        build = new_build_id(name, version, {b.build for b in builds})
        _meta.insert_build(tx, name, build, version, keep=keep)
    return build
