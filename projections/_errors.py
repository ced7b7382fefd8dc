"""Errors of projections, all under :class:`engine.errors.NonstopError`."""

from __future__ import annotations

from engine.errors import NonstopError

__all__ = [
    "ProjectionDefinitionError",
    "ProjectionError",
    "ProjectionStateError",
    "ReadModelUnavailable",
    "UnknownProjection",
]


class ProjectionError(NonstopError):
    """Base class of the errors raised by projections."""


class ProjectionDefinitionError(ProjectionError, ValueError):
    """A projection is declared wrongly (name, version, tables, handlers)."""


class ReadModelUnavailable(ProjectionError, ConnectionError):
    """The read-model database cannot be reached or opened."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"read-model database {url} is unavailable: {reason}. "
            "Check the URL (--db, else the event store's) and that the server runs."
        )


class UnknownProjection(ProjectionError, LookupError):
    """No projection of that name is known to the read-model database or code."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        choices = ", ".join(known) or "none"
        super().__init__(
            f"unknown projection {name!r}; known: {choices}. "
            "Run it once (`nonstop projections run --once`) or check the name."
        )


class ProjectionStateError(ProjectionError):
    """An operator action does not fit the projection's current state."""
