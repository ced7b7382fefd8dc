"""In-memory adapter, for unit tests of the core (nothing survives the process)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOAggregateRecorder

from engine.store.adapter import RecorderStore
from engine.store.outbox import Outbox
from engine.store.recorders import MemoryRecorder

__all__ = ["MemoryStore"]


class _Snapshots(POPOAggregateRecorder):  # type: ignore[misc]
    """Snapshots in memory, newest by position (not by insertion order)."""

    def _update_table(self, stored_events: Sequence[StoredEvent], **kw: Any) -> Any:
        ids = super()._update_table(stored_events, **kw)
        for sid in {str(s.originator_id) for s in stored_events}:
            index = self._stored_events_index[sid]
            self._stored_events_index[sid] = dict(sorted(index.items()))
        return ids

    def replace(self, stored: StoredEvent) -> None:
        with self._database_lock:
            index = self._stored_events_index[str(stored.originator_id)]
            at = index.get(stored.originator_version)
            if at is None:
                self._update_table([stored])
            else:
                self._stored_events[at] = stored


class MemoryStore(RecorderStore):
    """An event store held in process memory."""

    def __init__(self, url: str = "memory://") -> None:
        self._snapshot_recorder = _Snapshots()
        self._recorder = MemoryRecorder()
        super().__init__(url, self._recorder, self._snapshot_recorder)

    def outbox(self) -> Outbox:
        """See :meth:`EventStore.outbox`."""
        return self._recorder.outbox

    def _replace_snapshot(self, stored: StoredEvent) -> None:
        self._snapshot_recorder.replace(stored)
