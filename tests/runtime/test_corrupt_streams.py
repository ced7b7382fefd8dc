"""A gap or a missing start is the same precise error from every reader."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec
import pytest

from engine import CorruptStream, Engine, EventStore, open_store
from engine.core.codec import EventCodec
from engine.core.events import Metadata, Started
from engine.store import NewRecord
from projections.instances import InstancesReadModel
from tests.runtime.counter import Incremented, registry

_codec = EventCodec()


def _record(sid: str, position: int, e: object) -> NewRecord:
    name, data = _codec.encode(e, Metadata("counter@1"), recorded_at=position)  # type: ignore[arg-type]
    return NewRecord(sid, position, name, data)


def _started() -> Started:
    return Started("counter", 1, "Begin", msgspec.msgpack.encode(None))


@pytest.fixture
def store(sqlite_url: str) -> Iterator[EventStore]:
    s = open_store(sqlite_url)
    yield s
    s.close()


@pytest.fixture(params=["gap", "no-start"])
def corrupt(request: pytest.FixtureRequest, store: EventStore) -> tuple[str, int]:
    """A corrupt stream ``bad`` (and a sound one, ``ok``); returns its problem."""
    store.append([_record("ok", 1, _started()), _record("ok", 2, Incremented(1))])
    if request.param == "gap":
        store.append(
            [
                _record("bad", p, _started() if p == 1 else Incremented(1))
                for p in (1, 2, 3)
            ]
        )
        store.append([_record("bad", 5, Incremented(1))])  # 5 after 3
        return ("5 follows 3", 5)
    store.append([_record("bad", 1, Incremented(1)), _record("bad", 2, Incremented(1))])
    return ("does not begin with nonstop.Started", 1)


async def test_get_history_and_replay_raise_the_same_error(
    store: EventStore, corrupt: tuple[str, int]
) -> None:
    says, position = corrupt
    async with asyncio.timeout(30):
        engine = Engine(store, registry())
        try:
            seen = []
            for call in (engine.get, engine.history, engine.get):
                with pytest.raises(CorruptStream) as err:
                    await call("bad")
                seen.append(err.value)
            assert len({str(e) for e in seen}) == 1
            assert says in str(seen[0])
            assert (seen[0].stream_id, seen[0].position) == ("bad", position)
            assert (await engine.get("ok")).state.n == 1
        finally:
            await engine.close()


def test_the_instances_read_model_marks_it_with_the_same_error(
    store: EventStore, sqlite_url: str, corrupt: tuple[str, int]
) -> None:
    # It used to stop at the error; it now lists the stream as unreadable.
    says, position = corrupt
    model = InstancesReadModel(store, registry(), db=sqlite_url)
    try:
        found = {i.instance_id: i for i in model.instances()}
        bad = found["bad"]
        assert bad.status == "unreadable" and bad.position == position
        assert bad.error is not None and bad.error.startswith("CorruptStream: ")
        assert says in bad.error
        assert found["ok"].status == "running" and found["ok"].state.n == 1
    finally:
        model.close()
