"""Read models built from the global event order, with tracked positions.

A :class:`Projection` declares its name, version, tables and handlers; a
:class:`Runner` folds the store's global order into it, committing each batch's
writes together with the build's position, catches up, follows live, and
switches reads to a new build (blue/green) once it has caught up. Readers query
the views ``<name>_<table>``, which always point at the serving build.
"""

from engine.core.errors import (
    ProjectionDefinitionError,
    ProjectionError,
    ProjectionStateError,
    ReadModelUnavailable,
    UnknownProjection,
)
from projections._api import (
    ALL,
    BatchHandler,
    Handler,
    Projection,
    Setup,
    Undecodable,
)
from projections._db import Database, Dialect, Tx, open_database
from projections._meta import Failure
from projections._ops import (
    ProjectionStatus,
    request_rebuild,
    resume,
    skip,
    skips,
    status,
)
from projections._runner import Runner, default_codec

__all__ = [
    "ALL",
    "BatchHandler",
    "Database",
    "Dialect",
    "Failure",
    "Handler",
    "Projection",
    "ProjectionDefinitionError",
    "ProjectionError",
    "ProjectionStateError",
    "ProjectionStatus",
    "ReadModelUnavailable",
    "Runner",
    "Setup",
    "Tx",
    "Undecodable",
    "UnknownProjection",
    "default_codec",
    "open_database",
    "request_rebuild",
    "resume",
    "skip",
    "skips",
    "status",
]
