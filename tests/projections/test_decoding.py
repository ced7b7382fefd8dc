"""The catch-up decode path: ``EventCodec.decode_many`` and the records it reads.

``decode_many`` is the tight loop the runner feeds whole batches through; the
law is that it yields exactly what :meth:`EventCodec.decode` gives record by
record (upcasting, splits, drops and errors included), stopping at the same
event with the same error.
"""

from __future__ import annotations

import gc
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.codec import EventCodec
from engine.core.errors import EventDecodeError
from engine.core.events import Envelope, EventTypeRegistry, Metadata, RecordedEvent
from engine.store import EventStore, NewRecord, Record
from projections import ALL, Projection, Runner, Tx, status
from tests.projections.conftest import Log


class Paid(msgspec.Struct, frozen=True):
    order: str
    cents: int


class Shipped(msgspec.Struct, frozen=True):
    carrier: str


class Far(msgspec.Struct, frozen=True):
    """At schema 200: its version does not fit the envelope's first byte."""

    n: int


def _codec() -> EventCodec:
    types = EventTypeRegistry()
    types.register(Paid, "t.Paid", schema=2)
    types.register(Shipped, "t.Shipped")
    types.register(Far, "t.Far", schema=200)
    codec = EventCodec(types)

    def upcast(name: str, schema: int, p: dict[str, Any]) -> list[tuple[str, Any]]:
        # Schema 1 of t.Paid had euros: 0 drops the event, a negative amount
        # splits it in two, anything else converts.
        if name != "t.Paid" or schema != 1:
            raise ValueError(f"no chain for {name} schema {schema}")
        euros = p["euros"]
        if euros == 0:
            return []
        if euros < 0:
            return [("t.Paid", {"order": p["order"], "cents": c}) for c in (1, 2)]
        return [("t.Paid", {"order": p["order"], "cents": euros * 100})]

    codec.set_upcaster(upcast)
    return codec


CODEC = _codec()
META = Metadata("shop@2", "cmd", "corr", "cause")


def _old(payload: Any, schema: int = 1) -> bytes:
    return msgspec.msgpack.encode(Envelope(schema, payload, 7, "shop@1", "c"))


def _current(obj: msgspec.Struct, ctx: list[Any] | None = None) -> tuple[str, bytes]:
    return CODEC.encode(obj, META, recorded_at=5, ctx=ctx)


_int64 = st.integers(-(2**63), 2**63 - 1)

# One stored event of every kind the decode path distinguishes.
_kinds = st.one_of(
    st.builds(lambda o, c: _current(Paid(o, c)), st.text(max_size=5), _int64),
    st.builds(lambda s: _current(Shipped(s), [["now", 1]]), st.text(max_size=5)),
    st.builds(lambda n: _current(Far(n)), st.integers(0, 9)),
    st.builds(
        lambda e: ("t.Paid", _old({"order": "o", "euros": e})), st.integers(-2, 3)
    ),
    # The current schema byte but a payload of the wrong shape: the fast path
    # refuses it and the general one names the event.
    st.just(("t.Paid", _old({"order": 1}, schema=2))),
    st.just(("t.Gone", _old({"x": 1}))),  # a type nobody registered
    st.binary(max_size=6).map(lambda b: ("t.Shipped", b)),  # not an envelope
)


def _records(kinds: list[tuple[str, bytes]]) -> list[Record]:
    return [
        Record(f"s-{i % 3}", i + 1, 100 + i, name, data)
        for i, (name, data) in enumerate(kinds)
    ]


def _one_by_one(records: list[Record]) -> tuple[list[RecordedEvent], str | None]:
    out: list[RecordedEvent] = []
    for r in records:
        try:
            out.extend(CODEC.decode(*r))
        except EventDecodeError as exc:
            return out, str(exc)
    return out, None


def _many(records: list[Record]) -> tuple[list[RecordedEvent], str | None]:
    out: list[RecordedEvent] = []
    try:
        for e in CODEC.decode_many(records):
            out.append(e)
    except EventDecodeError as exc:
        return out, str(exc)
    return out, None


@given(st.lists(_kinds, max_size=12))
def test_decode_many_yields_what_decode_gives_one_by_one(kinds) -> None:
    records = _records(kinds)
    assert _many(records) == _one_by_one(records)


def test_every_kind_takes_its_path() -> None:
    kinds = [
        _current(Paid("o", 5)),
        ("t.Paid", _old({"order": "p", "euros": 0})),  # dropped
        ("t.Paid", _old({"order": "q", "euros": -1})),  # split
        _current(Far(3)),
        ("t.Paid", _old({"order": "r", "euros": 2})),
    ]
    events, error = _many(_records(kinds))
    assert error is None
    assert [(e.global_position, e.event) for e in events] == [
        (100, Paid("o", 5)),
        (102, Paid("q", 1)),
        (102, Paid("q", 2)),
        (103, Far(3)),
        (104, Paid("r", 200)),
    ]
    first = events[0]
    assert (first.schema, first.stored_schema, first.workflow) == (2, 2, "shop@2")
    assert (first.command_id, first.correlation_id, first.causation_id) == (
        "cmd",
        "corr",
        "cause",
    )
    assert events[-1].stored_schema == 1 and events[-1].schema == 2


def test_a_bad_event_stops_the_iteration_there_and_is_named() -> None:
    kinds = [
        _current(Shipped("ups")),
        ("t.Paid", _old({"order": 1}, schema=2)),
        _current(Shipped("dhl")),
    ]
    events, error = _many(_records(kinds))
    assert [e.event for e in events] == [Shipped("ups")]
    assert error is not None and "'t.Paid' at position 2 of stream 's-1'" in error


def test_decoded_events_are_left_alone_by_the_garbage_collector() -> None:
    (e,) = CODEC.decode_many(_records([_current(Shipped("x"))]))
    assert not gc.is_tracked(e)
    env = msgspec.msgpack.decode(_old({"a": 1}), type=Envelope[Any])
    assert not gc.is_tracked(env)


def test_the_store_reads_records(store: EventStore, log: Log) -> None:
    log.add("a", 0, 1, 2)
    rows = store.read_all(after=1, limit=2)
    assert [type(r) for r in rows] == [Record, Record]
    assert [(r.stream_id, r.position, r.type) for r in rows] == [
        ("a", 2, "test.proj.Added"),
        ("a", 3, "test.proj.Added"),
    ]
    typed = store.read_all(types=["nonstop.Started"])
    assert [(type(r), r.position) for r in typed] == [(Record, 1)]


def _counter() -> Projection:
    p = Projection("counted", tables=["n"])

    @p.setup
    def create(tx: Tx) -> None:
        tx.execute(f"CREATE TABLE {tx.table('n')} (stream TEXT, gp BIGINT)")

    @p.on_batch(ALL)
    def count(tx: Tx, events) -> None:
        tx.executemany(
            f"INSERT INTO {tx.table('n')} (stream, gp) VALUES (?, ?)",
            [(e.stream_id, e.global_position) for e in events],
        )

    return p


@pytest.mark.parametrize(
    "data",
    [b"\xc1garbage", _old({"by": "not an int"}, schema=1)],
    ids=["not-an-envelope", "wrong-payload"],
)
def test_a_batch_stops_at_an_undecodable_event(store, db, log: Log, data) -> None:
    log.add("a", 0, 1)
    (bad,) = store.append([NewRecord("a", 3, "test.proj.Added", data)])
    log.add("z", 0, 2)
    with Runner(store, [_counter()], db=db) as r:
        r.catch_up()
    (s,) = [x for x in status(db, store) if x.name == "counted"]
    assert s.failure is not None and s.failure.global_position == bad
    assert s.failure.error.startswith("EventDecodeError: cannot decode event")
    assert s.position == bad - 1
    rows = db.query("SELECT gp FROM counted_v1_n ORDER BY gp")
    assert [int(g) for (g,) in rows] == [bad - 2, bad - 1]
