"""``nonstop`` subcommands: projections (none yet)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to sub."""
