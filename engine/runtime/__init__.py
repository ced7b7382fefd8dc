"""The runtime: the ``Engine`` and the parts it is built from.

- :mod:`engine.runtime.requests`: ``Start``, ``Send`` and the ``Router`` port;
- :mod:`engine.runtime.locks`: per-instance locks, cancellation-safe;
- :mod:`engine.runtime.loader`: the instance cache, replay and snapshots;
- :mod:`engine.runtime.reads`: concurrent cold loads grouped into batched reads;
- :mod:`engine.runtime.decider`: a command in, records out;
- :mod:`engine.runtime.committer`: group commit and commits in doubt;
- :mod:`engine.runtime.engine`: the ``Engine`` facade composing them.

``InstanceInfo`` is the core's (:mod:`engine.core.replay`), exported here too
because every runtime call returns one.
"""

from engine.core.replay import InstanceInfo
from engine.runtime.engine import Engine
from engine.runtime.reads import InstancePage
from engine.runtime.requests import Router, Send, Start

__all__ = ["Engine", "InstanceInfo", "InstancePage", "Router", "Send", "Start"]
