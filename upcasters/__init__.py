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

__all__ = [
    "Emit",
    "UpcastChainError",
    "UpcastResult",
    "Upcaster",
    "UpcasterRegistry",
    "default_upcasters",
    "upcaster",
]
