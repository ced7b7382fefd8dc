"""The pure core of nonstop: events, workflow definitions, replay, errors.

Events and their codec, workflow definitions, the replay step and the error tree.

It imports nothing but msgspec and the standard library (a test keeps it so):
``import engine.core`` loads no database driver, and every layer above builds on
it. See ``docs/architecture.md`` for the layers.
"""

from engine.core import errors, events, workflow

__all__ = ["errors", "events", "workflow"]
