"""Hypothesis helpers for upcaster chains (moved to :mod:`engine.testing`).

Kept so that ``from upcasters.testing import assert_upcasts`` goes on working;
the helpers live in :mod:`engine.testing.upcasting` and ship, with the rest of
the testing kit, in the ``nonstop[testing]`` extra.
"""

from __future__ import annotations

from engine.core.extras import require

require("hypothesis", "testing", "upcasters.testing")

from engine.testing.upcasting import (  # noqa: E402
    assert_upcasts,
    payloads,
    stored_payloads,
)

__all__ = ["assert_upcasts", "payloads", "stored_payloads"]
