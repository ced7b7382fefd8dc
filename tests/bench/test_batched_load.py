"""The batched read path the replay benchmark measures gives what one-by-one gives."""

from __future__ import annotations

import gc

import pytest

from bench.counter import encoded_stream, registry
from engine import CorruptStream, Engine, UnknownInstance, open_store
from engine.store import NewRecord


@pytest.mark.parametrize("count", [1, 3, 1_203])
def test_read_streams_matches_read_stream(store_url: str, count: int) -> None:
    store = open_store(store_url)
    try:
        ids = [f"s{i}" for i in range(count)]
        records = [
            r for n, sid in enumerate(ids) for r in encoded_stream(sid, n % 4 + 1)
        ]
        store.append(records)
        got = store.read_streams([*ids, "missing"])
        assert got["missing"] == []
        for sid in ids:
            assert got[sid] == store.read_stream(sid)
    finally:
        store.close()


def test_load_many_matches_load(store_url: str) -> None:
    store = open_store(store_url)
    try:
        ids = [f"c{i}" for i in range(40)]
        store.append(
            [r for n, sid in enumerate(ids) for r in encoded_stream(sid, n + 1)]
        )
        engine = Engine(store, registry())
        many = engine.loader.load_many_sync([*ids, "missing"])
        assert set(many) == set(ids)
        for n, sid in enumerate(ids):
            one = engine.loader.load_sync(sid)
            assert many[sid].state == one.state
            assert many[sid].state.value == n
            assert many[sid].position == one.position == n + 1
        with pytest.raises(UnknownInstance):
            engine.loader.load_sync("missing")
    finally:
        store.close()


def test_long_stream_loads_past_the_first_page(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        store.append(encoded_stream("long", 1_000))
        inst = Engine(store, registry()).loader.load_sync("long")
        assert inst.position == 1_000
        assert inst.state.value == 999
    finally:
        store.close()


@pytest.mark.parametrize("enabled", [True, False])
def test_load_many_leaves_the_collector_as_it_found_it(
    sqlite_url: str, enabled: bool
) -> None:
    store = open_store(sqlite_url)
    try:
        store.append(encoded_stream("a", 3))
        store.append([NewRecord("bad", 1, "bench.Incremented", b"\x90")])
        engine = Engine(store, registry())
        if not enabled:
            gc.disable()
        try:
            assert engine.loader.load_many_sync(["a"])["a"].position == 3
            assert gc.isenabled() is enabled
            with pytest.raises(CorruptStream):  # also when a load fails
                engine.loader.load_many_sync(["a", "bad"])
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
    finally:
        store.close()
