"""What every long-running command runs beside its engine: health and the guard.

``nonstop worker`` and ``nonstop run`` count per-version health (flushed to
the store for rollout plans) and run the rollout controller in a thread; the
controller lease in the store lets one process act at a time, and another
takes over within the lease ttl when it stops.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.health.controller import RolloutController
    from engine.runtime import Engine

__all__ = ["add_guard_args", "start_guard"]


def add_guard_args(p: argparse.ArgumentParser) -> None:
    """Add ``--no-health`` and ``--no-guard`` to a long-running command."""
    p.add_argument(
        "--no-health",
        dest="health",
        action="store_false",
        help="do not count per-version health (rollout plans then see no data "
        "from this process)",
    )
    p.add_argument(
        "--no-guard",
        dest="guard",
        action="store_false",
        help="do not run the rollout controller beside the engine (by default "
        "every such process runs one; a lease in the store lets one of them act)",
    )


def start_guard(engine: Engine, args: Any) -> RolloutController | None:
    """Start the rollout controller in a thread on the engine's store, if asked.

    Returns:
        The controller (stop it before closing the engine), or None with
        ``--no-guard``.
    """
    if not args.guard:
        return None
    from engine.health.controller import RolloutController, Rollouts

    controller = RolloutController(Rollouts(engine.store))
    controller.start()
    return controller
