"""Shared fixtures: store URLs for every adapter, PostgreSQL in its own schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PG_URL = os.environ.get(
    "NONSTOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
_RUN = uuid.uuid4().hex[:8]


def _pg_reachable() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


_PG_PROBLEM = _pg_reachable()


def pytest_report_header(config: pytest.Config) -> str:
    if _PG_PROBLEM is None:
        return f"postgres: {PG_URL} (schemas nonstop_test_{_RUN}_*)"
    return f"postgres: NOT reachable at {PG_URL} ({_PG_PROBLEM}); postgres tests skip"


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if _PG_PROBLEM is None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(
            f"CI is set and PostgreSQL is not reachable at {PG_URL}: {_PG_PROBLEM}"
        )
    skip = pytest.mark.skip(reason=f"PostgreSQL not reachable at {PG_URL}")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


def _fresh_pg() -> Iterator[str]:
    schema = f"nonstop_test_{_RUN}_{uuid.uuid4().hex[:8]}"
    yield _schema_url(schema)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL store URL in a fresh schema, dropped afterwards."""
    yield from _fresh_pg()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite store URL in a fresh file."""
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One store URL per adapter: memory, SQLite, PostgreSQL."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
    else:
        yield from _fresh_pg()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL that survives reopening: a SQLite file, a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
    else:
        yield from _fresh_pg()


# The suite must leave no store in the repository root (a command run there
# without --store would create ./nonstop.db): fail the run if one appears.
_ROOT_DB = Path(__file__).resolve().parents[1] / "nonstop.db"
_ROOT_DB_BEFORE = _ROOT_DB.exists()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _ROOT_DB_BEFORE and _ROOT_DB.exists():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nERROR: the tests left {_ROOT_DB}; run commands from tmp_path")
