"""Command groups of the ``nonstop`` command line, one module each.

Each module named in :data:`GROUPS` exports ``register(sub)``, which adds its
subcommands to the top-level ``argparse`` subparsers and sets
``run=handler`` on each, where ``handler(ctx: CliContext, args) -> int`` returns
the exit code. A :class:`~engine.core.errors.NonstopError` raised by a handler is
printed as one line (``nonstop: error: ...``) and exits with code 2.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.console import Console

from engine.core.workflow import WorkflowRegistry

__all__ = ["GROUPS", "CliContext"]

GROUPS = (
    "engine.commands.schema",
    "engine.commands.snapshots",
    "engine.commands.instances",
    "engine.commands.deploy",
    "engine.commands.projections",
    "engine.commands.kafka",
    "engine.commands.rollout",
    "engine.commands.console",
    "engine.commands.config",
    "engine.commands.verify",
    "engine.commands.histories",
    "engine.commands.store",
    "engine.commands.effects",
)
"""Modules whose ``register(sub)`` adds subcommands, in help order."""

T = TypeVar("T")


@dataclass(frozen=True)
class CliContext:
    """What a command handler gets besides its parsed arguments.

    Attributes:
        out: where tables and messages go (stdout).
        store_url: the event store (``--store``, ``$NONSTOP_STORE`` or the default).
        app: the ``MOD:ATTR`` naming the workflow registry.
        load_app: imports ``app`` and returns the registry (raises
            :class:`~engine.cli.AppLoadError`).
        read_only: the command only reads the store (never creates one).
    """

    out: Console
    store_url: str
    app: str
    load_app: Callable[[str], WorkflowRegistry]
    read_only: bool = False
    """The command only reads the store: it must never create one."""

    def registry(self) -> WorkflowRegistry:
        """The workflow registry named by ``app``, plus the deployed versions.

        A read-only command without a store gets the app's registry alone
        (nothing is deployed where there is no store), and creates nothing.
        """
        from engine.core.errors import StoreNotFound
        from engine.deploy import with_deployed
        from engine.store import require_store

        app = self.load_app(self.app)
        if self.read_only:
            try:
                require_store(self.store_url)
            except StoreNotFound:
                return app
        return with_deployed(app, self.store_url)

    def with_engine(self, job: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """Run ``job(engine)`` on a new ``Engine`` over the store, then close it."""
        from engine.runtime import Engine

        registry = self.registry()

        async def run() -> T:
            engine = Engine(self.store_url, registry)
            try:
                return await job(engine)
            finally:
                await engine.close()

        return asyncio.run(run())
