"""A "hotfix" of ``orders@1`` that the demo tries, and fails, to deploy.

The change looks harmless: placed orders get a fraud score of 0 at once, so
reports stop showing none for orders@1. But it changes the state that every
stored ``OrderPlaced`` folds into, so orders already in flight would be
replayed into states they never had. ``nonstop verify`` finds that, and the
deploy of the same ``orders@1`` with this code is refused.
"""

from __future__ import annotations

import dataclasses

import msgspec

from engine import Workflow
from engine.demo.orders import Order, OrderPlaced, evolve
from engine.demo.orders import v1 as released

__all__ = ["v1"]


def evolve_hotfix(state: Order, e: object) -> Order:
    """``evolve`` of orders@1, with the "fix"."""
    if isinstance(e, OrderPlaced):
        return msgspec.structs.replace(evolve(state, e), fraud_score=0.0)
    return evolve(state, e)


v1: Workflow[Order] = dataclasses.replace(released, evolve=evolve_hotfix)
"""orders@1 with the changed reducer (same name and version)."""
