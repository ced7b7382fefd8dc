"""``flags rollback``: restore an earlier definition of a flag from its history.

Each change of a flag (set, kill, revive, rollback) is its next definition,
numbered from 1 (``nonstop audit flag:NAME`` lists them in order). A rollback
writes the chosen definition again, kill switch included, as a new change.
"""

from __future__ import annotations

from typing import Any

from engine.core.errors import FlagError
from engine.deploy.events import FLAGS_STREAM
from engine.deploy.flags import Flag
from engine.deploy.registry import Deployments
from engine.deploy.view import DeployView
from engine.deploy.writes import default_user, flag_event

__all__ = ["flag_rollback_target", "rollback_flag"]


def flag_rollback_target(history: list[Flag], to: int | None) -> Flag:
    """The definition a rollback restores.

    Number ``to`` if given, else the last one that differs from the current.

    Raises:
        FlagError: no such definition, or none differs from the current one.
    """
    if not history:
        raise FlagError("the flag has no definition to roll back to")
    current = history[-1]
    name = current.name
    if to is not None:
        if not 1 <= to <= len(history):
            raise FlagError(
                f"flag {name!r} has definitions 1..{len(history)}, not {to}; "
                f"see nonstop audit flag:{name}"
            )
        return history[to - 1]
    for flag in reversed(history[:-1]):
        if flag != current:
            return flag
    raise FlagError(
        f"flag {name!r} has no earlier definition different from the current "
        f"one ({current.describe()}); set it with nonstop flags set"
    )


def rollback_flag(
    deployments: Deployments,
    name: str,
    *,
    to: int | None = None,
    by: str | None = None,
    reason: str = "",
) -> Flag:
    """Restore definition ``to`` of flag ``name`` (default: the previous one).

    Raises:
        FlagError: unknown flag, or no such definition to restore.
    """
    user = by or default_user()

    def make(view: DeployView) -> list[Any]:
        history = view.flag_history.get(name)
        if not history:
            choices = ", ".join(sorted(view.flags)) or "none"
            raise FlagError(f"unknown flag {name!r} (defined: {choices})")
        return [flag_event(flag_rollback_target(history, to), "rollback", user, reason)]

    deployments._change(FLAGS_STREAM, make)
    return deployments.view.flags[name]
