"""Dead letters: messages a consumer could not apply, stored beside the events.

A Kafka worker stores the dead letters of a batch in the same transaction as
the batch's events and its partition's tracking record, so an offset never
advances without the outcome of every message before it. The table
(``nonstop_dead_letters``) is unique on ``(consumer, topic, partition, offset)``:
one message is dead-lettered at most once.

This module holds the record types and the SQL text shared by the adapters;
the recorders of :mod:`engine.store.recorders` create the table and insert the
rows, through the ``dead_letters`` keyword that ``insert_events`` passes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = [
    "COLUMNS",
    "SELECT",
    "TABLE",
    "DeadLetter",
    "StoredDeadLetter",
    "row",
    "stored",
    "where",
]

TABLE = "nonstop_dead_letters"
"""The dead-letter table, in the event store's database (and schema)."""

COLUMNS = (
    "consumer, topic, partition, offset_, reason, key, value, headers, "
    "timestamp_ms, recorded_at"
)
SELECT = f"SELECT id, {COLUMNS}, replayed_to FROM {{}}"
_headers = msgspec.msgpack.Encoder()

_decode_headers = msgspec.msgpack.Decoder(list[tuple[str, bytes]])


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be applied, and why."""

    consumer: str
    """Who gave up on it (a Kafka consumer group)."""
    topic: str
    """Topic it was read from."""
    partition: int
    """Partition."""
    offset: int
    """Offset in the partition."""
    reason: str
    """Why: the decode or mapping error, or the workflow's rejection."""
    key: bytes | None
    """The original key bytes."""
    value: bytes | None
    """The original value bytes."""
    headers: tuple[tuple[str, bytes], ...] = ()
    """The original headers."""
    timestamp: int = 0
    """The message's timestamp, milliseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as stored."""

    id: int
    """Its id in the table."""
    letter: DeadLetter
    """The message and the reason."""
    recorded_at: int
    """When it was stored, microseconds since the epoch."""
    replayed_to: str | None
    """The topic it was replayed to, if it was."""


def row(d: DeadLetter, now: int) -> tuple[Any, ...]:
    """The column values of ``d`` (in :data:`COLUMNS` order), stored at ``now``."""
    return (
        d.consumer,
        d.topic,
        d.partition,
        d.offset,
        d.reason,
        d.key,
        d.value,
        _headers.encode(list(d.headers)),
        d.timestamp,
        now,
    )


def stored(values: Sequence[Any]) -> StoredDeadLetter:
    """A stored dead letter from a row of :data:`SELECT`."""
    i, consumer, topic, part, off, reason, key, value, hdrs, ts, at, replayed = values
    letter = DeadLetter(
        consumer,
        topic,
        int(part),
        int(off),
        reason,
        None if key is None else bytes(key),
        None if value is None else bytes(value),
        tuple(_decode_headers.decode(bytes(hdrs))),
        int(ts),
    )
    return StoredDeadLetter(int(i), letter, int(at), replayed)


def where(
    consumer: str | None, include_replayed: bool, mark: str
) -> tuple[str, list[Any]]:
    """The WHERE and ORDER BY clauses of a listing, and its parameters."""
    clauses, params = [], []
    if consumer is not None:
        clauses.append(f"consumer = {mark}")
        params.append(consumer)
    if not include_replayed:
        clauses.append("replayed_to IS NULL")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return where + " ORDER BY id", params
