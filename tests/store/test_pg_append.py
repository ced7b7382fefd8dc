"""PostgreSQL appends of events alone: one statement, still atomic and notified."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from engine import ConcurrencyConflict, open_store
from engine.store import NewRecord
from engine.store.postgres import PostgresStore
from tests.conftest import PG_URL

pytestmark = pytest.mark.postgres

_batches = st.lists(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(1, 4)), min_size=1, max_size=4
    ),
    min_size=1,
    max_size=6,
)


def _records(prefix: str, batch: list[tuple[str, int]]) -> list[NewRecord]:
    return [NewRecord(f"{prefix}{s}", p, "T", f"{s}{p}".encode()) for s, p in batch]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=_batches)
def test_a_batch_is_written_whole_in_order_or_not_at_all(
    pg_url: str, batches: list[list[tuple[str, int]]]
) -> None:
    store = open_store(pg_url)
    try:
        prefix = f"{uuid.uuid4().hex}-"  # fresh streams per example
        model: dict[int, tuple[str, int]] = {}
        for batch in batches:
            taken = {(s, p) for s, p in model.values()}
            clash = len(set(batch)) < len(batch) or bool(taken & set(batch))
            before = store.last_global_position()
            if clash:
                with pytest.raises(ConcurrencyConflict):
                    store.append(_records(prefix, batch))
                assert store.last_global_position() == before
                continue
            ids = store.append(_records(prefix, batch))
            assert len(ids) == len(batch)
            assert ids == sorted(ids) and ids[0] > before
            model.update(zip(ids, batch, strict=True))
        rows = [
            r for r in store.read_all(after=0, limit=10_000) if r[0].startswith(prefix)
        ]
        assert [(r.global_position, r.stream_id, r.position) for r in rows] == [
            (g, f"{prefix}{s}", p) for g, (s, p) in sorted(model.items())
        ]
    finally:
        store.close()


def test_an_append_notifies_listeners(pg_url: str) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    channel = store._recorder.channel_name
    with psycopg.connect(PG_URL, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        store.append([NewRecord("n", 1, "T", b"x")])
        heard = list(listener.notifies(timeout=10, stop_after=1))
    store.close()
    assert [n.channel for n in heard] == [channel]


def test_reopening_a_store_keeps_appending(pg_url: str) -> None:
    first = open_store(pg_url)
    first.append([NewRecord("s", 1, "T", b"1")])
    second = open_store(pg_url)  # the append function is created again
    try:
        second.append([NewRecord("s", 2, "T", b"2")])
        with pytest.raises(ConcurrencyConflict):
            first.append([NewRecord("s", 2, "T", b"again")])
        assert [r.data for r in second.read_stream("s")] == [b"1", b"2"]
    finally:
        first.close()
        second.close()
