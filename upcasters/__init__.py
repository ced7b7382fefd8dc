"""Schema versions and upcaster chains (pure, no I/O).

Register steps with :func:`upcaster` (or an :class:`UpcasterRegistry` of your
own), renames with :meth:`UpcasterRegistry.rename_type`; the engine checks the
chains when it is built and runs them on every read of an old event.
"""

from upcasters.chain import (
    Emit,
    UpcastChainError,
    Upcaster,
    UpcasterRegistry,
    UpcastResult,
    default_upcasters,
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
    "upcaster",
    "write_lock",
]
