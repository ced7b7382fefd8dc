"""The input types of a workflow version: what ``start`` and ``send`` accept.

A workflow names them in :attr:`Workflow.inputs` (start inputs) and
:attr:`Workflow.commands` (commands to a running instance). When it leaves them
empty, the annotation of ``decide``'s command parameter is read instead
(``def decide(state, cmd: PlaceOrder | Pay, ctx)``), for both. The schema lock
describes these types, and ``engine.testing`` draws commands from them.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from engine.core.workflow import Workflow

__all__ = ["command_types", "start_types"]


def start_types(workflow: Workflow[Any]) -> tuple[type[Any], ...]:
    """The types a start input of ``workflow`` may have (maybe none known)."""
    return workflow.inputs or _annotated(workflow)


def command_types(workflow: Workflow[Any]) -> tuple[type[Any], ...]:
    """The types of the commands sent to ``workflow``'s instances (maybe none)."""
    return workflow.commands or _annotated(workflow)


def _annotated(workflow: Workflow[Any]) -> tuple[type[Any], ...]:
    """The classes named by the annotation of ``decide``'s second parameter."""
    decide = workflow.decide
    try:
        params = list(inspect.signature(decide).parameters.values())
        hints = typing.get_type_hints(decide)
    except (TypeError, ValueError, NameError):  # a builtin, a bad forward ref
        return ()
    if len(params) < 2 or params[1].name not in hints:
        return ()
    hint = hints[params[1].name]
    members = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    return tuple(
        m for m in members if isinstance(m, type) and m not in (object, type(None))
    )
