"""The console's config panel: every workflow's typed config, and rollback.

It reads what ``nonstop config show``, ``history`` and ``status`` print (the
deployments registry's folded :class:`~engine.deploy.configview.WorkflowConfig`
and the engines' reports) and rolls back through
:func:`~engine.deploy.configadmin.rollback_config`, the code path of
``nonstop config rollback``: the document is validated against every running
version first, and the change is written with who and why, so it shows in the
audit.
"""

from __future__ import annotations

from typing import Any

from engine.commands.config import engines_json
from engine.commands.deploy import _iso
from engine.console.data import Settings
from engine.core.errors import ConsoleError
from engine.deploy import Deployments
from engine.deploy.configadmin import describe_change, rollback_config
from engine.deploy.configs import read_reports
from engine.deploy.configview import WorkflowConfig

__all__ = ["config", "rollback"]


def config(settings: Settings) -> list[dict[str, Any]]:
    """Each workflow's config: current, canary, document, history, engines.

    Workflows of the store or the app without a config change are listed with
    the defaults (version 0) and an empty history.
    """
    with settings.open() as shared:
        reg = shared.deployments
        names = sorted(set(shared.workflow_names()) | set(reg.view.configs))
        out = []
        for name in names:
            wc = reg.view.configs.get(name) or WorkflowConfig(name)
            reports = read_reports(reg.store, name, reg.codec)
            out.append(_workflow(wc, reports))
    return out


def _workflow(wc: WorkflowConfig, reports: dict[str, Any]) -> dict[str, Any]:
    history = []
    for change in wc.changes:
        head, *diff = describe_change(wc, change)
        history.append(
            {
                "at": _iso(change.at),
                "action": change.action,
                "by": change.by,
                "reason": change.reason,
                "before": change.before,
                "after": change.after,
                "added": change.added,
                "canary": change.canary,
                "summary": head,
                "diff": [line.strip() for line in diff],
            }
        )
    return {
        "workflow": wc.workflow,
        "current": wc.current,
        "canary": wc.canary,
        "canary_percent": wc.canary_bp / 100 if wc.canary is not None else None,
        "routing": wc.describe(),
        "document": wc.table(wc.current),
        "canary_document": None if wc.canary is None else wc.table(wc.canary),
        "versions": [
            {"version": v.version, "at": _iso(v.at), "by": v.by, "reason": v.reason}
            for v in sorted(wc.versions.values(), key=lambda v: v.version)
        ],
        "rollback_to": wc.rollback_target(),
        "history": history,
        "engines": engines_json(reports),
    }


def rollback(
    settings: Settings, workflow: str, to: str, *, by: str, reason: str
) -> dict[str, Any]:
    """Roll ``workflow``'s config back (to version ``to``, default the previous).

    Returns the workflow's config after, as :func:`config` shows it.

    Raises:
        ConsoleError: 400, ``to`` not a whole number, no reason.
        ConfigError: nothing to roll back to, no such version, or a running
            version refuses it (409); nothing was written.
    """
    if to and not to.isdigit():
        raise ConsoleError(
            400, f"config version {to!r} must be a whole number (0: the defaults)"
        )
    if not by.strip() or not reason.strip():
        raise ConsoleError(
            400,
            "an action needs an operator name and a reason (the 'reason' field): "
            "they are kept in the audit",
        )
    with settings.open() as shared:
        registry = shared.registry
    with Deployments(settings.store_url) as reg:
        wc = rollback_config(
            reg,
            workflow,
            to=int(to) if to else None,
            by=by,
            reason=reason,
            registry=registry,
        )
        reports = read_reports(reg.store, workflow, reg.codec)
        return _workflow(wc, reports)
