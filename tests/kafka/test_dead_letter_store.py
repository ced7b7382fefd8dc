"""The dead-letter table of every store adapter: atomic, once per message."""

from __future__ import annotations

import pytest

from engine import ConcurrencyConflict, open_store
from engine.store import DeadLetter, NewRecord, Tracking


def _letter(offset: int, consumer: str = "g") -> DeadLetter:
    return DeadLetter(
        consumer,
        "orders",
        1,
        offset,
        "mapping failed",
        b"k",
        b"\x00\xff",
        (("trace", b"abc"),),
        1700000000000,
    )


def test_dead_letters_commit_with_events_and_tracking(store_url):
    store = open_store(store_url)
    try:
        store.append(
            [NewRecord("s", 1, "nonstop.Started", b"x")],
            tracking=Tracking("kafka:g:orders:1", 3),
            dead_letters=[_letter(1), _letter(2)],
        )
        found = store.dead_letters()
        assert [x.letter for x in found] == [_letter(1), _letter(2)]
        assert found[0].id < found[1].id and found[0].recorded_at > 0
        assert store.tracking_position("kafka:g:orders:1") == 3
        # Dead letters alone (with the offset) are a transaction too.
        store.append(
            [], tracking=Tracking("kafka:g:orders:1", 4), dead_letters=[_letter(3)]
        )
        assert [x.letter.offset for x in store.dead_letters()] == [1, 2, 3]
    finally:
        store.close()


def test_a_message_is_dead_lettered_once_and_a_conflict_writes_nothing(store_url):
    store = open_store(store_url)
    try:
        store.append([], tracking=Tracking("t", 1), dead_letters=[_letter(1)])
        with pytest.raises(ConcurrencyConflict):
            store.append(
                [NewRecord("s", 1, "nonstop.Started", b"x")],
                tracking=Tracking("t", 2),
                dead_letters=[_letter(1)],
            )
        assert store.stream_position("s") == 0
        assert store.tracking_position("t") == 1
        assert len(store.dead_letters()) == 1
        # Another consumer group may dead-letter the same message.
        store.append([], dead_letters=[_letter(1, consumer="other")])
        assert len(store.dead_letters()) == 2
        assert len(store.dead_letters(consumer="other")) == 1
    finally:
        store.close()


def test_marking_a_replay_hides_the_letter_once(store_url):
    store = open_store(store_url)
    try:
        store.append([], dead_letters=[_letter(1), _letter(2)])
        first, second = store.dead_letters()
        assert store.mark_dead_letter_replayed(first.id, "orders")
        assert not store.mark_dead_letter_replayed(first.id, "orders")
        assert not store.mark_dead_letter_replayed(10_000, "orders")
        assert [x.id for x in store.dead_letters()] == [second.id]
        everything = store.dead_letters(include_replayed=True)
        assert [x.replayed_to for x in everything] == ["orders", None]
    finally:
        store.close()


def test_dead_letters_survive_reopening(durable_url):
    with open_store(durable_url) as store:
        store.append([], dead_letters=[_letter(7)])
    with open_store(durable_url) as store:
        assert [x.letter for x in store.dead_letters()] == [_letter(7)]
