"""One contract every event store adapter must honour (memory, SQLite, PostgreSQL).

Every test takes the ``store`` fixture, which is parametrised over the adapters
through ``store_url``; an adapter passes when the whole module passes for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.core.errors import ConcurrencyConflict
from engine.store import EventStore, NewRecord, Snapshot, Tracking, open_store


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def rec(stream: str, position: int, type: str = "T", data: bytes = b"") -> NewRecord:
    return NewRecord(stream, position, type, data or f"{stream}:{position}".encode())


def fill(store: EventStore, stream: str, n: int, *, type: str = "T") -> list[int]:
    return store.append([rec(stream, p, type) for p in range(1, n + 1)])


# ----------------------------------------------------------------- append


def test_append_returns_increasing_global_positions(store: EventStore) -> None:
    first = store.append([rec("a", 1), rec("a", 2), rec("b", 1)])
    second = store.append([rec("a", 3)])
    assert len(first) == 3
    assert first == sorted(first)
    assert len(set(first)) == 3
    assert second[0] > first[-1]
    assert store.last_global_position() == second[0]


def test_append_nothing_writes_nothing(store: EventStore) -> None:
    assert store.append([]) == []
    assert store.last_global_position() == 0


def test_records_are_stored_as_given(store: EventStore) -> None:
    payload = bytes(range(256))
    store.append([NewRecord("s-1", 1, "Some.Type", payload)])
    [r] = store.read_stream("s-1")
    assert (r.stream_id, r.position, r.type, r.data) == ("s-1", 1, "Some.Type", payload)


def test_conflict_names_stream_and_position(store: EventStore) -> None:
    fill(store, "a", 2)
    with pytest.raises(ConcurrencyConflict) as info:
        store.append([rec("a", 2, data=b"late")])
    assert info.value.conflicts == [("a", 2)]
    assert "'a'" in str(info.value) and "position 2" in str(info.value)
    assert [r.data for r in store.read_stream("a")] == [b"a:1", b"a:2"]


def test_conflicting_batch_writes_nothing_of_other_streams(store: EventStore) -> None:
    fill(store, "taken", 1)
    before = store.last_global_position()
    batch = [rec("x", 1), rec("x", 2), rec("taken", 1, data=b"dup"), rec("y", 1)]
    with pytest.raises(ConcurrencyConflict) as info:
        store.append(batch)
    assert info.value.conflicts == [("taken", 1)]
    assert store.read_stream("x") == []
    assert store.read_stream("y") == []
    assert store.stream_position("x") == 0
    assert [r.data for r in store.read_stream("taken")] == [b"taken:1"]
    assert store.last_global_position() == before
    # The streams are still free: the same records go in once the clash is gone.
    store.append([r for r in batch if r.stream_id != "taken"])
    assert store.stream_position("x") == 2


def test_duplicate_position_inside_one_batch_conflicts(store: EventStore) -> None:
    with pytest.raises(ConcurrencyConflict):
        store.append([rec("a", 1), rec("a", 1, data=b"again")])
    assert store.read_stream("a") == []


# ------------------------------------------------------------ stream reads


def test_read_stream_after_and_limit(store: EventStore) -> None:
    fill(store, "a", 5)
    fill(store, "b", 2)
    assert [r.position for r in store.read_stream("a")] == [1, 2, 3, 4, 5]
    assert [r.position for r in store.read_stream("a", after=2)] == [3, 4, 5]
    assert [r.position for r in store.read_stream("a", limit=2)] == [1, 2]
    assert [r.position for r in store.read_stream("a", after=1, limit=3)] == [2, 3, 4]
    assert store.read_stream("a", after=5) == []
    assert store.read_stream("missing") == []
    assert {r.stream_id for r in store.read_stream("b")} == {"b"}


def test_iter_stream_walks_several_pages(store: EventStore) -> None:
    fill(store, "long", 11)
    fill(store, "other", 3)
    got = list(store.iter_stream("long", page=3))
    assert [r.position for r in got] == list(range(1, 12))
    assert [r.data for r in got] == [f"long:{p}".encode() for p in range(1, 12)]
    assert [r.position for r in store.iter_stream("long", after=8, page=2)] == [
        9,
        10,
        11,
    ]
    # An exact multiple of the page size ends cleanly too.
    assert len(list(store.iter_stream("long", after=2, page=3))) == 9


def test_stream_position(store: EventStore) -> None:
    assert store.stream_position("a") == 0
    fill(store, "a", 3)
    store.append([rec("a", 4)])
    assert store.stream_position("a") == 4
    assert store.stream_position("b") == 0


# -------------------------------------------------------------- global reads


def test_read_all_in_global_order(store: EventStore) -> None:
    g1 = store.append([rec("a", 1), rec("b", 1)])
    g2 = store.append([rec("a", 2)])
    g3 = store.append([rec("c", 1), rec("b", 2)])
    rows = store.read_all()
    assert [r.global_position for r in rows] == g1 + g2 + g3
    assert [(r.stream_id, r.position) for r in rows] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("c", 1),
        ("b", 2),
    ]
    assert rows[2].data == b"a:2"


def test_read_all_after_and_limit(store: EventStore) -> None:
    gs = fill(store, "a", 6)
    assert [r.global_position for r in store.read_all(after=gs[1])] == gs[2:]
    assert [r.global_position for r in store.read_all(limit=2)] == gs[:2]
    assert [r.global_position for r in store.read_all(after=gs[2], limit=2)] == gs[3:5]
    assert store.read_all(after=gs[-1]) == []


def test_read_all_filters_by_type(store: EventStore) -> None:
    store.append([rec("a", 1, "Start"), rec("a", 2, "Step"), rec("b", 1, "Start")])
    store.append([rec("b", 2, "Step"), rec("a", 3, "End"), rec("c", 1, "Start")])
    starts = store.read_all(types=["Start"])
    assert [(r.stream_id, r.type) for r in starts] == [
        ("a", "Start"),
        ("b", "Start"),
        ("c", "Start"),
    ]
    assert [r.type for r in store.read_all(types=["Start", "End"])] == [
        "Start",
        "Start",
        "End",
        "Start",
    ]
    # The limit counts matching records only.
    two = store.read_all(types=["Start"], limit=2)
    assert [r.stream_id for r in two] == ["a", "b"]
    rest = store.read_all(after=two[-1].global_position, types=["Start"])
    assert [r.stream_id for r in rest] == ["c"]
    assert store.read_all(types=["Nothing"]) == []


def test_last_global_position(store: EventStore) -> None:
    assert store.last_global_position() == 0
    gs = fill(store, "a", 3)
    assert store.last_global_position() == gs[-1]
    with pytest.raises(ConcurrencyConflict):
        store.append([rec("a", 1)])
    assert store.last_global_position() == gs[-1]


# ----------------------------------------------------------------- tracking


def test_tracking_is_written_with_events(store: EventStore) -> None:
    assert store.tracking_position("proj") is None
    store.append([rec("a", 1)], tracking=Tracking("proj", 10))
    assert store.tracking_position("proj") == 10
    store.append([rec("a", 2), rec("b", 1)], tracking=Tracking("proj", 11))
    assert store.tracking_position("proj") == 11
    assert store.tracking_position("other") is None
    assert store.stream_position("a") == 2


def test_tracking_alone_can_advance(store: EventStore) -> None:
    store.append([], tracking=Tracking("kafka:orders:0", 5))
    assert store.tracking_position("kafka:orders:0") == 5
    assert store.last_global_position() == 0


@pytest.mark.parametrize("stale", [7, 3])
def test_tracking_that_does_not_advance_writes_nothing(
    store: EventStore, stale: int
) -> None:
    store.append([rec("a", 1)], tracking=Tracking("proj", 7))
    before = store.last_global_position()
    with pytest.raises(ConcurrencyConflict) as info:
        store.append([rec("a", 2), rec("b", 1)], tracking=Tracking("proj", stale))
    assert ("tracking:proj", stale) in info.value.conflicts
    assert store.stream_position("a") == 1
    assert store.stream_position("b") == 0
    assert store.last_global_position() == before
    assert store.tracking_position("proj") == 7


def test_conflicting_events_do_not_move_tracking(store: EventStore) -> None:
    fill(store, "a", 1)
    with pytest.raises(ConcurrencyConflict):
        store.append([rec("a", 1)], tracking=Tracking("proj", 1))
    assert store.tracking_position("proj") is None


# ---------------------------------------------------------------- snapshots


def test_snapshots_load_the_newest(store: EventStore) -> None:
    assert store.load_snapshot("a") is None
    store.save_snapshot(Snapshot("a", 4, "wf@1#k", b"four"))
    store.save_snapshot(Snapshot("a", 8, "wf@1#k", b"eight"))
    store.save_snapshot(Snapshot("b", 2, "wf@1#k", b"b-two"))
    assert store.load_snapshot("a") == Snapshot("a", 8, "wf@1#k", b"eight")
    assert store.load_snapshot("b") == Snapshot("b", 2, "wf@1#k", b"b-two")


def test_saving_an_existing_snapshot_position_keeps_the_first(
    store: EventStore,
) -> None:
    store.save_snapshot(Snapshot("a", 4, "wf@1#k", b"first"))
    store.save_snapshot(Snapshot("a", 4, "wf@1#k", b"second"))
    snap = store.load_snapshot("a")
    assert snap is not None and snap.data == b"first"


def test_replacing_a_snapshot_overwrites_that_position_only(
    store: EventStore,
) -> None:
    store.save_snapshot(Snapshot("a", 4, "wf@1#k#1", b"old"))
    store.save_snapshot(Snapshot("a", 2, "wf@1#k#1", b"older"))
    store.save_snapshot(Snapshot("a", 4, "wf@1#k#2", b"new"), replace=True)
    assert store.load_snapshot("a") == Snapshot("a", 4, "wf@1#k#2", b"new")
    store.save_snapshot(Snapshot("b", 3, "wf@1#k#2", b"fresh"), replace=True)
    assert store.load_snapshot("b") == Snapshot("b", 3, "wf@1#k#2", b"fresh")


def test_snapshots_are_not_events(store: EventStore) -> None:
    store.save_snapshot(Snapshot("a", 4, "wf@1#k", b"four"))
    assert store.read_stream("a") == []
    assert store.read_all() == []
    assert store.last_global_position() == 0


# --------------------------------------------------------------- durability


def test_data_survives_reopening(durable_url: str) -> None:
    with open_store(durable_url) as s:
        gs = s.append([rec("a", 1), rec("a", 2), rec("b", 1, "Other")])
        s.append([], tracking=Tracking("proj", 3))
        s.save_snapshot(Snapshot("a", 2, "wf@1#k", b"state"))
    with open_store(durable_url) as s:
        assert [r.data for r in s.read_stream("a")] == [b"a:1", b"a:2"]
        assert [r.global_position for r in s.read_all()] == gs
        assert s.read_all(types=["Other"])[0].stream_id == "b"
        assert s.last_global_position() == gs[-1]
        assert s.stream_position("a") == 2
        assert s.tracking_position("proj") == 3
        assert s.load_snapshot("a") == Snapshot("a", 2, "wf@1#k", b"state")
        with pytest.raises(ConcurrencyConflict):
            s.append([rec("a", 2)])
        assert s.append([rec("a", 3)])[0] > gs[-1]


def test_url_is_kept_without_password(store: EventStore, store_url: str) -> None:
    assert store.url == store_url


def test_read_streams_reads_many_whole_streams(store: EventStore) -> None:
    fill(store, "a", 3)
    fill(store, "b", 1)
    fill(store, "c", 2)
    got = store.read_streams(["c", "a", "missing"])
    assert set(got) == {"c", "a", "missing"}
    assert [r.position for r in got["a"]] == [1, 2, 3]
    assert [r.data for r in got["c"]] == [b"c:1", b"c:2"]
    assert got["missing"] == []
    assert store.read_streams([]) == {}


def test_iter_streams_upto_reads_the_head_of_each_stream(store: EventStore) -> None:
    fill(store, "a", 5)
    fill(store, "b", 2)
    fill(store, "c", 3)
    heads = [
        r for chunk in store.iter_streams(["c", "a", "b", "x"], upto=3) for r in chunk
    ]
    got: dict[str, list[int]] = {}
    for sid, position, *_ in heads:
        got.setdefault(sid, []).append(position)
    assert got == {"a": [1, 2, 3], "b": [1, 2], "c": [1, 2, 3]}
    whole = [r for chunk in store.iter_streams(["a"]) for r in chunk]
    assert [r[1] for r in whole] == [1, 2, 3, 4, 5]
