"""The event store port and its adapters, chosen by URL.

Layout: :mod:`~engine.store.port` (the ``EventStore`` ABC and record types),
:mod:`~engine.store.urls` (URL parsing and redaction),
:mod:`~engine.store.retry` (the one retry layer),
:mod:`~engine.store.deadletters` (dead letters), :mod:`~engine.store.recorders`
(the ``eventsourcing`` recorder subclasses), :mod:`~engine.store.pg_append`
(the PostgreSQL append), and the adapters :mod:`~engine.store.memory`,
:mod:`~engine.store.sqlite` and :mod:`~engine.store.postgres` (imported only
when a URL of theirs is opened).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.core.errors import StoreUnavailable
from engine.core.extras import require
from engine.store.deadletters import DeadLetter, StoredDeadLetter
from engine.store.port import (
    EventStore,
    NewRecord,
    Record,
    RecordRow,
    Snapshot,
    Tracking,
)
from engine.store.urls import redact, scheme_of

if TYPE_CHECKING:
    from engine.store.adapter import RecorderStore

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
    "require_store",
]

DEFAULT_URL = "sqlite:///nonstop.db"


def open_store(url: str = DEFAULT_URL, *, create: bool = True) -> EventStore:
    """Open the event store at ``url``.

    ``memory://``, ``sqlite:///path.db`` or ``postgresql://user@host:port/db``
    (with optional ``?schema=NAME`` and the options of
    :class:`~engine.store.postgres.PostgresStore`).

    Args:
        url: Where the store lives.
        create: Create the store (file, schema, tables) when missing. Read-only
            callers pass False: a missing store then raises ``StoreNotFound``
            and nothing is created.

    Raises:
        StoreNotFound: ``create`` is False and no nonstop store is at ``url``.
        StoreUnavailable: unknown scheme, or the store cannot be opened.
    """
    scheme = scheme_of(url)
    if scheme == "memory":
        from engine.store.memory import MemoryStore

        return MemoryStore(url)
    if scheme == "sqlite":
        from engine.store.sqlite import SQLiteStore

        return SQLiteStore(url, create=create)
    if scheme in ("postgresql", "postgres"):
        require("psycopg", "postgres", f"the event store {redact(url)}")
        from engine.store.postgres import PostgresStore

        return PostgresStore(url, create=create)
    raise StoreUnavailable(
        redact(url),
        f"unknown scheme {scheme or url.partition(':')[0]!r}; use memory://, "
        "sqlite:///path.db or postgresql://user@host:port/db",
    )


def require_store(url: str) -> bool:
    """Check that a nonstop store exists at ``url``, creating nothing.

    Returns:
        True (``memory://`` always counts as existing).

    Raises:
        StoreNotFound: no store (no file, no tables) at ``url``.
        StoreUnavailable: the store cannot be reached.
    """
    open_store(url, create=False).close()
    return True


def __getattr__(name: str) -> Any:
    # The adapter base imports eventsourcing: loaded only when asked for.
    if name == "RecorderStore":
        from engine.store.adapter import RecorderStore

        return RecorderStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
