"""The pytest plugin of nonstop: engines for a user's tests, closed after each.

Installed with the package (entry point ``pytest11``: ``nonstop``); disable it
with ``pytest -p no:nonstop``. A test suite tells it which workflows to run by
overriding one fixture in its ``conftest.py``::

    @pytest.fixture
    def nonstop_registry() -> WorkflowRegistry:
        return my_app.registry()

Fixtures:

- ``nonstop_engine``: an :class:`~engine.runtime.Engine` on an in-memory
  store (an async fixture: it needs pytest-asyncio);
- ``nonstop_sqlite_engine``: the same on a SQLite file in the test's
  temporary directory;
- ``nonstop_sync_engine`` and ``nonstop_sqlite_sync_engine``: their
  :class:`~engine.sync.SyncEngine` twins, for plain test functions;
- ``nonstop_options``: keyword arguments for every engine above (a codec, the
  upcasters, ``health=True``...); empty unless overridden.

This module needs no hypothesis: pytest keeps working where the ``testing``
extra is not installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported when a fixture runs: pytest starts no slower
    from engine.core.workflow import WorkflowRegistry
    from engine.runtime import Engine
    from engine.sync import SyncEngine

__all__ = [
    "nonstop_engine",
    "nonstop_options",
    "nonstop_registry",
    "nonstop_sqlite_engine",
    "nonstop_sqlite_sync_engine",
    "nonstop_sync_engine",
]

_ASYNC = importlib.util.find_spec("pytest_asyncio") is not None
"""The async fixtures need pytest-asyncio; the sync ones do not."""


@pytest.fixture
def nonstop_registry() -> WorkflowRegistry:
    """The workflows the engines run: override it in your ``conftest.py``."""
    pytest.fail(
        "the nonstop fixtures need your workflows: define a fixture "
        "`nonstop_registry` returning a WorkflowRegistry in your conftest.py",
        pytrace=False,
    )


@pytest.fixture
def nonstop_options() -> dict[str, Any]:
    """Keyword arguments for every engine the fixtures make (override it)."""
    return {}


def _sqlite(path: Path) -> str:
    return f"sqlite:///{path / 'nonstop.db'}"


@pytest.fixture
def nonstop_sync_engine(
    nonstop_registry: WorkflowRegistry, nonstop_options: dict[str, Any]
) -> Iterator[SyncEngine]:
    """A :class:`SyncEngine` on an in-memory store."""
    from engine.sync import SyncEngine

    with SyncEngine("memory://", nonstop_registry, **nonstop_options) as engine:
        yield engine


@pytest.fixture
def nonstop_sqlite_sync_engine(
    nonstop_registry: WorkflowRegistry,
    nonstop_options: dict[str, Any],
    tmp_path: Path,
) -> Iterator[SyncEngine]:
    """A :class:`SyncEngine` on a SQLite file in the test's temporary directory."""
    from engine.sync import SyncEngine

    url = _sqlite(tmp_path)
    with SyncEngine(url, nonstop_registry, **nonstop_options) as engine:
        yield engine


async def _engine(
    url: str, registry: WorkflowRegistry, options: dict[str, Any]
) -> AsyncIterator[Engine]:
    from engine.runtime import Engine

    engine = Engine(url, registry, **options)
    try:
        yield engine
    finally:
        await engine.close()


if _ASYNC:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def nonstop_engine(
        nonstop_registry: WorkflowRegistry, nonstop_options: dict[str, Any]
    ) -> AsyncIterator[Engine]:
        """An :class:`Engine` on an in-memory store, closed after the test."""
        async for engine in _engine("memory://", nonstop_registry, nonstop_options):
            yield engine

    @pytest_asyncio.fixture
    async def nonstop_sqlite_engine(
        nonstop_registry: WorkflowRegistry,
        nonstop_options: dict[str, Any],
        tmp_path: Path,
    ) -> AsyncIterator[Engine]:
        """An :class:`Engine` on a SQLite file in the test's temporary directory."""
        url = _sqlite(tmp_path)
        async for engine in _engine(url, nonstop_registry, nonstop_options):
            yield engine

else:

    @pytest.fixture
    def nonstop_engine() -> None:
        """Needs pytest-asyncio (use ``nonstop_sync_engine`` without it)."""
        pytest.fail(_NO_ASYNC, pytrace=False)

    @pytest.fixture
    def nonstop_sqlite_engine() -> None:
        """Needs pytest-asyncio (use ``nonstop_sqlite_sync_engine`` without it)."""
        pytest.fail(_NO_ASYNC, pytrace=False)


_NO_ASYNC = (
    "the async nonstop fixtures need pytest-asyncio (pip install pytest-asyncio); "
    "without it use nonstop_sync_engine or nonstop_sqlite_sync_engine"
)
