"""Bounded waits: a cut and a stall between the store and PostgreSQL.

Every call fails with ``StoreUnavailable`` within about 10 s of the outage, and
calls succeed within about 2 s of the database returning. The bounds are
checked as conditions with wide margins, not measured as benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from engine.core.errors import StoreUnavailable
from engine.store import NewRecord, open_store
from engine.store.postgres import PostgresStore
from tests.proxy import Proxy

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

FAIL_WITHIN = 20.0
"""Margin on the ~10 s promise."""
RECOVER_WITHIN = 10.0
"""Margin on the ~2 s promise."""


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    parts = urlsplit(pg_url)
    p = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    p.start()
    yield p
    p.close()


def _calls(store: PostgresStore) -> Iterator[Callable[[], object]]:
    n = 0
    while True:
        n += 1
        yield store.last_global_position
        yield lambda n=n: store.append([NewRecord(f"during-{n}", 1, "t", b"")])
        yield lambda: store.read_stream("before")


def _fail_for(store: PostgresStore, seconds: float) -> int:
    """Call the store until ``seconds`` have passed; every call must fail fast."""
    began = time.monotonic()
    slowest = 0.0
    for failures, call in enumerate(_calls(store)):
        if time.monotonic() - began >= seconds:
            print(f"{failures} calls failed, the slowest in {slowest:.1f} s")
            return failures
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            call()
        slowest = max(slowest, time.monotonic() - t0)
        assert slowest < FAIL_WITHIN
    raise AssertionError("unreachable")


def _recovers(store: PostgresStore) -> float:
    """Seconds until a read and an append succeed again."""
    began = time.monotonic()
    while time.monotonic() - began < RECOVER_WITHIN * 3:
        try:
            store.append([NewRecord("after", 1, "t", b"")])
            store.read_stream("after")
            print(f"recovered in {time.monotonic() - began:.2f} s")
            return time.monotonic() - began
        except StoreUnavailable:
            continue
    raise AssertionError("the store did not recover")


def test_a_60_s_cut(pg_url: str, proxy: Proxy) -> None:
    direct = open_store(pg_url)
    store = PostgresStore(proxy.url(pg_url))
    try:
        store.append([NewRecord("before", 1, "t", b"")])
        proxy.cut()
        assert _fail_for(store, 60) >= 6
        proxy.start()
        assert _recovers(store) < RECOVER_WITHIN
        assert len(direct.read_stream("after")) == 1
    finally:
        store.close()
        direct.close()


def test_a_30_s_stall(pg_url: str, proxy: Proxy) -> None:
    direct = open_store(pg_url)
    store = PostgresStore(proxy.url(pg_url))
    try:
        store.append([NewRecord("before", 1, "t", b"")])
        proxy.stall()
        assert _fail_for(store, 30) >= 3
        proxy.resume()
        assert _recovers(store) < RECOVER_WITHIN
        assert len(direct.read_stream("after")) == 1
        # Appends caught in the stall were in doubt; none landed twice.
        rows = direct.read_all(limit=10_000)
        assert len({(r.stream_id, r.position) for r in rows}) == len(rows)
    finally:
        store.close()
        direct.close()
