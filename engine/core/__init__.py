"""The pure core of nonstop: events, workflow definitions, replay, errors.

Events and their codec, workflow definitions, the replay step and the error tree.

It imports nothing but msgspec and the standard library (a test keeps it so):
``import engine.core`` loads no database driver, and every layer above builds on
it. See ``docs/architecture.md`` for the layers.
"""

from engine.core import codec, errors, events, replay, workflow

__all__ = ["codec", "errors", "events", "replay", "workflow"]
