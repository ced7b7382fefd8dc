"""The read-model database: SQLite or PostgreSQL behind one small interface.

Handlers write SQL with ``?`` placeholders, so one handler serves both
backends. On PostgreSQL, :func:`to_pg` translates them to psycopg's ``%s``: a
tokenizer leaves string literals, quoted identifiers, dollar-quoted bodies and
comments as they are (a ``?`` there is text, not a placeholder), and ``??``
stands for a literal ``?``, the jsonb key operator (``??|`` and ``??&`` for
``?|`` and ``?&``).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Literal

from engine.core.errors import ReadModelUnavailable, StoreUnavailable
from engine.core.extras import require
from engine.store.urls import parse_postgres_url, redact, scheme_of, sqlite_path

__all__ = ["Database", "Dialect", "Tx", "open_database", "pg_conninfo", "to_pg"]

Dialect = Literal["sqlite", "postgres"]
Params = Sequence[Any]


_PG_TOKEN = re.compile(
    r"""
      (?P<text>
          (?<![A-Za-z0-9_])[Ee]'(?:[^'\\]|\\.|'')*'  # E'it\'s'
        | '(?:[^']|'')*'                        # string literal: 'it''s'
        | "(?:[^"]|"")*"                        # quoted identifier
        | \$(?P<tag>(?:[A-Za-z_][A-Za-z_0-9]*)?)\$.*?\$(?P=tag)\$  # $tag$...$tag$
        | --[^\n]*                              # line comment
        | /\*.*?\*/                             # block comment
      )
    | (?P<operator>\?\?)                        # ?? -> the ? operator
    | (?P<placeholder>\?)
    | (?P<percent>%)
    """,
    re.VERBOSE | re.DOTALL,
)


def _pg_token(m: re.Match[str]) -> str:
    if m.group("text") is not None:
        # psycopg reads % everywhere in a statement that has parameters.
        return m.group("text").replace("%", "%%")
    if m.group("operator") is not None:
        return "?"
    if m.group("placeholder") is not None:
        return "%s"
    return "%%"


@lru_cache(maxsize=512)
def to_pg(statement: str) -> str:
    """``statement`` with its ``?`` placeholders as psycopg's ``%s``.

    A ``?`` inside a string literal, a quoted identifier, a dollar-quoted body
    or a comment is left alone; ``??`` becomes a literal ``?`` (the jsonb
    operator); every ``%`` is doubled, as psycopg requires.

    Args:
        statement: SQL with ``?`` placeholders (SQLite's style).

    Returns:
        The statement for psycopg.
    """
    return _PG_TOKEN.sub(_pg_token, statement)


class Tx:
    """One open transaction of the read-model database.

    Handlers receive it. ``table(NAME)`` gives the physical name of one of the
    projection's tables in the build being written (``<name>_v<version>_NAME``).
    """

    __slots__ = ("_cur", "_prefix", "dialect")

    def __init__(self, cur: Any, dialect: Dialect, prefix: str | None = None) -> None:
        self._cur = cur
        self._prefix = prefix
        self.dialect: Dialect = dialect
        """``"sqlite"`` or ``"postgres"``, for the rare statement that differs."""

    def bound(self, prefix: str) -> Tx:
        """The same transaction, with ``table()`` resolving under ``prefix``."""
        return Tx(self._cur, self.dialect, prefix)

    def table(self, name: str) -> str:
        """The physical name of the projection's table ``name`` in this build."""
        if self._prefix is None:
            raise ValueError(
                f"table({name!r}) is only available inside a projection's handlers"
            )
        return f"{self._prefix}_{name}"

    def execute(self, statement: str, params: Params = ()) -> int:
        """Run one statement with ``?`` placeholders; returns the rows affected.

        On PostgreSQL, write the jsonb operators ``?``, ``?|`` and ``?&`` as
        ``??``, ``??|`` and ``??&`` (see :func:`to_pg`).
        """
        if self.dialect == "postgres":
            self._cur.execute(to_pg(statement), tuple(params))
        else:
            self._cur.execute(statement, tuple(params))
        return int(self._cur.rowcount)

    def executemany(self, statement: str, rows: Iterable[Params]) -> None:
        """Run one statement once per parameter row."""
        if self.dialect == "postgres":
            self._cur.executemany(to_pg(statement), [tuple(r) for r in rows])
        else:
            self._cur.executemany(statement, rows)

    def query(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run a query; returns every row as a tuple."""
        self.execute(statement, params)
        return [tuple(r) for r in self._cur.fetchall()]

    def query_one(self, statement: str, params: Params = ()) -> tuple[Any, ...] | None:
        """Run a query; returns its first row, if any."""
        rows = self.query(statement, params)
        return rows[0] if rows else None


class Database:
    """A read-model database; thread-safe (one connection behind a lock).

    Use :func:`open_database` to open one from a URL.
    """

    dialect: Dialect
    url: str

    def __init__(
        self,
        url: str,
        dialect: Dialect,
        conn: Any,
        reconnect: Callable[[], Any] | None = None,
    ) -> None:
        self.url = redact(url)
        self.dialect = dialect
        self._conn = conn
        self._reconnect = reconnect
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction: committed when the block ends, rolled back on error.

        Raises:
            ReadModelUnavailable: the database cannot be reached (at begin or
                commit; errors raised inside the block propagate unchanged).
        """
        with self._lock:
            if self.dialect == "sqlite":
                yield from self._sqlite_tx("BEGIN IMMEDIATE")
            else:
                yield from self._pg_tx()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: one consistent snapshot, no write lock in SQLite."""
        with self._lock:
            if self.dialect == "sqlite":
                yield from self._sqlite_tx("BEGIN")
            else:
                yield from self._pg_tx()

    def _sqlite_tx(self, begin: str) -> Iterator[Tx]:
        cur = self._conn.cursor()
        try:
            cur.execute(begin)
        except sqlite3.Error as exc:
            raise ReadModelUnavailable(self.url, str(exc)) from None
        try:
            yield Tx(cur, "sqlite")
        except BaseException:
            self._conn.rollback()
            raise
        try:
            self._conn.commit()
        except sqlite3.Error as exc:
            self._conn.rollback()
            raise ReadModelUnavailable(self.url, str(exc)) from None

    def _pg_tx(self) -> Iterator[Tx]:
        import psycopg  # nonstop[postgres]: loaded only for a PostgreSQL read model

        if self._conn.broken and self._reconnect is not None:
            self._conn = self._reconnect()  # the server came back after an outage
        if self._conn.closed:
            raise ReadModelUnavailable(self.url, "the connection is closed")
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield Tx(cur, "postgres")
        except psycopg.OperationalError as exc:
            raise ReadModelUnavailable(self.url, str(exc).strip()) from exc

    def query(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run one read query in its own transaction; returns every row."""
        with self.read() as tx:
            return tx.query(statement, params)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_database(url: str) -> Database:
    """Open the read-model database at ``url``.

    The URLs of the event store are accepted: ``sqlite:///path.db``,
    ``postgresql://user@host:port/db[?schema=NAME]`` and ``memory://`` (an
    in-memory SQLite database), so a projection can live in the store's own
    database or in another one.

    Raises:
        ReadModelUnavailable: unknown scheme, or the database cannot be opened.
    """
    scheme = scheme_of(url)
    if scheme == "memory":
        return _sqlite(url, ":memory:")
    if scheme == "sqlite":
        try:
            path = sqlite_path(url)
        except StoreUnavailable as exc:
            raise ReadModelUnavailable(
                redact(url), f"no usable file path: {exc.reason}"
            ) from None
        return _sqlite(url, path)
    if scheme in ("postgresql", "postgres"):
        require("psycopg", "postgres", f"the read-model database {redact(url)}")
        return _postgres(url)
    raise ReadModelUnavailable(
        redact(url),
        f"unknown scheme {scheme!r}; use sqlite:///path.db, "
        "postgresql://user@host:port/db or memory://",
    )


def _sqlite(url: str, path: str) -> Database:
    try:
        conn = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        raise ReadModelUnavailable(redact(url), str(exc)) from None
    return Database(url, "sqlite", conn)


def pg_conninfo(url: str) -> tuple[dict[str, Any], str]:
    """Connection keywords and schema of a ``postgresql://`` URL.

    The store's parser (:func:`engine.store.urls.parse_postgres_url`): the
    same libpq rules, timeouts and keepalives, and the schema validated as an
    identifier.

    Raises:
        ReadModelUnavailable: the URL is malformed or its schema is not a
            plain identifier.
    """
    try:
        parsed = parse_postgres_url(url)
    except StoreUnavailable as exc:
        raise ReadModelUnavailable(redact(url), exc.reason) from None
    return dict(parsed.conninfo), parsed.schema


def _postgres(url: str) -> Database:
    return Database(url, "postgres", _pg_connect(url), lambda: _pg_connect(url))


def _pg_connect(url: str) -> Any:
    import psycopg  # nonstop[postgres]: checked by open_database before this
    from psycopg import sql as pgsql

    conninfo, schema = pg_conninfo(url)
    try:
        conn = psycopg.connect(**conninfo, autocommit=True)
        with contextlib.suppress(psycopg.errors.UniqueViolation):
            # Two processes creating the schema at once: one of them wins.
            conn.execute(
                pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    pgsql.Identifier(schema)
                )
            )
        conn.execute(
            pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(schema))
        )
    except psycopg.Error as exc:
        raise ReadModelUnavailable(redact(url), str(exc).strip()) from None
    return conn
