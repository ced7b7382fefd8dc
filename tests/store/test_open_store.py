"""Opening stores: URL schemes and failures that must not leak secrets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engine.core.errors import NonstopError, StoreUnavailable
from engine.store import open_store, redact
from engine.store.memory import MemoryStore
from engine.store.sqlite import SQLiteStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unknown_scheme() -> None:
    with pytest.raises(StoreUnavailable) as info:
        open_store("mysql://root:hunter2@db/app")
    msg = str(info.value)
    assert "'mysql'" in msg
    assert "hunter2" not in msg
    assert isinstance(info.value, NonstopError)


def test_memory_and_sqlite_schemes(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    with open_store(f"sqlite:///{tmp_path / 'x.db'}") as s:
        assert isinstance(s, SQLiteStore)
    assert (tmp_path / "x.db").exists()


def test_sqlite_in_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "deeper"
    with pytest.raises(StoreUnavailable) as info:
        open_store(f"sqlite:///{missing / 'events.db'}")
    assert str(missing) in str(info.value)
    assert not missing.exists()


def test_sqlite_without_path() -> None:
    with pytest.raises(StoreUnavailable):
        open_store("sqlite://")


def test_unreachable_postgres_hides_password() -> None:
    url = f"postgresql://alice:s3cr3t-pw@127.0.0.1:{_free_port()}/db"
    with pytest.raises(StoreUnavailable) as info:
        open_store(url)
    assert "s3cr3t-pw" not in str(info.value)
    assert "s3cr3t-pw" not in info.value.url
    assert "alice:***@" in str(info.value)


@pytest.mark.postgres
def test_postgres_wrong_password_hides_it(pg_url: str) -> None:
    # trust auth accepts any password, so use a user that does not exist.
    url = pg_url.replace("postgres@", "no_such_user_x:t0p-secret@", 1)
    with pytest.raises(StoreUnavailable) as info:
        open_store(url)
    assert "t0p-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p:q@h:5/db?x=1", "postgresql://u:***@h:5/db?x=1"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///a/b.db", "sqlite:///a/b.db"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.postgres
def test_stores_opened_at_once_on_a_fresh_schema_all_work(pg_url: str) -> None:
    # Each opener creates the tables and the recorder's functions; unguarded, two
    # of them racing on a fresh schema fail inside CREATE OR REPLACE FUNCTION.
    from concurrent.futures import ThreadPoolExecutor

    from engine.store import NewRecord

    with ThreadPoolExecutor(6) as pool:
        stores = list(pool.map(lambda _: open_store(pg_url), range(6)))
    try:
        for i, store in enumerate(stores):
            store.append([NewRecord(f"s{i}", 1, "t", b"x")])
        assert stores[0].last_global_position() == len(stores)
    finally:
        for store in stores:
            store.close()
