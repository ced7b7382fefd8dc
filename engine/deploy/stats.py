"""Per-version instance counts from the instances read model, without a log scan.

The counts come from the built-in instances projection
(:class:`projections.instances.InstancesReadModel`), kept in the store's own
database: each call first applies the events appended since the previous one
(the projection's tracking position), then runs one ``GROUP BY`` over its
table. The first call on a store builds the read model (one pass over the
log, once); later calls cost the new events plus the query, whatever the
size of the log.

A store whose URL carries a password (redacted in ``store.url``) or an
in-memory store gets an in-memory read model instead, built anew on each call:
pass ``db`` to keep it in a database of your choice.
"""

from __future__ import annotations

import asyncio

from engine.core.codec import EventCodec
from engine.core.workflow import WorkflowRegistry
from engine.runtime import Engine
from engine.stats import StatsSource, VersionStats
from engine.store import EventStore

__all__ = ["ScanStats", "engine_stats"]


async def engine_stats(
    engine: Engine, workflow: str | None = None
) -> list[VersionStats]:
    """Counts per version of the instances in ``engine``'s store.

    An instance counts under the version it runs now (its pinned version, or
    the one it was migrated to).
    """
    stats = ScanStats(engine.store, engine.registry, codec=engine.codec)
    return await asyncio.to_thread(stats.version_stats, workflow)


class ScanStats(StatsSource):
    """A :class:`~engine.stats.StatsSource` over the instances read model.

    The name is kept from when it scanned the log; it no longer does (see the
    module docstring for the cost of a call).

    Args:
        store: The event store (left open).
        registry: Definitions of every version that has instances.
        codec: The engine's codec (default: default types and upcasters).
        db: Where the read model lives (default: the store's database).
    """

    def __init__(
        self,
        store: EventStore,
        registry: WorkflowRegistry,
        *,
        codec: EventCodec | None = None,
        db: str | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.codec = codec
        self.db = db if db is not None else _database_of(store)

    def version_stats(self, workflow: str | None = None) -> list[VersionStats]:
        """See :meth:`StatsSource.version_stats` (blocking)."""
        from projections.instances import InstancesReadModel

        with InstancesReadModel(
            self.store, self.registry, db=self.db, codec=self.codec
        ) as model:
            return model.version_stats(workflow)


def _database_of(store: EventStore) -> str:
    """The store's own database when its URL can be reopened, else memory."""
    url = store.url
    if "***" in url or url.startswith("memory:"):
        return "memory://"
    return url
