"""The operations console: a JSON API and server-rendered pages over one store.

``nonstop console --store URL`` serves it (Starlette, run by uvicorn; the
``nonstop[console]`` extra). It shows workflows, versions and their routing,
rollouts with the guard's decisions and health charts, instances, the audit,
flags, config, dead letters and projections, and acts (pause, resume, abort
a rollout, promote, roll back, kill a flag, roll a config back, replay a dead
letter) through the same code as the command line. Tokens name people with a
role (:mod:`engine.console.auth`); viewers cannot act. The overview and
rollout pages update themselves without a reload. See ``docs/console.md``.

Importing this package without the extra raises
:class:`~engine.core.errors.MissingExtra` naming it.
"""

from __future__ import annotations

from engine.core.extras import require

require("starlette", "console", "the operations console (engine.console)")

from engine.console.app import create_app  # noqa: E402
from engine.console.data import Settings  # noqa: E402

__all__ = ["Settings", "create_app"]
