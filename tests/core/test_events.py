"""Event registration and the envelope codec (private registries: no global state)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from engine.core.codec import EventCodec
from engine.core.errors import (
    DuplicateRegistration,
    EventDecodeError,
    UnknownEventType,
    WorkflowDefinitionError,
)
from engine.core.events import (
    SYSTEM_TYPES,
    Envelope,
    EventTypeRegistry,
    Metadata,
    Started,
    default_event_types,
    event,
    now_micros,
)


class Placed(msgspec.Struct, frozen=True):
    order_id: str
    amount: int


class Shipped(msgspec.Struct, frozen=True):
    carrier: str


class Noted(msgspec.Struct, frozen=True):
    text: str


@pytest.fixture
def types() -> EventTypeRegistry:
    reg = EventTypeRegistry()
    reg.register(Placed, "test.Placed")
    reg.register(Shipped, "test.Shipped")
    return reg


@pytest.fixture
def codec(types: EventTypeRegistry) -> EventCodec:
    return EventCodec(types)


META = Metadata("orders@3", "cmd-1", "corr-1", "cause-1")


def _encode_old(type_name: str, schema: int, payload: dict[str, Any]) -> bytes:
    """Bytes as an older release wrote them (an untyped payload)."""
    env = Envelope(schema, payload, 1_000_000, "orders@1", "old-cmd")
    return msgspec.msgpack.encode(env)


# ------------------------------------------------------------- registration


def test_registration_uses_the_stable_name(types: EventTypeRegistry) -> None:
    et = types.of(Placed("o", 1))
    assert (et.name, et.schema, et.cls) == ("test.Placed", 1, Placed)
    assert types.by_name("test.Placed") is et
    assert "test.Placed" in types
    user = ["test.Placed", "test.Shipped"]
    assert [n for n in types.names() if n not in SYSTEM_TYPES] == user
    assert [e.name for e in types if e.name not in SYSTEM_TYPES] == user


def test_every_registry_reads_the_system_events() -> None:
    reg = EventTypeRegistry()
    assert set(reg.names()) == SYSTEM_TYPES
    assert reg.by_name("nonstop.Started").cls is Started


def test_registering_the_same_class_again_is_a_no_op(
    types: EventTypeRegistry,
) -> None:
    assert types.register(Placed, "test.Placed") is Placed
    assert [n for n in types.names() if n not in SYSTEM_TYPES] == [
        "test.Placed",
        "test.Shipped",
    ]


def test_name_taken_by_another_class(types: EventTypeRegistry) -> None:
    with pytest.raises(DuplicateRegistration) as info:
        types.register(Noted, "test.Placed")
    assert "'test.Placed'" in str(info.value)
    assert "Noted" in str(info.value)
    assert types.by_name("test.Placed").cls is Placed


def test_non_struct_is_refused() -> None:
    reg = EventTypeRegistry()

    class NotAStruct:
        pass

    with pytest.raises(WorkflowDefinitionError, match=r"msgspec\.Struct"):
        reg.register(NotAStruct, "x.Bad")  # type: ignore[type-var]
    with pytest.raises(WorkflowDefinitionError):
        reg.register(dict, "x.Dict")  # type: ignore[type-var]
    assert set(reg.names()) == SYSTEM_TYPES


@pytest.mark.parametrize("schema", [0, -1])
def test_schema_below_one_is_refused(schema: int) -> None:
    with pytest.raises(WorkflowDefinitionError, match=str(schema)):
        EventTypeRegistry().register(Noted, "x.Noted", schema)


@pytest.mark.parametrize("name", ["", " padded", "padded "])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(WorkflowDefinitionError):
        EventTypeRegistry().register(Noted, name)


def test_unknown_type_lookups(types: EventTypeRegistry) -> None:
    with pytest.raises(UnknownEventType, match="'nope'"):
        types.by_name("nope")
    with pytest.raises(UnknownEventType, match="Noted"):
        types.of(Noted("x"))


def test_event_decorator_registers_in_the_given_registry() -> None:
    reg = EventTypeRegistry()

    @event("deco.Thing", schema=3, registry=reg)
    class Thing(msgspec.Struct):
        n: int

    assert reg.by_name("deco.Thing").schema == 3
    assert "deco.Thing" not in default_event_types()


def test_default_registry_knows_started_and_decorated_types() -> None:
    @event("tests.core.DefaultThing")
    class DefaultThing(msgspec.Struct):
        n: int

    reg = default_event_types()
    assert reg.by_name("nonstop.Started").cls is Started
    assert reg.of(DefaultThing(1)).name == "tests.core.DefaultThing"


# -------------------------------------------------------------------- codec


def test_round_trip_keeps_every_metadata_field(codec: EventCodec) -> None:
    at = now_micros()
    ctx = [["random", 0.25], ["uuid", "ab" * 16]]
    name, data = codec.encode(Placed("o-1", 42), META, recorded_at=at, ctx=ctx)
    assert name == "test.Placed"
    [r] = codec.decode("s-1", 7, 99, name, data)
    assert r.event == Placed("o-1", 42)
    assert (r.stream_id, r.position, r.global_position) == ("s-1", 7, 99)
    assert (r.type, r.schema, r.stored_schema) == ("test.Placed", 1, 1)
    assert r.recorded_at == at
    assert abs(r.recorded_datetime.timestamp() * 1e6 - at) < 2
    assert r.workflow == "orders@3"
    assert (r.command_id, r.correlation_id, r.causation_id) == (
        "cmd-1",
        "corr-1",
        "cause-1",
    )
    assert r.ctx == ctx
    payloads, command_id = codec.decode_payloads("s-1", 7, name, data)
    assert payloads == [Placed("o-1", 42)]
    assert command_id == "cmd-1"


def test_round_trip_without_optional_metadata(codec: EventCodec) -> None:
    name, data = codec.encode(Shipped("dhl"), Metadata("w@1"), recorded_at=5)
    [r] = codec.decode("s", 1, 1, name, data)
    assert r.event == Shipped("dhl")
    assert (r.command_id, r.correlation_id, r.causation_id, r.ctx) == (
        None,
        None,
        None,
        None,
    )


def test_encoding_an_unregistered_event(codec: EventCodec) -> None:
    with pytest.raises(UnknownEventType):
        codec.encode(Noted("x"), META, recorded_at=1)


@pytest.mark.parametrize("data", [b"\xff\x00garbage", b"", b"\x05"])
def test_garbage_bytes_name_stream_and_position(codec: EventCodec, data: bytes) -> None:
    with pytest.raises(EventDecodeError) as info:
        codec.decode("order-9", 13, 1, "test.Placed", data)
    err = info.value
    assert (err.stream_id, err.position, err.type_name) == (
        "order-9",
        13,
        "test.Placed",
    )
    assert "'order-9'" in str(err) and "13" in str(err)
    with pytest.raises(EventDecodeError):
        codec.decode_payloads("order-9", 13, "test.Placed", data)


def test_payload_that_no_longer_fits_the_struct(codec: EventCodec) -> None:
    data = _encode_old("test.Placed", 1, {"order_id": "o", "amount": "not-an-int"})
    with pytest.raises(EventDecodeError, match="does not fit"):
        codec.decode("s", 1, 1, "test.Placed", data)


def test_unregistered_stored_type(codec: EventCodec) -> None:
    data = _encode_old("gone.Type", 1, {"x": 1})
    with pytest.raises(EventDecodeError, match="not registered"):
        codec.decode_payloads("s", 2, "gone.Type", data)


def test_old_schema_without_upcaster_is_an_error() -> None:
    reg = EventTypeRegistry()
    reg.register(Placed, "test.Placed", schema=2)
    data = _encode_old("test.Placed", 1, {"order_id": "o", "amount": 1})
    with pytest.raises(EventDecodeError) as info:
        EventCodec(reg).decode("s-1", 3, 1, "test.Placed", data)
    assert "stored schema 1" in str(info.value)
    assert "no upcaster" in str(info.value)
    assert info.value.position == 3


# ------------------------------------------------------------------- upcast


class PlacedV2(msgspec.Struct, frozen=True):
    order_id: str
    amount_cents: int


@pytest.fixture
def upcasting() -> EventCodec:
    reg = EventTypeRegistry()
    reg.register(PlacedV2, "up.Placed", schema=2)
    reg.register(Noted, "up.Noted", schema=1)
    codec = EventCodec(reg)
    calls: list[tuple[str, int]] = []

    def upcast(
        name: str, schema: int, payload: dict[str, Any]
    ) -> list[tuple[str, dict[str, Any]]]:
        calls.append((name, schema))
        if name == "up.Placed" and schema == 1:
            cents = {"order_id": payload["order_id"], "amount_cents": payload["amount"]}
            out = [("up.Placed", cents)]
            if payload.get("note"):
                out.append(("up.Noted", {"text": payload["note"]}))
            return out
        if name == "up.Legacy":
            return []
        raise ValueError(f"no upcaster for {name}@{schema}")

    codec.set_upcaster(upcast)
    codec.calls = calls  # type: ignore[attr-defined]
    return codec


def test_upcaster_turns_old_schema_into_current(upcasting: EventCodec) -> None:
    data = _encode_old("up.Placed", 1, {"order_id": "o", "amount": 7})
    [r] = upcasting.decode("s", 1, 5, "up.Placed", data)
    assert r.event == PlacedV2("o", 7)
    assert (r.schema, r.stored_schema) == (2, 1)
    assert r.command_id == "old-cmd" and r.workflow == "orders@1"
    assert upcasting.calls == [("up.Placed", 1)]  # type: ignore[attr-defined]


def test_current_schema_does_not_call_the_upcaster(upcasting: EventCodec) -> None:
    name, data = upcasting.encode(PlacedV2("o", 1), META, recorded_at=1)
    assert upcasting.decode_payloads("s", 1, name, data)[0] == [PlacedV2("o", 1)]
    assert upcasting.calls == []  # type: ignore[attr-defined]


def test_upcaster_can_split_an_event(upcasting: EventCodec) -> None:
    data = _encode_old("up.Placed", 1, {"order_id": "o", "amount": 7, "note": "hi"})
    rs = upcasting.decode("s", 4, 9, "up.Placed", data)
    assert [r.event for r in rs] == [PlacedV2("o", 7), Noted("hi")]
    assert [r.type for r in rs] == ["up.Placed", "up.Noted"]
    assert {(r.position, r.global_position) for r in rs} == {(4, 9)}
    payloads, cid = upcasting.decode_payloads("s", 4, "up.Placed", data)
    assert payloads == [PlacedV2("o", 7), Noted("hi")]
    assert cid == "old-cmd"


def test_upcaster_can_drop_an_event(upcasting: EventCodec) -> None:
    data = _encode_old("up.Legacy", 1, {"whatever": True})
    assert upcasting.decode("s", 1, 1, "up.Legacy", data) == []
    assert upcasting.decode_payloads("s", 1, "up.Legacy", data) == ([], "old-cmd")


def test_failing_upcaster_is_a_decode_error(upcasting: EventCodec) -> None:
    data = _encode_old("up.Other", 1, {})
    with pytest.raises(EventDecodeError, match="upcaster for schema 1 failed"):
        upcasting.decode("s", 2, 2, "up.Other", data)


def test_upcast_to_an_unregistered_type(upcasting: EventCodec) -> None:
    upcasting.set_upcaster(lambda n, s, p: [("up.Missing", p)])
    data = _encode_old("up.Placed", 1, {"order_id": "o", "amount": 1})
    with pytest.raises(EventDecodeError, match=r"'up\.Missing'"):
        upcasting.decode_payloads("s", 1, "up.Placed", data)
