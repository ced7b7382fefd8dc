"""Operator changes of a workflow's config: set (or canary), promote, rollback.

Every change is validated first against the config type of every version of
the workflow still running (deployed and not retired or failed), each loaded
from its deployed source: a document one of them cannot decode is refused with
:class:`~engine.core.errors.ConfigError` naming that version and the field,
and nothing is written. A valid change is one event in the workflow's config
stream (``nonstop.config:WORKFLOW``, listed in the registry's index), which
engines fold at their next registry refresh.
"""

from __future__ import annotations

from typing import Any

from engine.core.config import canonical, decode_config, diff_documents
from engine.core.errors import ConfigError
from engine.core.workflow import WorkflowRegistry
from engine.deploy.configview import ConfigChange, WorkflowConfig
from engine.deploy.events import ConfigChanged, config_stream
from engine.deploy.registry import Deployments, default_user, load_source
from engine.deploy.routing import percent_to_bp
from engine.deploy.view import DeployView

__all__ = [
    "canary_config",
    "config_types",
    "describe_change",
    "promote_config",
    "rollback_config",
    "set_config",
    "validate_everywhere",
]


def config_types(
    deployments: Deployments, workflow: str, registry: WorkflowRegistry | None = None
) -> list[tuple[int, type[Any]]]:
    """``(version, config type)`` of every running version that declares one.

    Running versions are the deployed ones not retired or failed; their code
    comes from ``registry`` when it has them, else from their deployed source.
    With no deployment at all, the versions of ``registry`` count.

    Raises:
        ConfigError: no running version declares a config type.
        DeploySourceError: a deployed source does not load here.
    """
    wd = deployments.refresh().workflow(workflow)
    running = sorted(v for v in wd.deployments if wd.usable(v))
    out: list[tuple[int, type[Any]]] = []
    if running:
        for v in running:
            if registry is not None and v in registry.versions(workflow):
                wf = registry.get(workflow, v)
            else:
                wf = load_source(wd.deployments[v].source, workflow, v)
            if wf.config is not None:
                out.append((v, wf.config))
    elif registry is not None:
        for v in registry.versions(workflow):
            config = registry.get(workflow, v).config
            if config is not None:
                out.append((v, config))
    if not out:
        raise ConfigError(
            f"no running version of {workflow} declares a config type "
            "(Workflow(config=MyConfig)); deploy one that does first"
        )
    return out


def validate_everywhere(
    types: list[tuple[int, type[Any]]], workflow: str, document: dict[str, Any]
) -> None:
    """Decode ``document`` with every version's type.

    Raises:
        ConfigError: a version refuses it (named, with the field).
    """
    for version, config_type in types:
        try:
            decode_config(config_type, document)
        except ConfigError as exc:
            raise ConfigError(
                f"{workflow}@{version} refuses this config: {exc}; nothing was written"
            ) from None


def set_config(
    deployments: Deployments,
    workflow: str,
    document: dict[str, Any],
    *,
    canary: float | None = None,
    by: str | None = None,
    reason: str = "",
    registry: WorkflowRegistry | None = None,
) -> WorkflowConfig:
    """Store ``document`` as the next config version of ``workflow``.

    Args:
        deployments: The registry.
        workflow: Workflow name.
        document: The parsed document (a table of fields).
        canary: Give it to this share of instances (percent) instead of all.
        by: Who (default: the login name).
        reason: Why (kept in the history).
        registry: Code to validate with before the deployed sources.

    Returns:
        The workflow's config as read back after the write.

    Raises:
        ConfigError: a running version refuses it; nothing was written.
    """
    validate_everywhere(
        config_types(deployments, workflow, registry), workflow, document
    )
    data = canonical(document)
    bp = percent_to_bp(canary) if canary is not None else None
    user = by or default_user()

    def make(view: DeployView) -> list[Any]:
        wc = view.configs.get(workflow) or WorkflowConfig(workflow)
        version = wc.latest + 1
        if bp is None or bp == 10_000:
            return [
                ConfigChanged(
                    workflow, "set", version, data, version, None, 0, user, reason
                )
            ]
        return [
            ConfigChanged(
                workflow, "set", version, data, wc.current, version, bp, user, reason
            )
        ]

    return _change(deployments, workflow, make)


def promote_config(
    deployments: Deployments,
    workflow: str,
    *,
    by: str | None = None,
    reason: str = "",
) -> WorkflowConfig:
    """Give the canary config version to every instance.

    Raises:
        ConfigError: there is no canary.
    """
    user = by or default_user()

    def make(view: DeployView) -> list[Any]:
        wc = view.configs.get(workflow)
        if wc is None or wc.canary is None:
            raise ConfigError(
                f"{workflow} has no config canary to promote; set one with "
                f"nonstop config set {workflow} --file F --canary PCT"
            )
        return [
            ConfigChanged(workflow, "promote", 0, b"", wc.canary, None, 0, user, reason)
        ]

    return _change(deployments, workflow, make)


def canary_config(
    deployments: Deployments,
    workflow: str,
    version: int,
    percent: float,
    *,
    by: str | None = None,
    reason: str = "",
    registry: WorkflowRegistry | None = None,
) -> WorkflowConfig:
    """Give stored config ``version`` to ``percent`` of instances (a canary).

    The share of a canary already on ``version`` is changed; the current
    version stays. A rollout plan ramps a config this way.

    Raises:
        ConfigError: ``version`` is not stored or is current, another canary is
            in the way, ``percent`` is out of range, or a running version
            refuses the document; nothing was written.
    """
    bp = percent_to_bp(percent)
    user = by or default_user()
    types = config_types(deployments, workflow, registry)

    def make(view: DeployView) -> list[Any]:
        wc = view.configs.get(workflow) or WorkflowConfig(workflow)
        if version not in wc.versions or version == wc.current:
            raise ConfigError(
                f"{workflow} has no stored config v{version} other than the "
                f"current one (now {wc.describe()})"
            )
        if wc.canary is not None and wc.canary != version:
            raise ConfigError(
                f"{workflow} has config v{wc.canary} as a canary; promote or roll "
                "it back first"
            )
        if bp == 10_000:
            return [
                ConfigChanged(
                    workflow, "promote", 0, b"", version, None, 0, user, reason
                )
            ]
        validate_everywhere(types, workflow, wc.table(version))
        return [
            ConfigChanged(
                workflow, "canary", 0, b"", wc.current, version, bp, user, reason
            )
        ]

    return _change(deployments, workflow, make)


def rollback_config(
    deployments: Deployments,
    workflow: str,
    *,
    to: int | None = None,
    by: str | None = None,
    reason: str = "",
    registry: WorkflowRegistry | None = None,
) -> WorkflowConfig:
    """Go back to an earlier config version (drop a canary first).

    Args:
        deployments: The registry.
        workflow: Workflow name.
        to: The version to restore (default: off the canary, else the
            previous current version); 0 restores the type's defaults.
        by: Who.
        reason: Why.
        registry: Code to validate with before the deployed sources.

    Raises:
        ConfigError: nothing to roll back to, no such version, or a running
            version refuses it; nothing was written.
    """
    user = by or default_user()
    types = config_types(deployments, workflow, registry)

    def make(view: DeployView) -> list[Any]:
        # Decided on the fresh view: a change that won a race moves the target.
        wc = view.configs.get(workflow) or WorkflowConfig(workflow)
        target = to if to is not None else wc.rollback_target()
        if target is None:
            raise ConfigError(
                f"{workflow} has no earlier config version to roll back to "
                f"(now {wc.describe()}); pass --to N"
            )
        if target and target not in wc.versions:
            known = ", ".join(f"v{v}" for v in sorted(wc.versions)) or "none"
            raise ConfigError(
                f"{workflow} has no config v{target} (stored: {known}; v0 is the "
                "defaults)"
            )
        validate_everywhere(types, workflow, wc.table(target))
        return [
            ConfigChanged(workflow, "rollback", 0, b"", target, None, 0, user, reason)
        ]

    return _change(deployments, workflow, make)


def describe_change(wc: WorkflowConfig, change: ConfigChange) -> list[str]:
    """A history entry in words, with the diff of what instances read."""
    canary = (
        f", canary v{change.canary} at {change.canary_bp / 100:g} %"
        if change.canary is not None
        else ""
    )
    head = f"{change.action}: v{change.before} -> v{change.after}{canary}"
    if change.added:
        head += f" (adds v{change.added})"
    new = change.canary if change.canary is not None else change.after
    diff = diff_documents(wc.table(change.before), wc.table(new))
    return [head, *(f"  {d}" for d in diff)]


def _change(deployments: Deployments, workflow: str, make: Any) -> WorkflowConfig:
    deployments._change(config_stream(workflow), make)
    return deployments.view.configs[workflow]
