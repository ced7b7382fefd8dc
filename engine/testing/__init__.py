"""A testing kit for users' workflows (the ``nonstop[testing]`` extra).

- :func:`given` ``(workflow, events).when(command).then(events | rejected())``:
  one decision, tested pure;
- :func:`commands`: a hypothesis strategy of a start input and commands for a
  workflow, drawn from the types it accepts (:func:`values` for one type);
- :func:`assert_replay_stable`: the state is the same when folded from the
  log, after a restart at any point, and under another code of the version;
- :func:`assert_upcasts`, :func:`payloads`, :func:`stored_payloads`: every
  locked schema version of an event type reads into today's structs;
- :func:`replay_histories`: histories exported by ``nonstop export`` replayed
  under the code of a registry, failing where a state differs from the one
  recorded (no hypothesis needed);
- the pytest plugin :mod:`engine.testing.plugin` (registered by the
  installed package): engines on an in-memory or a temporary SQLite store.

The names load on first use, and each one but :func:`replay_histories` needs
hypothesis: without it, using them raises
the :class:`~engine.core.errors.MissingExtra` error naming the extra. The
plugin itself needs no hypothesis, so pytest runs where the extra is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from engine.core.extras import require

if TYPE_CHECKING:
    from engine.testing.histories import replay_histories
    from engine.testing.scenario import (
        FixedContext,
        Rejected,
        Scenario,
        given,
        rejected,
    )
    from engine.testing.stability import assert_replay_stable
    from engine.testing.strategies import Overrides, commands, values
    from engine.testing.upcasting import assert_upcasts, payloads, stored_payloads

__all__ = [
    "FixedContext",
    "Overrides",
    "Rejected",
    "Scenario",
    "assert_replay_stable",
    "assert_upcasts",
    "commands",
    "given",
    "payloads",
    "rejected",
    "replay_histories",
    "stored_payloads",
    "values",
]

_WHERE = {
    "FixedContext": "engine.testing.scenario",
    "Rejected": "engine.testing.scenario",
    "Scenario": "engine.testing.scenario",
    "given": "engine.testing.scenario",
    "rejected": "engine.testing.scenario",
    "assert_replay_stable": "engine.testing.stability",
    "Overrides": "engine.testing.strategies",
    "commands": "engine.testing.strategies",
    "values": "engine.testing.strategies",
    "assert_upcasts": "engine.testing.upcasting",
    "payloads": "engine.testing.upcasting",
    "stored_payloads": "engine.testing.upcasting",
    # replay_histories: recorded histories replayed in a test suite
    "replay_histories": "engine.testing.histories",
}


_PLAIN = frozenset({"replay_histories"})
"""Names that need no hypothesis."""


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` on first use (hypothesis required)."""
    module = _WHERE.get(name)
    if module is None or importlib.util.find_spec(module) is None:
        raise AttributeError(f"module 'engine.testing' has no attribute {name!r}")
    if name not in _PLAIN:
        require("hypothesis", "testing", "engine.testing")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
