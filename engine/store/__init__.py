"""The event store port and its adapters, chosen by URL."""

from __future__ import annotations

from engine.errors import StoreUnavailable
from engine.extras import require
from engine.store.base import (
    EventStore,
    NewRecord,
    Record,
    RecorderStore,
    RecordRow,
    Snapshot,
    Tracking,
    redact,
)
from engine.store.deadletters import DeadLetter, StoredDeadLetter

__all__ = [
    "DEFAULT_URL",
    "DeadLetter",
    "EventStore",
    "NewRecord",
    "Record",
    "RecordRow",
    "RecorderStore",
    "Snapshot",
    "StoredDeadLetter",
    "Tracking",
    "open_store",
    "redact",
]

DEFAULT_URL = "sqlite:///nonstop.db"


def open_store(url: str = DEFAULT_URL) -> EventStore:
    """Open the event store at ``url``.

    ``memory://``, ``sqlite:///path.db`` or ``postgresql://user@host:port/db``
    (with an optional ``?schema=NAME``).

    Raises:
        StoreUnavailable: unknown scheme, or the store cannot be opened.
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        from engine.store.memory import MemoryStore

        return MemoryStore(url)
    if scheme == "sqlite":
        from engine.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        require("psycopg", "postgres", f"the event store {redact(url)}")
        from engine.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreUnavailable(
        redact(url),
        f"unknown scheme {scheme!r}; use memory://, sqlite:///path.db or "
        "postgresql://user@host:port/db",
    )
