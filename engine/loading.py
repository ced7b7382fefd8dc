"""Importing user code named as ``package.module:attribute``.

Apps, deployed workflow versions, Kafka mappings, projection lists and
migration mappers are all named this way on the command line and in the
deployments registry. Each caller turns a failure into its own precise error.

The ``nonstop`` command finds the user's modules the way uvicorn, gunicorn and
celery do: :func:`user_import_path` puts the ``--app-dir`` directory (or
``$NONSTOP_APP_DIR``) and then the current directory first on ``sys.path``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from engine.core.errors import NonstopError

__all__ = ["APP_DIR_ENV", "import_dirs", "import_object", "user_import_path"]

APP_DIR_ENV = "NONSTOP_APP_DIR"
"""The environment variable naming the ``--app-dir`` default."""


def import_dirs(app_dir: str | None = None) -> list[str]:
    """The directories searched before the installed packages, first first.

    Args:
        app_dir: ``--app-dir``; when None, ``$NONSTOP_APP_DIR`` if set.

    Returns:
        The absolute app directory (if any), then the current directory,
        without duplicates.
    """
    chosen = app_dir if app_dir is not None else os.environ.get(APP_DIR_ENV) or None
    dirs = [os.path.abspath(chosen)] if chosen else []
    cwd = os.getcwd()
    if cwd not in dirs:
        dirs.append(cwd)
    return dirs


@contextmanager
def user_import_path(app_dir: str | None = None) -> Iterator[list[str]]:
    """Put the user's directories first on ``sys.path`` while the block runs.

    ``sys.path`` is restored on exit (modules imported meanwhile stay loaded).

    Args:
        app_dir: ``--app-dir``; when None, ``$NONSTOP_APP_DIR`` if set.

    Yields:
        The directories put first (see :func:`import_dirs`).
    """
    dirs = import_dirs(app_dir)
    saved = list(sys.path)
    sys.path[:0] = dirs
    importlib.invalidate_caches()
    try:
        yield dirs
    finally:
        sys.path[:] = saved


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
    except ModuleNotFoundError as exc:
        hint = ""
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            hint = (
                "; the current directory and --app-dir (or $NONSTOP_APP_DIR) "
                "are searched first, then the installed packages"
            )
        raise error(spec, f"import failed ({exc!r}){hint}") from None
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
