"""In-memory adapter, for unit tests of the core (nothing survives the process)."""

from __future__ import annotations

from eventsourcing.popo import POPOAggregateRecorder

from engine.store.base import RecorderStore
from engine.store.deadletters import MemoryRecorder

__all__ = ["MemoryStore"]


class MemoryStore(RecorderStore):
    """An event store held in process memory."""

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url, MemoryRecorder(), POPOAggregateRecorder())
