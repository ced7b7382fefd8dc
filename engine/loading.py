"""Importing user code named as ``package.module:attribute``.

Apps, deployed workflow versions, Kafka mappings, projection lists and
migration mappers are all named this way on the command line and in the
deployments registry. Each caller turns a failure into its own precise error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from engine.core.errors import NonstopError

__all__ = ["import_object"]


def import_object(spec: str, error: Callable[[str, str], NonstopError]) -> Any:
    """Import ``MODULE:ATTRIBUTE`` (the attribute may be dotted) and return it.

    Args:
        spec: ``package.module:attr`` or ``package.module:obj.attr``.
        error: builds the exception to raise from ``(spec, reason)``.

    Raises:
        NonstopError: what ``error`` builds, when the spec is malformed, the
            import raises (importing runs user code), or an attribute is missing.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise error(spec, "expected MODULE:ATTRIBUTE")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # importing runs user code
        raise error(spec, f"import failed ({exc!r})") from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise error(
                spec, f"module {module_name!r} has no attribute {attr!r}"
            ) from None
    return target
