"""The planned chain the codec runs on replay gives what the general upcast gives."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import (
    EventCodec,
    EventDecodeError,
    EventTypeRegistry,
    Workflow,
    WorkflowCodeError,
    WorkflowRegistry,
)
from engine.core.events import Metadata, Started
from engine.core.replay import Replay
from upcasters import Emit, UpcasterRegistry


class Current(msgspec.Struct, frozen=True):
    n: int
    trail: list[int] = []


class Half(msgspec.Struct, frozen=True):
    n: int


def _step(version: int, split_at: int | None) -> Any:
    def step(p: dict[str, Any]) -> Any:
        if version == split_at:
            return [Emit("Half", {"n": p["n"]}, 1), Emit("Half", {"n": -p["n"]}, 1)]
        return {**p, "trail": [*p.get("trail", []), version]}

    return step


def _world(head: int, split_at: int | None) -> tuple[UpcasterRegistry, EventCodec]:
    steps = UpcasterRegistry()
    for v in range(1, head):
        steps.add("Tick", v, _step(v, split_at))
    steps.rename_type("OldTick", "Tick")
    types = EventTypeRegistry()
    types.register(Current, "Tick", head)
    types.register(Half, "Half", 1)
    codec = EventCodec(types)
    codec.use_upcasters(steps)
    return steps, codec


@settings(max_examples=60, deadline=None)
@given(
    head=st.integers(min_value=1, max_value=5),
    data=st.data(),
    n=st.integers(min_value=-1000, max_value=1000),
    renamed=st.booleans(),
)
def test_planned_and_general_paths_agree(
    head: int, data: st.DataObject, n: int, renamed: bool
) -> None:
    stored = data.draw(st.integers(min_value=1, max_value=head))
    split_at = data.draw(st.none() | st.integers(min_value=1, max_value=head))
    steps, codec = _world(head, split_at)
    name = "OldTick" if renamed else "Tick"
    current = {"Tick": head, "Half": 1}
    payload = {"n": n} if stored == 1 else {"n": n, "trail": list(range(1, stored))}
    general = steps.upcast(name, stored, payload, current)
    assert steps.compile(current)(name, stored, payload) == general
    envelope = msgspec.msgpack.encode([stored, payload, 1, "t@1"])
    events, _, _ = codec.decode_old("s", 2, name, envelope)
    want = [msgspec.convert(p, Current if t == "Tick" else Half) for t, p in general]
    assert events == want


def test_a_failing_step_on_the_planned_path_names_the_event() -> None:
    steps = UpcasterRegistry()
    steps.add("Tick", 1, lambda p: {**p, "trail": p["missing"]})
    types = EventTypeRegistry()
    types.register(Current, "Tick", 2)
    codec = EventCodec(types)
    codec.use_upcasters(steps)
    data = msgspec.msgpack.encode([1, {"n": 1}, 1, "t@1"])
    with pytest.raises(EventDecodeError) as err:
        codec.decode_old("stream-9", 4, "Tick", data)
    assert (err.value.stream_id, err.value.position) == ("stream-9", 4)
    assert "schema 1" in str(err.value) and "KeyError" in str(err.value)


def test_new_upcasters_replace_the_planned_chains() -> None:
    types = EventTypeRegistry()
    types.register(Current, "Tick", 2)
    codec = EventCodec(types)
    data = msgspec.msgpack.encode([1, {"n": 1}, 1, "t@1"])
    first = UpcasterRegistry()
    first.add("Tick", 1, lambda p: {**p, "trail": [1]})
    codec.use_upcasters(first)
    assert codec.decode_old("s", 1, "Tick", data)[0] == [Current(1, [1])]
    second = UpcasterRegistry()
    second.add("Tick", 1, lambda p: {**p, "trail": [2]})
    codec.use_upcasters(second)
    assert codec.decode_old("s", 1, "Tick", data)[0] == [Current(1, [2])]
    name, encoded = codec.encode(Current(5, []), Metadata("t@1"), recorded_at=1)
    assert codec.decode_payloads("s", 1, name, encoded)[0] == [Current(5, [])]


# ------------------------------------------------ runs decoded together


def _envelope(schema: int, n: int, command_id: str | None) -> bytes:
    payload = {"n": n} if schema == 1 else {"n": n, "trail": list(range(1, schema))}
    return msgspec.msgpack.encode([schema, payload, 1, "t@1", command_id])


@settings(max_examples=60, deadline=None)
@given(
    head=st.integers(min_value=2, max_value=4),
    split_at=st.none() | st.integers(min_value=1, max_value=3),
    events=st.lists(
        st.tuples(st.integers(1, 4), st.integers(-50, 50), st.booleans()),
        max_size=30,
    ),
)
def test_a_run_decodes_as_its_events_one_by_one(
    head: int, split_at: int | None, events: list[tuple[int, int, bool]]
) -> None:
    """Law: decode_run gives decode_old's answers in order, or None (general path)."""
    _, codec = _world(head, split_at)
    stored = min(events[0][0], head) if events else 1
    datas = [
        _envelope(stored, n, f"c{i}" if cid else None)
        for i, (_, n, cid) in enumerate(events)
    ]
    got = codec.decode_run("Tick", stored, datas)
    one_by_one = [codec.decode_old("s", i + 2, "Tick", d) for i, d in enumerate(datas)]
    if got is None:
        assert stored == head or (split_at is not None and split_at >= stored)
        return
    assert [([p], c, x) for p, c, x in got] == one_by_one


class Sum(msgspec.Struct, frozen=True):
    total: int = 0
    seen: int = 0


def _fold_world(head: int, fail_at: int | None) -> tuple[Replay, EventCodec]:
    _, codec = _world(head, None)

    def evolve(s: Sum, e: Any) -> Sum:
        if s.seen + 2 == fail_at:
            raise ValueError("bad evolve")
        return Sum(s.total + e.n, s.seen + 1)

    reg = WorkflowRegistry()
    reg.register(
        Workflow(
            name="sum",
            version=1,
            state_type=Sum,
            initial=Sum,
            decide=lambda s, c, ctx: [],
            evolve=evolve,
            status=lambda s: "running",
        )
    )
    return Replay(codec, reg.get), codec


@settings(max_examples=40, deadline=None)
@given(
    head=st.integers(min_value=2, max_value=4),
    events=st.lists(
        st.tuples(st.integers(1, 4), st.integers(-50, 50), st.booleans()),
        max_size=40,
    ),
    long_run=st.integers(min_value=0, max_value=1_100),
)
def test_folding_runs_equals_folding_each_event(
    head: int, events: list[tuple[int, int, bool]], long_run: int
) -> None:
    """Law: mixed old and current events fold to the state and command ids of a
    fold one event at a time, whatever the runs (longer than one batch too)."""
    replay, codec = _fold_world(head, None)
    events = [*events, *[(1, 1, False)] * long_run]
    start = Started("sum", 1, "Sum", msgspec.msgpack.encode(Sum()))
    rows = [("s", 1, 1, *codec.encode(start, Metadata("sum@1"), recorded_at=1))]
    want = Sum()
    commands: dict[str, int] = {}
    for i, (schema, n, cid) in enumerate(events):
        schema = min(schema, head)
        command_id = f"c{i}" if cid else None
        rows.append(("s", i + 2, i + 2, "Tick", _envelope(schema, n, command_id)))
        want = Sum(want.total + n, want.seen + 1)
        if command_id is not None:
            commands[command_id] = i + 2
    inst = replay.replay("s", rows)
    assert inst.state == want
    assert inst.position == len(events) + 1
    assert inst.commands == commands


def test_an_evolve_failure_inside_a_run_names_its_position() -> None:
    replay, codec = _fold_world(3, fail_at=7)
    start = Started("sum", 1, "Sum", msgspec.msgpack.encode(Sum()))
    rows = [("s", 1, 1, *codec.encode(start, Metadata("sum@1"), recorded_at=1))]
    rows += [("s", p, p, "Tick", _envelope(1, p, None)) for p in range(2, 12)]
    with pytest.raises(WorkflowCodeError, match="replaying position 7"):
        replay.replay("s", rows)
