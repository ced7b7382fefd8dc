"""The console's actions, through the same code paths as the command line.

Rollouts are paused, resumed and aborted through
:class:`~engine.health.controller.Rollouts`; versions promoted and rolled back,
flags killed and revived through :class:`~engine.deploy.Deployments`; dead
letters replayed with :func:`engine.kafka.deadletters.replay`. Each writes who
acted and why to the store, so every action shows in the audit: the registry
and rollout events carry ``by`` and ``reason``, and a replay is recorded as an
:class:`~engine.deploy.actions.OperatorAction`.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from engine.console.data import Settings, store_of
from engine.core.errors import ConsoleError
from engine.core.extras import require
from engine.deploy import Deployments
from engine.deploy.actions import OperatorAction, record_action
from engine.health.controller import Rollouts

__all__ = ["ROLLOUT_ACTIONS", "flag", "promote", "replay", "rollback", "rollout"]

ROLLOUT_ACTIONS = ("pause", "resume", "abort")
"""What an operator can do to a rollout in progress."""


def _who(by: str, reason: str) -> None:
    if not by.strip():
        raise ConsoleError(400, "an action needs an operator name; none was given")
    if not reason.strip():
        raise ConsoleError(
            400,
            "an action needs a reason (the 'reason' field): it is kept in the audit",
        )


def rollout(
    settings: Settings, workflow: str, action: str, *, by: str, reason: str
) -> dict[str, Any]:
    """Pause, resume or abort ``workflow``'s rollout; returns its status after.

    Raises:
        ConsoleError: 404, an unknown action; 400, no reason.
        RolloutError: no rollout in a state the action applies to.
    """
    if action not in ROLLOUT_ACTIONS:
        raise ConsoleError(
            404,
            f"rollout action {action!r} does not exist; use one of "
            f"{', '.join(ROLLOUT_ACTIONS)}",
        )
    _who(by, reason)
    with store_of(settings) as store:
        rollouts = Rollouts(store)
        getattr(rollouts, action)(workflow, by=by, reason=reason)
        r = rollouts.status(workflow)
        return {"rollout": r.number, "workflow": workflow, "status": r.status}


def promote(
    settings: Settings,
    workflow: str,
    version: str,
    percent: str,
    *,
    by: str,
    reason: str,
) -> dict[str, Any]:
    """Give ``workflow@version`` ``percent`` of new instances; returns the routing.

    Raises:
        ConsoleError: 400, a version or percent that is not a number.
        DeployError: the registry refuses (not deployed, failed, ...).
    """
    if not version.isdigit():
        raise ConsoleError(400, f"version {version!r} must be a whole number")
    try:
        share = float(percent or "100")
    except ValueError:
        share = math.nan
    if not 0 < share <= 100:
        raise ConsoleError(400, f"percent {percent!r} must be a number in (0, 100]")
    _who(by, reason)
    with Deployments(settings.store_url) as reg:
        reg.promote(workflow, int(version), percent=share, by=by, reason=reason)
        return _routing(reg, workflow)


def rollback(
    settings: Settings, workflow: str, *, by: str, reason: str
) -> dict[str, Any]:
    """Route ``workflow``'s new instances to its previous version.

    Raises:
        DeployError: nothing to roll back to.
    """
    _who(by, reason)
    with Deployments(settings.store_url) as reg:
        reg.rollback(workflow, by=by, reason=reason)
        return _routing(reg, workflow)


def _routing(reg: Deployments, workflow: str) -> dict[str, Any]:
    routing = reg.refresh().workflow(workflow).effective()
    return {"workflow": workflow, "routing": routing.describe() if routing else None}


def flag(
    settings: Settings, name: str, *, revive: bool, by: str, reason: str
) -> dict[str, Any]:
    """Kill ``name`` (off for everyone) or revive it; returns the flag after.

    Raises:
        FlagError: no such flag.
    """
    _who(by, reason)
    with Deployments(settings.store_url) as reg:
        f = reg.kill_flag(name, revive=revive, by=by, reason=reason)
    return {"flag": f.name, "killed": f.killed, "value": f.describe()}


def replay(settings: Settings, letter: str, *, by: str, reason: str) -> dict[str, Any]:
    """Produce dead letter ``letter`` again to its topic and audit it.

    Raises:
        ConsoleError: 400, not an id; 409, the console has no Kafka broker.
        DeadLetterNotFound: no such dead letter.
        AlreadyReplayed: it was replayed before.
    """
    if not letter.isdigit():
        raise ConsoleError(400, f"dead letter id {letter!r} must be a whole number")
    _who(by, reason)
    if settings.kafka is None:
        raise ConsoleError(
            409,
            "replaying a dead letter needs a Kafka broker: start the console with "
            "--kafka HOST:PORT",
        )
    require("aiokafka", "kafka", "replaying dead letters")
    from engine.kafka.deadletters import replay as produce

    with store_of(settings) as store:
        done = asyncio.run(produce(store, settings.kafka, [int(letter)]))
        x = done[0]
        record_action(
            store,
            OperatorAction(
                f"deadletter:{x.id}",
                "deadletter replay",
                f"replayed {x.letter.topic}/{x.letter.partition}/{x.letter.offset} "
                f"({x.letter.reason[:80]})",
                by,
                reason,
            ),
        )
    return {"id": x.id, "replayed_to": x.letter.topic}
