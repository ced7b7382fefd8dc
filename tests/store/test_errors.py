"""Every port method speaks the error tree: no driver exception leaks."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from engine.core.errors import CommitInDoubt, StoreNotFound, StoreUnavailable
from engine.store import EventStore, NewRecord, Snapshot, Tracking, open_store
from engine.store.postgres import PostgresStore
from tests.proxy import Proxy

pytestmark = pytest.mark.timeout(120)

CALLS: dict[str, Callable[[EventStore], object]] = {
    "append": lambda s: s.append([NewRecord("x", 2, "t", b"")]),
    "append_tracking": lambda s: s.append([], tracking=Tracking("c", 9)),
    "read_stream": lambda s: s.read_stream("x"),
    "read_streams": lambda s: s.read_streams(["x", "y"]),
    "read_all": lambda s: s.read_all(),
    "last_global_position": lambda s: s.last_global_position(),
    "stream_position": lambda s: s.stream_position("x"),
    "tracking_position": lambda s: s.tracking_position("c"),
    "save_snapshot": lambda s: s.save_snapshot(Snapshot("x", 1, "k", b"")),
    "load_snapshot": lambda s: s.load_snapshot("x"),
    "dead_letters": lambda s: s.dead_letters(),
    "mark_dead_letter_replayed": lambda s: s.mark_dead_letter_replayed(1, "t"),
}


@pytest.fixture(scope="module")
def cut_store() -> Iterator[PostgresStore]:
    from tests.conftest import _fresh_pg

    urls = _fresh_pg()
    url = next(urls)
    parts = urlsplit(url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    store = PostgresStore(proxy.url(url), pool_size=1, pool_timeout=1)
    store.append([NewRecord("x", 1, "t", b"")])
    proxy.cut()
    yield store
    store.close()
    proxy.close()
    next(urls, None)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CALLS))
def test_postgres_cut_raises_store_unavailable(
    cut_store: PostgresStore, name: str
) -> None:
    began = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        CALLS[name](cut_store)
    assert not isinstance(info.value, CommitInDoubt)  # nothing was sent
    # Bounded: a pool timeout of 1 s plus the retry budget, with a wide margin.
    assert time.monotonic() - began < 15


@pytest.mark.parametrize("name", sorted(CALLS))
def test_sqlite_driver_errors_are_translated(tmp_path: Path, name: str) -> None:
    path = tmp_path / "events.db"
    store = open_store(f"sqlite:///{path}")
    store.append([NewRecord("x", 1, "t", b"")])
    with sqlite3.connect(path) as conn:  # the database breaks under the store
        for table in ("nonstop_events", "nonstop_snapshots", "nonstop_dead_letters"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP TABLE IF EXISTS notification_tracking")
        for (t,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        ).fetchall():
            if "track" in t:
                conn.execute(f"DROP TABLE {t}")
    try:
        with pytest.raises(StoreUnavailable):
            CALLS[name](store)
    finally:
        store.close()


@pytest.mark.parametrize(
    "error",
    [
        CommitInDoubt("postgresql://u:***@h/db", "server closed the connection"),
        StoreNotFound("sqlite:///typo.db", "no file 'typo.db'"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_store_errors_survive_pickling(error: StoreUnavailable) -> None:
    import pickle

    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert (back.url, back.reason) == (error.url, error.reason)
    assert isinstance(back, StoreUnavailable)
    assert str(error).count(error.reason) == 1
