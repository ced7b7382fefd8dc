"""Replaying a dead letter from the console produces it again and audits it."""

from __future__ import annotations

import asyncio

import pytest

from engine.store import DeadLetter, open_store
from tests.console.conftest import Seeded, csrf
from tests.kafka.conftest import create_topic, kafka  # noqa: F401 (the fixture)


@pytest.mark.kafka
def test_replay_produces_the_letter_and_audits_who_and_why(
    seeded: Seeded,
    kafka: str,  # noqa: F811
) -> None:
    topic = asyncio.run(create_topic(kafka, partitions=1))
    store = open_store(seeded.url)
    try:
        letter = DeadLetter("g", topic, 0, 3, "mapping failed", b"k1", b'{"n": 1}')
        store.append([], dead_letters=[letter])
        [stored] = [x for x in store.dead_letters() if x.letter.topic == topic]
    finally:
        store.close()
    c = seeded.client(kafka=kafka)
    path = f"/api/deadletters/{stored.id}/replay"
    r = c.post(path, json={"reason": "mapping fixed"}, headers=csrf(c))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": stored.id, "replayed_to": topic}
    [shown] = [x for x in c.get("/api/deadletters").json() if x["id"] == stored.id]
    assert shown["replayed_to"] == topic
    audit = c.get(f"/api/audit?subject=deadletter:{stored.id}").json()
    assert [(a["action"], a["by"], a["reason"]) for a in audit] == [
        ("deadletter replay", "ann", "mapping fixed")
    ]
    assert f"{topic}/0/3" in audit[0]["detail"]
    again = c.post(path, json={"reason": "twice"}, headers=csrf(c))
    assert again.status_code == 409 and "replayed" in again.json()["error"]
