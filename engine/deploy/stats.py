"""Per-version instance counts by scanning the log (the fallback StatsSource).

It folds every instance, so it costs a full read of the store: fine for the
command line and tests; a read model (a projection) answers without the scan.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from typing import Any

from engine.core.codec import EventCodec
from engine.core.errors import EventDecodeError
from engine.core.workflow import WorkflowRegistry
from engine.runtime import Engine
from engine.stats import StatsSource, VersionStats
from engine.store import EventStore

__all__ = ["ScanStats", "engine_stats"]

_STARTED = "nonstop.Started"


async def engine_stats(
    engine: Engine, workflow: str | None = None
) -> list[VersionStats]:
    """Counts per version of the instances ``engine`` can read, by a full scan.

    An instance counts under the version it runs now (its pinned version, or
    the one it was migrated to).
    """
    infos = await engine.instances(workflow=workflow)
    started = await asyncio.to_thread(_started_at, engine.store, engine.codec)
    counts: dict[tuple[str, int], dict[str, Any]] = defaultdict(
        lambda: {
            "running": 0,
            "completed": 0,
            "failed": 0,
            "cancelled": 0,
            "unreadable": 0,
            "oldest": None,
        }
    )
    for info in infos:
        c = counts[(info.workflow, info.version)]
        c[info.status] += 1
        at = started.get(info.instance_id)
        if info.status == "running" and at is not None:
            c["oldest"] = at if c["oldest"] is None else min(c["oldest"], at)
    return [
        VersionStats(
            w,
            v,
            c["running"],
            c["completed"],
            c["failed"],
            c["oldest"],
            c["cancelled"],
            c["unreadable"],
        )
        for (w, v), c in sorted(counts.items())
    ]


def _started_at(store: EventStore, codec: EventCodec) -> dict[str, int]:
    out: dict[str, int] = {}
    for rec in store.iter_all(types=[_STARTED]):
        try:
            (e,) = codec.decode(
                rec.stream_id, rec.position, rec.global_position, rec.type, rec.data
            )
        except EventDecodeError:  # listed as unreadable, never as running
            continue
        out[rec.stream_id] = e.recorded_at
    return out


class ScanStats(StatsSource):
    """A :class:`~engine.stats.StatsSource` that scans the store on each call.

    Args:
        store: The event store (left open).
        registry: Definitions of every version that has instances.
    """

    def __init__(self, store: EventStore, registry: WorkflowRegistry) -> None:
        self.store = store
        self.registry = registry

    def version_stats(self, workflow: str | None = None) -> list[VersionStats]:
        """See :meth:`StatsSource.version_stats`.

        Safe to call from async code too: the scan runs on its own event loop
        in a helper thread.
        """
        result: list[list[VersionStats]] = []
        failure: list[BaseException] = []

        def scan() -> None:
            try:
                engine = Engine(self.store, self.registry)
                result.append(asyncio.run(engine_stats(engine, workflow)))
            except BaseException as exc:  # re-raised in the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=scan, name="nonstop-stats")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return result[0]
