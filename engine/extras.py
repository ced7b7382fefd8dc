"""Optional dependencies: a clear error naming the extra that installs one.

The core (``pip install nonstop``) runs embedded on SQLite with msgspec,
eventsourcing and rich only. PostgreSQL, Kafka and the upcaster test helpers
need drivers that ship as extras; each feature calls :func:`require` where it
is chosen (a ``postgresql://`` URL, a Kafka worker, ``upcasters.testing``), so
a user without the driver reads which extra to install instead of a bare
``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib.util

from engine.errors import NonstopError

__all__ = ["EXTRAS", "MissingExtra", "require"]

EXTRAS = {
    "postgres": ("psycopg", "psycopg_pool"),
    "kafka": ("aiokafka",),
    "testing": ("hypothesis",),
}
"""The modules each extra of the ``nonstop`` distribution installs."""


class MissingExtra(NonstopError, ImportError):
    """A feature needs a package that an extra of ``nonstop`` installs."""

    def __init__(self, module: str, extra: str, feature: str) -> None:
        self.module = module
        self.extra = extra
        self.feature = feature
        super().__init__(
            f"{feature} needs the Python package {module!r}, which is not "
            f"installed. Install the extra: pip install 'nonstop[{extra}]'"
        )

    def __reduce__(self) -> tuple[type[MissingExtra], tuple[str, str, str]]:
        return type(self), (self.module, self.extra, self.feature)


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
