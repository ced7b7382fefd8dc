"""Dead letters: Kafka messages the worker could not apply, kept as events.

A dead letter is a ``nonstop.DeadLetter`` event, alone in its own stream
``nonstop.deadletter/<group>/<topic>/<partition>/<offset>``, appended in the same
transaction as the worker's other events and the partition's tracking record.
So a message's offset never advances without its outcome being stored, and a
message is dead-lettered at most once (the stream's position 1 is unique).
Replaying one re-produces its original bytes to its topic and appends
``nonstop.DeadLetterReplayed`` at position 2 of the same stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from engine.errors import ConcurrencyConflict
from engine.events import EventCodec, Metadata, event, now_micros
from engine.kafka.errors import (
    AlreadyReplayed,
    BrokerUnavailable,
    DeadLetterNotFound,
)
from engine.store import EventStore, NewRecord

__all__ = [
    "DEAD_LETTER",
    "REPLAYED",
    "REPLAY_OF",
    "DeadLetter",
    "DeadLetterReplayed",
    "Letter",
    "dead_letter_record",
    "dead_letter_stream",
    "find_letters",
    "list_dead_letters",
    "mark_replayed",
    "replay",
]

DEAD_LETTER = "nonstop.DeadLetter"
"""Type name of a dead letter event."""
REPLAYED = "nonstop.DeadLetterReplayed"
"""Type name of the event that marks a dead letter replayed."""
_WRITER = "nonstop.kafka"


@event(DEAD_LETTER)
class DeadLetter(msgspec.Struct, frozen=True):
    """A Kafka message that could not be applied, with why."""

    group: str
    """Consumer group of the worker that gave up on it."""
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
    headers: list[tuple[str, bytes]]
    """The original headers."""
    timestamp: int
    """The message's Kafka timestamp, milliseconds since the epoch."""


@event(REPLAYED)
class DeadLetterReplayed(msgspec.Struct, frozen=True):
    """A dead letter was produced again to a topic."""

    topic: str
    """Where it was produced."""


@dataclass(frozen=True, slots=True)
class Letter:
    """A stored dead letter, as listed."""

    id: int
    """Its global position: the id ``nonstop deadletters replay`` takes."""
    stream_id: str
    """Its stream."""
    letter: DeadLetter
    """The message and the reason."""
    recorded_at: int
    """When it was stored, microseconds since the epoch."""
    replayed_to: str | None
    """The topic it was replayed to, if it was."""


def dead_letter_stream(group: str, topic: str, partition: int, offset: int) -> str:
    """The stream id of the dead letter of one message."""
    return f"nonstop.deadletter/{group}/{topic}/{partition}/{offset}"


def dead_letter_record(codec: EventCodec, letter: DeadLetter) -> NewRecord:
    """The record that stores ``letter`` (position 1 of its own stream)."""
    name, data = codec.encode(letter, Metadata(_WRITER), recorded_at=now_micros())
    sid = dead_letter_stream(
        letter.group, letter.topic, letter.partition, letter.offset
    )
    return NewRecord(sid, 1, name, data)


def list_dead_letters(
    store: EventStore,
    codec: EventCodec,
    *,
    group: str | None = None,
    include_replayed: bool = False,
) -> list[Letter]:
    """Dead letters in the order they were stored, pending ones only by default."""
    letters: dict[str, Letter] = {}
    for rec in store.iter_all(types=[DEAD_LETTER, REPLAYED]):
        (ev,) = codec.decode(
            rec.stream_id, rec.position, rec.global_position, rec.type, rec.data
        )
        if isinstance(ev.event, DeadLetter):
            letters[rec.stream_id] = Letter(
                rec.global_position, rec.stream_id, ev.event, ev.recorded_at, None
            )
        elif isinstance(ev.event, DeadLetterReplayed) and rec.stream_id in letters:
            old = letters[rec.stream_id]
            letters[rec.stream_id] = Letter(
                old.id, old.stream_id, old.letter, old.recorded_at, ev.event.topic
            )
    return [
        x
        for x in letters.values()
        if (group is None or x.letter.group == group)
        and (include_replayed or x.replayed_to is None)
    ]


def find_letters(
    store: EventStore, codec: EventCodec, ids: Sequence[int]
) -> list[Letter]:
    """The dead letters with these ids (replayed ones included), in that order.

    Raises:
        DeadLetterNotFound: an id names no dead letter.
    """
    by_id = {x.id: x for x in list_dead_letters(store, codec, include_replayed=True)}
    out = []
    for i in ids:
        if i not in by_id:
            raise DeadLetterNotFound(i)
        out.append(by_id[i])
    return out


def mark_replayed(
    store: EventStore, codec: EventCodec, letter: Letter, topic: str
) -> None:
    """Append ``nonstop.DeadLetterReplayed`` to the letter's stream.

    Raises:
        AlreadyReplayed: another replay marked it first.
    """
    name, data = codec.encode(
        DeadLetterReplayed(topic), Metadata(_WRITER), recorded_at=now_micros()
    )
    try:
        store.append([NewRecord(letter.stream_id, 2, name, data)])
    except ConcurrencyConflict:
        raise AlreadyReplayed(letter.id, topic) from None


REPLAY_OF = "nonstop-replay-of"
"""Header of a replayed message: the id of the message it replays.

The worker uses it as the default command id, so replaying a letter twice
(a crash between producing it and marking it) still applies it once.
"""


async def replay(
    store: EventStore, codec: EventCodec, bootstrap: str, ids: Sequence[int]
) -> list[Letter]:
    """Produce dead letters again to their topics and mark them replayed.

    Raises:
        DeadLetterNotFound: an id names no dead letter (nothing was produced).
        AlreadyReplayed: a letter was replayed before (nothing was produced).
        BrokerUnavailable: the broker cannot be reached.
    """
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

    letters = await asyncio.to_thread(find_letters, store, codec, ids)
    for x in letters:
        if x.replayed_to is not None:
            raise AlreadyReplayed(x.id, x.replayed_to)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        await producer.start()
        for x in letters:
            m = x.letter
            origin = f"kafka:{m.topic}:{m.partition}:{m.offset}"
            replayed = dict(m.headers).get(REPLAY_OF)
            headers = [h for h in m.headers if h[0] != REPLAY_OF]
            headers.append((REPLAY_OF, replayed or origin.encode()))
            await producer.send_and_wait(m.topic, m.value, key=m.key, headers=headers)
            await asyncio.to_thread(mark_replayed, store, codec, x, m.topic)
    except KafkaError as exc:
        raise BrokerUnavailable(bootstrap, str(exc)) from None
    finally:
        await producer.stop()
    return letters
