"""Dead letters of Kafka workers: list them, replay them.

The worker stores a dead letter (:class:`engine.store.DeadLetter`: reason,
original key, value and headers, topic, partition, offset) in the event store's
``nonstop_dead_letters`` table, in the same transaction as the batch's events
and the partition's offset. Replaying one produces its original bytes again to
its topic, with a ``nonstop-replay-of`` header naming the original message,
and marks it replayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from engine.core.errors import AlreadyReplayed, BrokerUnavailable, DeadLetterNotFound
from engine.store import EventStore, StoredDeadLetter

__all__ = ["REPLAY_OF", "find_letters", "message_id", "replay"]

REPLAY_OF = "nonstop-replay-of"
"""Header of a replayed message: the id of the message it replays.

The worker uses it as the default command id, so a letter replayed twice (a
crash between producing it and marking it) still applies once.
"""


def message_id(topic: str, partition: int, offset: int) -> str:
    """``kafka:<topic>:<partition>:<offset>``, a message's default command id."""
    return f"kafka:{topic}:{partition}:{offset}"


def find_letters(store: EventStore, ids: Sequence[int]) -> list[StoredDeadLetter]:
    """The dead letters with these ids (replayed ones included), in that order.

    Raises:
        DeadLetterNotFound: an id names no dead letter.
    """
    by_id = {x.id: x for x in store.dead_letters(include_replayed=True)}
    out = []
    for i in ids:
        if i not in by_id:
            raise DeadLetterNotFound(i)
        out.append(by_id[i])
    return out


async def replay(
    store: EventStore, bootstrap: str, ids: Sequence[int]
) -> list[StoredDeadLetter]:
    """Produce dead letters again to their topics and mark them replayed.

    Raises:
        DeadLetterNotFound: an id names no dead letter (nothing was produced).
        AlreadyReplayed: a letter was replayed before (nothing was produced).
        BrokerUnavailable: the broker cannot be reached.
    """
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

    letters = await asyncio.to_thread(find_letters, store, ids)
    for x in letters:
        if x.replayed_to is not None:
            raise AlreadyReplayed(x.id, x.replayed_to)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        await producer.start()
        for x in letters:
            m = x.letter
            first = dict(m.headers).get(REPLAY_OF)
            origin = first or message_id(m.topic, m.partition, m.offset).encode()
            headers = [h for h in m.headers if h[0] != REPLAY_OF]
            headers.append((REPLAY_OF, origin))
            await producer.send_and_wait(m.topic, m.value, key=m.key, headers=headers)
            done = await asyncio.to_thread(
                store.mark_dead_letter_replayed, x.id, m.topic
            )
            if not done:
                raise AlreadyReplayed(x.id, m.topic)
    except KafkaError as exc:
        raise BrokerUnavailable(bootstrap, str(exc)) from None
    finally:
        await producer.stop()
    return letters
