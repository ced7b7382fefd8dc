"""The core replay step: one rule for raw rows and decoded events."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import CorruptStream, EventFromNewerCode, WorkflowRegistry
from engine.core.codec import EventCodec
from engine.core.events import Metadata, Migrated, Started
from engine.core.replay import (
    Instance,
    RecordRow,
    Replay,
    checked,
)
from tests.runtime.counter import Begun, Count, Finished, Incremented, counter

_codec = EventCodec()


def _registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(counter(1), counter(2))
    return reg


def _rows(sid: str, events: list[Any], *, first: int = 1) -> list[RecordRow]:
    out: list[RecordRow] = []
    for i, e in enumerate(events):
        cid = f"c{i}" if isinstance(e, Incremented) else None
        name, data = _codec.encode(e, Metadata("counter@1", cid), recorded_at=i)
        out.append((sid, first + i, 100 + i, name, data))
    return out


def _started(version: int = 1) -> Started:
    return Started("counter", version, "Begin", msgspec.msgpack.encode(None), "k")


def _fold_both(rows: list[RecordRow]) -> tuple[Instance, Instance]:
    """The same stream through :meth:`Replay.fold` and :meth:`Replay.apply`."""
    replay = Replay(_codec, _registry().get)
    raw = replay.replay("s", rows)
    inst: Instance | None = None
    for e in _codec.decode_many(rows):
        inst = replay.apply(inst, e)
    assert inst is not None
    return raw, inst


_events = st.lists(
    st.one_of(
        st.builds(Incremented, st.integers(1, 9)),
        st.builds(Begun, st.integers(0, 9)),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(events=_events)
def test_rows_and_decoded_events_fold_to_the_same_instance(events: list[Any]) -> None:
    raw, decoded = _fold_both(_rows("s", [_started(), *events]))
    expected = Count()
    for e in events:
        expected = counter(1).evolve(expected, e)
    assert raw.state == decoded.state == expected
    assert raw.position == decoded.position == len(events) + 1
    assert raw.commands == decoded.commands
    assert raw.key == decoded.key == "k"


@settings(max_examples=40, deadline=None)
@given(events=_events, cut=st.integers(0, 30))
def test_folding_in_two_parts_equals_folding_at_once(
    events: list[Any], cut: int
) -> None:
    rows = _rows("s", [_started(), *events])
    replay = Replay(_codec, _registry().get)
    cut = min(cut, len(events)) + 1
    head = replay.replay("s", rows[:cut])
    assert replay.fold("s", head, rows[cut:]) == replay.replay("s", rows)


def test_migrated_switches_version_and_state_in_both_paths() -> None:
    moved = Migrated("counter", 1, 2, msgspec.msgpack.encode(Count(40)))
    rows = _rows("s", [_started(), Incremented(1), moved, Incremented(2)])
    for inst in _fold_both(rows):
        assert inst.workflow.version == 2
        assert inst.state == Count(42)
        assert inst.position == 4


def test_a_gap_in_positions_is_the_same_error_in_every_path() -> None:
    rows = _rows("s", [_started(), Incremented(1), Incremented(2)])
    rows[2] = ("s", 5, *rows[2][2:])  # 5 after 2
    replay = Replay(_codec, _registry().get)
    errors = []
    with pytest.raises(CorruptStream) as err:
        replay.replay("s", rows)
    errors.append(err.value)
    with pytest.raises(CorruptStream) as err:
        inst: Instance | None = None
        for e in _codec.decode_many(rows):
            inst = replay.apply(inst, e)
    errors.append(err.value)
    with pytest.raises(CorruptStream) as err:
        list(checked("s", rows))
    errors.append(err.value)
    assert {str(e) for e in errors} == {str(errors[0])}
    assert (errors[0].stream_id, errors[0].position) == ("s", 5)
    assert "5 follows 2" in str(errors[0])


def test_a_stream_without_started_is_the_same_error_in_every_path() -> None:
    rows = _rows("s", [Incremented(1), Finished()])
    replay = Replay(_codec, _registry().get)
    errors = []
    with pytest.raises(CorruptStream) as err:
        replay.replay("s", rows)
    errors.append(err.value)
    with pytest.raises(CorruptStream) as err:
        replay.apply(None, next(_codec.decode_many(rows)))
    errors.append(err.value)
    with pytest.raises(CorruptStream) as err:
        list(checked("s", rows))
    errors.append(err.value)
    assert {str(e) for e in errors} == {str(errors[0])}
    assert "does not begin with nonstop.Started" in str(errors[0])


def test_a_stream_that_begins_past_position_one_is_corrupt() -> None:
    rows = _rows("s", [_started(), Incremented(1)], first=3)
    with pytest.raises(CorruptStream, match="begins at position 3, not 1"):
        Replay(_codec, _registry().get).replay("s", rows)


def test_an_event_of_a_newer_schema_says_it_was_written_by_newer_code() -> None:
    class Newer(msgspec.Struct, array_like=True):
        schema: int
        data: dict[str, Any]
        recorded_at: int
        workflow: str

    data = msgspec.msgpack.encode(Newer(3, {"by": 1}, 0, "counter@1"))
    rows = [*_rows("s", [_started()]), ("s", 2, 9, "tests.counter.Incremented", data)]
    with pytest.raises(EventFromNewerCode) as err:
        Replay(_codec, _registry().get).replay("s", rows)
    assert (err.value.stored, err.value.known) == (3, 1)
    assert "written by newer code (schema 3; this code knows schema 1)" in str(
        err.value
    )


def test_positions_an_upcaster_dropped_are_not_a_gap() -> None:
    from engine.core.events import Envelope, EventTypeRegistry
    from upcasters import UpcasterRegistry

    class Noted(msgspec.Struct, frozen=True):
        text: str

    types = EventTypeRegistry()
    types.register(Incremented, "tests.counter.Incremented")
    types.register(Noted, "tests.replay.Noted", schema=2)
    steps = UpcasterRegistry()
    steps.add("tests.replay.Noted", 1, lambda payload: [])  # schema 1: dropped
    codec = EventCodec(types)
    codec.use_upcasters(steps)
    old = msgspec.msgpack.encode(Envelope(1, {"text": "x"}, 0, "counter@1"))
    rows = _rows("d", [_started(), Incremented(1)])
    rows += [
        ("d", 3, 7, "tests.replay.Noted", old),
        ("d", 4, 8, "tests.replay.Noted", old),
    ]
    rows += [("d", *r[1:]) for r in _rows("d", [Incremented(2)], first=5)]
    replay = Replay(codec, _registry().get)
    inst: Instance | None = None
    for e in codec.decode_many(rows):
        inst = replay.apply(inst, e)
    assert inst is not None
    assert (inst.state, inst.position) == (Count(3), 5)
    assert replay.replay("d", rows).state == Count(3)
