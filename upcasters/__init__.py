"""Schema versions and upcaster chains (pure, no I/O).

The engine's :class:`~engine.events.EventCodec` already hands any event stored at
an older schema version to an installed upcaster function; this package will
hold the registration API and the compatibility checks.
"""

__all__: list[str] = []
