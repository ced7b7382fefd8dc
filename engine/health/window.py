"""Reading health over a time window, summed over every engine on a store."""

from __future__ import annotations

import math

from engine.core.codec import EventCodec
from engine.health.analysis import Counts
from engine.health.counters import DEFAULT_BUCKET_SECONDS
from engine.health.events import HealthFlushed, health_stream
from engine.store import EventStore

__all__ = ["bucket_starts", "read_window"]


def bucket_starts(start: float, end: float, bucket_seconds: int) -> list[int]:
    """Starts of the buckets that begin in ``[start, end)``.

    A bucket belongs to the window when it starts inside it, so consecutive
    windows never count a bucket twice.
    """
    first = math.ceil(start / bucket_seconds) * bucket_seconds
    return list(range(int(first), math.ceil(end), bucket_seconds))


def read_window(
    store: EventStore,
    workflow: str,
    version: int,
    start: float,
    end: float,
    *,
    bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
    codec: EventCodec | None = None,
) -> Counts:
    """Counts of ``workflow@version`` in buckets starting in ``[start, end)``.

    Reads one small stream per bucket (one round trip where the store can):
    the cost grows with the window, never with the log.
    """
    codec = codec if codec is not None else EventCodec()
    streams = [
        health_stream(workflow, version, bucket_seconds, b)
        for b in bucket_starts(start, end, bucket_seconds)
    ]
    total = Counts()
    for sid, records in store.read_streams(streams).items():
        for r in records:
            for e in codec.decode(sid, r.position, r.global_position, r.type, r.data):
                if isinstance(e.event, HealthFlushed):
                    total = total + e.event.counts
    return total
