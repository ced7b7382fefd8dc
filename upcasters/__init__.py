"""Schema versions and upcaster chains (pure, no I/O).

Register steps with :func:`upcaster` (or an :class:`UpcasterRegistry` of your
own), renames with :meth:`UpcasterRegistry.rename_type`, snapshot state steps
with :func:`state_upcaster`; the engine checks the chains when it is built and
runs them on every read of an old event or snapshot. :mod:`upcasters.testing`
has hypothesis strategies and assertions for your own tests.
"""

from engine.core.errors import SchemaLockError, UpcastChainError
from upcasters.chain import (
    Emit,
    Upcaster,
    UpcasterRegistry,
    UpcastResult,
    default_upcasters,
    state_upcaster,
    upcaster,
)
from upcasters.schema import (
    Change,
    compare,
    describe,
    describe_type,
    merge_lock,
    read_lock,
    write_lock,
)

__all__ = [
    "Change",
    "Emit",
    "SchemaLockError",
    "UpcastChainError",
    "UpcastResult",
    "Upcaster",
    "UpcasterRegistry",
    "compare",
    "default_upcasters",
    "describe",
    "describe_type",
    "merge_lock",
    "read_lock",
    "state_upcaster",
    "upcaster",
    "write_lock",
]
