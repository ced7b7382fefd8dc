"""The app the CLI tests load: the sales workflow and a ``Charge@1`` handler
that fails (``nonstop run --once`` gives up on it after its attempts)."""

from __future__ import annotations

from engine import WorkflowRegistry
from engine.runtime.handlers import default_handlers, effect_handler
from engine.store.retry import Backoff

from . import flows

ATTEMPTS = 2


def declined(req: flows.Charge, key: str) -> int:
    raise ConnectionError(f"card declined for {key}")


def registry() -> WorkflowRegistry:
    return flows.registry()


def with_handler() -> WorkflowRegistry:
    if default_handlers().get("Charge", 1) is None:
        effect_handler(
            "Charge",
            max_attempts=ATTEMPTS,
            backoff=Backoff(first=0.001, longest=0.001),
        )(declined)
    return flows.registry()
