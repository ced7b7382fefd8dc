"""Upcasters applied by the engine on replay and history, on real stores."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from engine import (
    Context,
    Engine,
    EventCodec,
    EventDecodeError,
    EventTypeRegistry,
    Workflow,
    WorkflowRegistry,
)
from engine.core.events import Metadata, Started
from engine.store import NewRecord, open_store
from upcasters import UpcastChainError, UpcasterRegistry


class NoteV1(msgspec.Struct, frozen=True):
    text: str


class NoteV2(msgspec.Struct, frozen=True):
    text: str
    author: str


class NoteV3(msgspec.Struct, frozen=True):
    body: str
    author: str


class Notes(msgspec.Struct, frozen=True):
    items: tuple[str, ...] = ()


def _workflow() -> WorkflowRegistry:
    def decide(state: Notes, cmd: Any, ctx: Context) -> list[Any]:
        return [NoteV3(body=str(cmd), author="live")]

    def evolve(state: Notes, e: Any) -> Notes:
        return Notes((*state.items, f"{e.author}:{e.body}"))

    reg = WorkflowRegistry()
    reg.register(
        Workflow(
            name="notes",
            version=1,
            state_type=Notes,
            initial=Notes,
            decide=decide,
            evolve=evolve,
            status=lambda s: "running",
        )
    )
    return reg


def _types(cls: type[Any], schema: int) -> EventCodec:
    types = EventTypeRegistry()
    types.register(Started, "nonstop.Started")
    types.register(cls, "Note", schema)
    return EventCodec(types)


def _chain() -> UpcasterRegistry:
    up = UpcasterRegistry()
    up.add("Note", 1, lambda p: {**p, "author": "unknown"})
    up.rename_field("Note", from_version=2, old="text", new="body")
    return up


def _write_mixed(url: str, stream: str) -> None:
    """A stream holding Note at schema 1, 2 and 3, written by three releases."""
    meta = Metadata("notes@1")
    started = _types(NoteV1, 1).encode(
        Started("notes", 1, "str", msgspec.msgpack.encode("x")), meta, recorded_at=1
    )
    rows = [started]
    rows.append(_types(NoteV1, 1).encode(NoteV1("a"), meta, recorded_at=2))
    rows.append(_types(NoteV2, 2).encode(NoteV2("b", "ann"), meta, recorded_at=3))
    rows.append(_types(NoteV3, 3).encode(NoteV3("c", "bob"), meta, recorded_at=4))
    with open_store(url) as store:
        store.append(
            [
                NewRecord(stream, i + 1, name, data)
                for i, (name, data) in enumerate(rows)
            ]
        )


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("pg", marks=pytest.mark.postgres)]
)
async def test_mixed_schema_stream_replays_and_continues(
    kind: str, sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    url = sqlite_url if kind == "sqlite" else request.getfixturevalue("pg_url")
    _write_mixed(url, "n1")
    async with Engine(
        url, _workflow(), codec=_types(NoteV3, 3), upcasters=_chain()
    ) as eng:
        info = await eng.get("n1")
        assert info.state.items == ("unknown:a", "ann:b", "bob:c")
        info = await eng.send("n1", "d")
        assert info.state.items[-1] == "live:d"
        history = await eng.history("n1")
        assert [(h.stored_schema, h.schema) for h in history[1:]] == [
            (1, 3),
            (2, 3),
            (3, 3),
            (3, 3),
        ]
        assert [h.event.body for h in history[1:]] == ["a", "b", "c", "d"]


def test_engine_refuses_a_chain_with_a_gap(sqlite_url: str) -> None:
    up = UpcasterRegistry()
    up.add("Note", 1, lambda p: {**p, "author": "unknown"})
    with pytest.raises(UpcastChainError, match=r"'Note' is at schema 3.*2->3"):
        Engine(sqlite_url, _workflow(), codec=_types(NoteV3, 3), upcasters=up)


async def test_failing_upcaster_names_event_and_leaves_other_streams(
    sqlite_url: str,
) -> None:
    _write_mixed(sqlite_url, "bad")

    def boom(p: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("author")

    up = UpcasterRegistry()
    up.add("Note", 1, boom)
    up.rename_field("Note", from_version=2, old="text", new="body")
    async with Engine(
        sqlite_url, _workflow(), codec=_types(NoteV3, 3), upcasters=up
    ) as eng:
        with pytest.raises(EventDecodeError) as err:
            await eng.get("bad")
        assert err.value.stream_id == "bad"
        assert err.value.position == 2
        assert "Note" in str(err.value) and "schema 1" in str(err.value)
        started = await eng.start("notes", "fresh", instance_id="good")
        assert started.state.items == ("live:fresh",)
    with open_store(sqlite_url) as store:
        assert store.stream_position("bad") == 4  # nothing written to it


async def test_upcast_result_that_does_not_fit_is_a_decode_error(
    sqlite_url: str,
) -> None:
    _write_mixed(sqlite_url, "n")
    up = UpcasterRegistry()
    up.add("Note", 1, lambda p: {"nothing": 1})
    up.rename_field("Note", from_version=2, old="text", new="body")
    async with Engine(
        sqlite_url, _workflow(), codec=_types(NoteV3, 3), upcasters=up
    ) as eng:
        with pytest.raises(EventDecodeError, match="does not fit"):
            await eng.get("n")
