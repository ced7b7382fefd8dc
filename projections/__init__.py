"""Read models built from the global event order, with tracked positions.

The event store port already offers what projections stand on: reading the
global order from a position and writing tracking records atomically with
effects (:class:`engine.store.Tracking`).
"""

__all__: list[str] = []
