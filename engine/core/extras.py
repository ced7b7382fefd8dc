"""Optional dependencies: a clear error naming the extra that installs one.

The core (``pip install nonstop``) runs embedded on SQLite with msgspec,
eventsourcing and rich only. PostgreSQL, Kafka and the upcaster test helpers
need drivers that ship as extras; each feature calls :func:`require` where it
is chosen (a ``postgresql://`` URL, a Kafka worker, ``engine.testing``), so
a user without the driver reads which extra to install instead of a bare
``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib.util

from engine.core.errors import MissingExtra

__all__ = ["EXTRAS", "require"]

EXTRAS = {
    "postgres": ("psycopg", "psycopg_pool"),
    "kafka": ("aiokafka",),
    "testing": ("hypothesis",),
    "console": ("starlette", "uvicorn"),
}
"""The modules each extra of the ``nonstop`` distribution installs."""


def require(module: str, extra: str, feature: str) -> None:
    """Check that ``module`` can be imported, without importing it.

    Args:
        module: The top-level module the feature imports (``"psycopg"``).
        extra: The extra of ``nonstop`` that installs it (``"postgres"``).
        feature: What needs it, for the message (``"a postgresql:// store"``).

    Raises:
        MissingExtra: the module is not installed.
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        found = False
    if not found:
        raise MissingExtra(module, extra, feature)
