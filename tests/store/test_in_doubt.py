"""A commit whose reply is lost: the append says so, and is never run twice."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from engine.core.errors import CommitInDoubt, ConcurrencyConflict, StoreUnavailable
from engine.store import NewRecord, Tracking, open_store
from engine.store.postgres import PostgresStore
from tests.proxy import Proxy

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    parts = urlsplit(pg_url)
    p = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    p.start()
    yield p
    p.close()


def _through(proxy: Proxy, pg_url: str) -> PostgresStore:
    return PostgresStore(proxy.url(pg_url), pool_size=1, pool_timeout=2)


def _batch(stream: str, n: int, first: int = 1) -> list[NewRecord]:
    return [NewRecord(stream, first + i, "t", b"x%d" % i) for i in range(n)]


def test_a_lost_reply_to_a_one_statement_append_is_in_doubt(
    pg_url: str, proxy: Proxy
) -> None:
    direct = open_store(pg_url)
    store = _through(proxy, pg_url)
    try:
        store.append(_batch("warm", 1))
        # The stream id travels in the statement's parameters: the reply to
        # the very message that runs the append is dropped.
        proxy.drop_reply_to(b"in-doubt-stream")
        with pytest.raises(CommitInDoubt) as info:
            store.append(_batch("in-doubt-stream", 3))
        assert proxy.dropped.is_set()
        assert isinstance(info.value, StoreUnavailable)
        # The server committed it once; the store did not run it again.
        stored = direct.read_stream("in-doubt-stream")
        assert [r.position for r in stored] == [1, 2, 3]
        assert direct.last_global_position() == 4
        # The caller's own retry of the same append cannot apply it twice.
        with pytest.raises(ConcurrencyConflict):
            store.append(_batch("in-doubt-stream", 3))
        assert len(direct.read_stream("in-doubt-stream")) == 3
    finally:
        store.close()
        direct.close()


def test_a_lost_commit_reply_with_tracking_is_in_doubt(
    pg_url: str, proxy: Proxy
) -> None:
    direct = open_store(pg_url)
    store = _through(proxy, pg_url)
    try:
        store.append(_batch("warm", 1))
        proxy.drop_reply_to(b"COMMIT")
        with pytest.raises(CommitInDoubt):
            store.append(_batch("s", 2), tracking=Tracking("consumer", 7))
        assert proxy.dropped.is_set()
        assert [r.position for r in direct.read_stream("s")] == [1, 2]
        assert direct.tracking_position("consumer") == 7
    finally:
        store.close()
        direct.close()


def test_a_failure_before_the_commit_is_retried_and_stored_once(
    pg_url: str, proxy: Proxy
) -> None:
    # The reply to the insert is lost before COMMIT was sent: the server rolls
    # the transaction back when the connection goes, so nothing was written and
    # the store may run the append again: it lands exactly once.
    direct = open_store(pg_url)
    store = _through(proxy, pg_url)
    try:
        store.append(_batch("warm", 1))
        proxy.drop_reply_to(b"INSERT INTO")
        ids = store.append(_batch("s", 2), tracking=Tracking("consumer", 7))
        assert proxy.dropped.is_set()
        assert len(ids) == 2
        assert [r.position for r in direct.read_stream("s")] == [1, 2]
        assert direct.last_global_position() == max(ids)
        assert direct.tracking_position("consumer") == 7
    finally:
        store.close()
        direct.close()


def test_an_append_on_a_dropped_connection_is_surely_not_committed(
    pg_url: str, proxy: Proxy
) -> None:
    direct = open_store(pg_url)
    store = _through(proxy, pg_url)
    try:
        store.append(_batch("warm", 1))
        proxy.cut()  # the idle pooled connection is gone, new ones refused
        with pytest.raises(StoreUnavailable) as info:
            store.append(_batch("s", 2))  # retried within its budget, then given up
        assert not isinstance(info.value, CommitInDoubt)
        assert direct.read_stream("s") == []
        proxy.start()
        # Nothing was written, so the same append goes through afterwards.
        assert len(store.append(_batch("s", 2))) == 2
    finally:
        store.close()
        direct.close()


def test_many_lost_replies_never_apply_twice(pg_url: str, proxy: Proxy) -> None:
    direct = open_store(pg_url)
    store = _through(proxy, pg_url)
    try:
        store.append(_batch("warm", 1))
        for i in range(25):
            stream = f"doubt-{i:03d}"
            tracking = Tracking("c", i + 1) if i % 2 else None
            # One statement: its reply; a transaction: the reply to its COMMIT.
            proxy.drop_reply_to(b"COMMIT" if tracking else stream.encode())
            with pytest.raises(CommitInDoubt):
                store.append(_batch(stream, 2), tracking=tracking)
            assert proxy.dropped.is_set()
            assert [r.position for r in direct.read_stream(stream)] == [1, 2]
        rows = direct.read_all(limit=1000)
        assert len(rows) == 1 + 25 * 2
        assert direct.tracking_position("c") == 24
    finally:
        store.close()
        direct.close()
