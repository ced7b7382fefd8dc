"""The projection-owned bookkeeping tables in the read-model database.

- ``nonstop_projection_builds``: one row per build of a projection (a version
  built into its own tables), with its tracking position, its state
  (``building``, ``serving``, ``retired``) and the event it failed at, if any;
- ``nonstop_projection_serving``: the pointer, one row per projection naming the
  build that serves reads; it moves in the same transaction as the views;
- ``nonstop_projection_skips``: every event an operator skipped, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.core.events import now_micros
from projections._db import Database, Tx

__all__ = [
    "BUILDS",
    "SERVING",
    "SKIPS",
    "Build",
    "Failure",
    "ensure",
    "insert_build",
    "load_builds",
    "lock",
    "serving",
]

BUILDS = "nonstop_projection_builds"
SERVING = "nonstop_projection_serving"
SKIPS = "nonstop_projection_skips"
_LOCK_KEY = 0x6E6F6E73  # advisory lock: one creator of the tables at a time

_DDL = [
    f"""CREATE TABLE IF NOT EXISTS {BUILDS} (
        name TEXT NOT NULL,
        build TEXT NOT NULL,
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        ready INTEGER NOT NULL DEFAULT 0,
        keep INTEGER NOT NULL DEFAULT 0,
        tables TEXT NOT NULL DEFAULT '',
        position BIGINT NOT NULL DEFAULT 0,
        created_us BIGINT NOT NULL,
        updated_us BIGINT NOT NULL,
        failed_global BIGINT,
        failed_stream TEXT,
        failed_stream_position BIGINT,
        failed_type TEXT,
        failed_error TEXT,
        failed_us BIGINT,
        PRIMARY KEY (name, build))""",
    f"""CREATE TABLE IF NOT EXISTS {SERVING} (
        name TEXT PRIMARY KEY,
        build TEXT NOT NULL,
        version INTEGER NOT NULL,
        switched_us BIGINT NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {SKIPS} (
        name TEXT NOT NULL,
        build TEXT NOT NULL,
        global_position BIGINT NOT NULL,
        stream_id TEXT,
        stream_position BIGINT,
        type TEXT,
        error TEXT,
        reason TEXT NOT NULL,
        skipped_us BIGINT NOT NULL)""",
]


@dataclass(frozen=True)
class Failure:
    """The event a build stopped at."""

    global_position: int
    """Its global position."""
    stream_id: str
    """Its stream (instance id)."""
    stream_position: int
    """Its position in the stream."""
    type: str
    """Its type name."""
    error: str
    """What the handler (or the decoder) raised."""
    at_us: int
    """When it failed (µs since the epoch)."""

    def describe(self) -> str:
        """One line naming the event and the error."""
        return (
            f"{self.type} at global position {self.global_position} (stream "
            f"{self.stream_id!r} position {self.stream_position}): {self.error}"
        )


@dataclass(frozen=True)
class Build:
    """One build of a projection, as stored."""

    name: str
    """Projection name."""
    build: str
    """Build id, the prefix of its tables (``<name>_v<version>[_r<n>]``)."""
    version: int
    """Projection version it runs."""
    state: str
    """``building``, ``serving`` or ``retired``."""
    ready: bool
    """Its tables exist."""
    keep: bool
    """Keep the tables it replaces when it is switched to."""
    tables: tuple[str, ...]
    """Its logical table names."""
    position: int
    """The last global position applied."""
    failure: Failure | None
    """Where it stopped, if a handler failed."""

    def table(self, name: str) -> str:
        """Physical name of the logical table ``name``."""
        return f"{self.build}_{name}"


_COLUMNS = (
    "name, build, version, state, ready, keep, tables, position, failed_global, "
    "failed_stream, failed_stream_position, failed_type, failed_error, failed_us"
)


def ensure(db: Database) -> None:
    """Create the bookkeeping tables when missing."""
    with db.transaction() as tx:
        if tx.dialect == "postgres":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
        for ddl in _DDL:
            tx.execute(ddl)


def lock(tx: Tx, name: str) -> None:
    """Serialize changes to ``name``'s builds until ``tx`` ends (PostgreSQL).

    SQLite needs nothing: its write transactions (``BEGIN IMMEDIATE``) are
    serial already.
    """
    if tx.dialect == "postgres":
        tx.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (_LOCK_KEY, name))


def load_builds(tx: Tx, name: str | None = None) -> list[Build]:
    """Builds of one projection (or all), oldest first."""
    where, params = ("WHERE name = ?", (name,)) if name else ("", ())
    rows = tx.query(
        f"SELECT {_COLUMNS} FROM {BUILDS} {where} ORDER BY name, created_us, build",
        params,
    )
    return [_build(r) for r in rows]


def _build(r: tuple[Any, ...]) -> Build:
    failure = None
    if r[8] is not None:
        failure = Failure(
            int(r[8]),
            str(r[9]),
            int(r[10] or 0),
            str(r[11]),
            str(r[12]),
            int(r[13] or 0),
        )
    return Build(
        name=str(r[0]),
        build=str(r[1]),
        version=int(r[2]),
        state=str(r[3]),
        ready=bool(r[4]),
        keep=bool(r[5]),
        tables=tuple(t for t in str(r[6]).split(",") if t),
        position=int(r[7]),
        failure=failure,
    )


def serving(tx: Tx, name: str) -> str | None:
    """The build serving reads of projection ``name``, if any."""
    row = tx.query_one(f"SELECT build FROM {SERVING} WHERE name = ?", (name,))
    return None if row is None else str(row[0])


def insert_build(
    tx: Tx, name: str, build: str, version: int, *, keep: bool = False
) -> None:
    """Record a new build (tables not created yet)."""
    now = now_micros()
    tx.execute(
        f"INSERT INTO {BUILDS} (name, build, version, state, keep, created_us, "
        "updated_us) VALUES (?, ?, ?, 'building', ?, ?, ?)",
        (name, build, version, int(keep), now, now),
    )
