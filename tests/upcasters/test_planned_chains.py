"""The planned chain the codec runs on replay gives what the general upcast gives."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import EventCodec, EventDecodeError, EventTypeRegistry
from engine.core.events import Metadata
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
