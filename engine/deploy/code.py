"""Code identity of deployed versions: fingerprints recorded and compared.

``nonstop deploy`` records the fingerprint of a version's code
(:func:`engine.core.fingerprint.fingerprint`, with the upcasters of the event
types defined in the version's modules) in the registry. Engines compare it
with the code they loaded, at open and at every registry refresh: a version
this process runs with a different code is logged once, counted in
:data:`MISMATCHES` (exported as the ``nonstop_code_mismatch`` metric when
metrics are on) and shown in ``nonstop versions``.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.core.events import default_event_types
from engine.core.fingerprint import UpcasterStep, code_modules, fingerprint, short
from engine.core.workflow import Workflow, WorkflowRegistry
from engine.deploy.view import DeployView

__all__ = ["MISMATCHES", "CodeWatch", "upcaster_steps", "version_fingerprint"]

log = logging.getLogger("nonstop.deploy")

MISMATCHES: dict[tuple[str, int], tuple[str, str]] = {}
"""``(workflow, version) -> (recorded, loaded here)`` fingerprints, for every
version this process runs with a code the registry does not record."""


def upcaster_steps(wf: Workflow[Any], upcasters: Any = None) -> list[UpcasterStep]:
    """The upcaster steps of the event types defined in ``wf``'s modules.

    Args:
        wf: The workflow version.
        upcasters: An ``UpcasterRegistry`` (default: the process-wide one).
    """
    if upcasters is None:
        from upcasters import default_upcasters

        upcasters = default_upcasters()
    modules = code_modules(wf)
    names = {et.name for et in default_event_types() if et.cls.__module__ in modules}
    return [
        (u.type, u.from_version, u.fn)
        for u in upcasters.all_steps()
        if u.type in names or upcasters.resolve_name(u.type) in names
    ]


def version_fingerprint(wf: Workflow[Any], upcasters: Any = None) -> str:
    """The fingerprint of ``wf`` with the upcasters it reads through."""
    return fingerprint(wf, upcaster_steps(wf, upcasters))


class CodeWatch:
    """Compares the code loaded in a registry with the fingerprints recorded."""

    def __init__(self) -> None:
        self._mine: dict[tuple[str, int, int], str] = {}
        self._told: set[tuple[str, int, str, str]] = set()

    def local(self, wf: Workflow[Any]) -> str:
        """The fingerprint of ``wf`` (computed once per definition object)."""
        key = (wf.name, wf.version, id(wf))
        fp = self._mine.get(key)
        if fp is None:
            fp = self._mine[key] = version_fingerprint(wf)
        return fp

    def check(
        self, view: DeployView, registry: WorkflowRegistry
    ) -> list[tuple[str, int, str, str]]:
        """Log and count the versions ``registry`` runs with unrecorded code.

        Returns:
            The mismatches found for the first time, as ``(workflow, version,
            recorded, loaded)``: the caller records them in the registry.
        """
        new: list[tuple[str, int, str, str]] = []
        for wd in view.workflows.values():
            for d in wd.deployments.values():
                if not d.fingerprint or d.version not in registry.versions(d.workflow):
                    continue
                key = (d.workflow, d.version)
                mine = self.local(registry.get(d.workflow, d.version))
                if mine == d.fingerprint:
                    MISMATCHES.pop(key, None)
                    continue
                MISMATCHES[key] = (d.fingerprint, mine)
                told = (d.workflow, d.version, d.fingerprint, mine)
                if told not in self._told:
                    self._told.add(told)
                    new.append(told)
                    log.warning(
                        "%s@%s runs here with code %s, but the registry records %s: "
                        "this worker's code differs from the deployed one "
                        "(restart it on the deployed code, or redeploy)",
                        d.workflow,
                        d.version,
                        short(mine),
                        short(d.fingerprint),
                    )
        return new
