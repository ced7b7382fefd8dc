"""The batched load folds every event as the one-by-one load does.

``Engine.loader.load_many_sync`` reads many streams in chunks
(``EventStore.iter_streams``)
and folds each stream straight from its rows. These tests write streams whose
expected result is computed independently: order-sensitive states, command ids,
recorded flags, and events one schema version behind (upcast on read).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, EventDecodeError, open_store
from engine.core.codec import EventCodec
from engine.core.events import EventTypeRegistry, Metadata, Started
from engine.core.workflow import Context, Status, Workflow, WorkflowRegistry
from engine.store import EventStore, NewRecord
from upcasters import UpcasterRegistry

TYPE = "tests.batched.Bumped"


class Bumped(msgspec.Struct, frozen=True):
    """Schema 2 of the event (schema 1 stored ``{"n": ...}``)."""

    by: int


class Tally(msgspec.Struct, frozen=True):
    seen: tuple[int, ...] = ()


def _decide(state: Tally, cmd: Any, ctx: Context) -> list[Any]:
    return []


def _evolve(state: Tally, e: Bumped) -> Tally:
    return Tally((*state.seen, e.by))  # order-sensitive: a reordered fold shows


def _status(state: Tally) -> Status:
    return "running"


WORKFLOW: Workflow[Tally] = Workflow(
    name="tests-batched-tally",
    version=1,
    state_type=Tally,
    initial=Tally,
    decide=_decide,
    evolve=_evolve,
    status=_status,
)


def _engine(store: EventStore) -> Engine:
    types = EventTypeRegistry()
    types.register(Bumped, TYPE, schema=2)
    ups = UpcasterRegistry()
    ups.add(TYPE, 1, lambda p: {"by": p["n"] * 10})
    reg = WorkflowRegistry()
    reg.register(WORKFLOW)
    return Engine(store, reg, codec=EventCodec(types), upcasters=ups)


class Spec(msgspec.Struct, frozen=True):
    """One event to write: its value, whether stored at schema 1, its extras."""

    by: int
    old: bool
    command: bool
    flag: bool | None


class Expected(msgspec.Struct, frozen=True):
    seen: tuple[int, ...]
    position: int
    commands: dict[str, int]
    flags: dict[str, Any] | None


def _write(store: EventStore, streams: dict[str, list[Spec]]) -> dict[str, Expected]:
    """Store each stream (Started, then its events); return what a fold must give."""
    codec = EventCodec(EventTypeRegistry())
    meta = Metadata(WORKFLOW.ref)
    records: list[NewRecord] = []
    expected: dict[str, Expected] = {}
    for sid, specs in streams.items():
        start = Started(WORKFLOW.name, WORKFLOW.version, "int", b"\x00")
        name, data = codec.encode(start, meta, recorded_at=0)
        records.append(NewRecord(sid, 1, name, data))
        seen: list[int] = []
        commands: dict[str, int] = {}
        flags: dict[str, Any] | None = None
        for pos, spec in enumerate(specs, start=2):
            command = f"{sid}-c{pos % 3}" if spec.command else None
            ctx = None
            if spec.flag is not None:
                flag = f"f{pos % 2}"
                ctx = [["flag", [flag, spec.flag]]]
                if flags is None or flag not in flags:
                    flags = {**(flags or {}), flag: spec.flag}
            payload: Any = {"n": spec.by} if spec.old else {"by": spec.by}
            envelope = [1 if spec.old else 2, payload, 0, WORKFLOW.ref, command]
            envelope += [None, None, ctx]
            records.append(NewRecord(sid, pos, TYPE, msgspec.msgpack.encode(envelope)))
            seen.append(spec.by * 10 if spec.old else spec.by)
            if command is not None:
                commands[command] = pos
        expected[sid] = Expected(tuple(seen), len(specs) + 1, commands, flags)
    if records:
        store.append(records)
    return expected


def _check(engine: Engine, ids: list[str], expected: dict[str, Expected]) -> None:
    loaded = engine.loader.load_many_sync(ids)
    assert set(loaded) == {sid for sid in ids if sid in expected}
    for sid, inst in loaded.items():
        want = expected[sid]
        got = Expected(inst.state.seen, inst.position, inst.commands, inst.flags)
        assert got == want, sid
        one = engine.loader.load_sync(sid)
        assert (one.state, one.position, one.commands, one.flags) == (
            inst.state,
            inst.position,
            inst.commands,
            inst.flags,
        )


_specs = st.lists(
    st.builds(
        Spec,
        by=st.integers(-1_000, 1_000),
        old=st.booleans(),
        command=st.booleans(),
        flag=st.none() | st.booleans(),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    streams=st.lists(_specs, min_size=1, max_size=8),
    order=st.randoms(use_true_random=False),
)
def test_batched_fold_gives_what_the_events_say(
    streams: list[list[Spec]], order: Any
) -> None:
    store = open_store("memory://")
    expected = _write(store, {f"s{n}": specs for n, specs in enumerate(streams)})
    ids = [*expected, *expected, "missing"]  # repeats and an unknown id
    order.shuffle(ids)
    _check(_engine(store), ids, expected)


def test_batched_fold_across_query_chunks(store_url: str) -> None:
    """1,203 streams: several queries per batch on every adapter."""
    store = open_store(store_url)
    try:
        streams = {
            f"i{n:05d}": [
                Spec(n + k, old=k % 3 == 0, command=k == 1, flag=(k == 2) or None)
                for k in range(n % 5)
            ]
            for n in range(1_203)
        }
        expected = _write(store, streams)
        ids = list(reversed(expected))
        _check(_engine(store), [*ids, "missing"], expected)
    finally:
        store.close()


def test_iter_streams_yields_whole_streams_in_order(store_url: str) -> None:
    store = open_store(store_url)
    try:
        lengths = {f"k{n:04d}": n % 4 for n in range(1_100)}
        _write(
            store,
            {sid: [Spec(1, False, False, None)] * n for sid, n in lengths.items()},
        )
        ids = [*reversed(lengths), "missing", "k0001"]
        seen: list[str] = []
        for chunk in store.iter_streams(ids):
            assert chunk
            last = ("", 0)
            for sid, position, _, name, data in chunk:
                if sid != last[0]:
                    assert sid not in seen  # whole, and read once
                    seen.append(sid)
                    assert (position, name) == (1, "nonstop.Started")
                else:
                    assert position == last[1] + 1
                assert (
                    data[0] & 0xF0 == 0x90
                )  # the envelope (an array), not a placeholder
                last = (sid, position)
        assert sorted(seen) == sorted(lengths)  # every stream has its Started
        assert list(store.iter_streams([])) == []
    finally:
        store.close()


@pytest.mark.parametrize("bad", [b"\x98\x02\xc1", b"\x90", b"\xc1"])
def test_batched_fold_names_stream_and_position(sqlite_url: str, bad: bytes) -> None:
    store = open_store(sqlite_url)
    try:
        _write(store, {"good": [Spec(1, False, False, None)] * 2})
        _write(store, {"bad": [Spec(1, False, False, None)] * 3})
        engine = _engine(store)
        store.append([NewRecord("bad", 5, TYPE, bad)])
        with pytest.raises(EventDecodeError) as info:
            engine.loader.load_many_sync(["good", "bad"])
        assert (info.value.stream_id, info.value.position) == ("bad", 5)
        assert "'bad'" in str(info.value)
        assert "position 5" in str(info.value)
        assert engine.loader.load_many_sync(["good"])["good"].state.seen == (1, 1)
    finally:
        store.close()
