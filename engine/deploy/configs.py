"""The config an engine serves: typed, decoded by its own code, last good kept.

Config documents arrive with the registry refresh (the same poll, the same
index stream, no scan of the log). Each workflow version of this engine
decodes a document with its own config type once (cached); when its code
cannot decode the version it should now serve (an engine on older code), it
keeps serving the last version it could decode, logs the refusal, counts it
in :attr:`ConfigResolver.refusals`, and reports what it runs in the
``nonstop.config-status:WORKFLOW`` stream (written only when that changes),
which ``nonstop config status`` reads.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from engine.core.config import decode_config
from engine.core.errors import ConcurrencyConflict, ConfigError, NonstopError
from engine.core.events import Metadata, now_micros
from engine.core.workflow import Workflow
from engine.deploy.configview import WorkflowConfig
from engine.deploy.events import ConfigReported, config_status_stream
from engine.store import EventStore, NewRecord

if TYPE_CHECKING:
    from engine.deploy.registry import Deployments

__all__ = ["ConfigResolver", "read_reports", "refusal_totals"]

log = logging.getLogger("nonstop.config")
_RESOLVERS: weakref.WeakSet[ConfigResolver] = weakref.WeakSet()


def refusal_totals() -> dict[tuple[str, int], int]:
    """Refusals of every live resolver of this process, by (workflow, version)."""
    out: dict[tuple[str, int], int] = {}
    for resolver in list(_RESOLVERS):
        for key, n in resolver.refusals.items():
            out[key] = out.get(key, 0) + n
    return out


_Decoded = Any  # a typed config, or the ConfigError its code raised


class ConfigResolver:
    """Typed config per ``workflow@version`` for one engine.

    Args:
        deployments: The registry the engine routes by.
    """

    def __init__(self, deployments: Deployments) -> None:
        self.deployments = deployments
        self._decoded: dict[tuple[str, int, int], _Decoded] = {}
        self._good: dict[tuple[str, int], int] = {}
        self._reported: dict[str, tuple[int, int]] = {}
        self.refusals: dict[tuple[str, int], int] = {}
        """How often each config version was refused here, by (workflow, version)."""
        _RESOLVERS.add(self)

    def config(
        self, wf: Workflow[Any], key: str, version: int | None
    ) -> tuple[int, Any]:
        """``(version, typed config)`` for routing key ``key`` (see ConfigReader).

        Raises:
            ConfigError: ``version`` was given and this code cannot decode it.
        """
        wc = self.deployments.view.configs.get(wf.name)
        want = version
        if want is None:
            want = wc.version_for(key) if wc is not None else 0
        got = self._decoded.get((wf.name, wf.version, want))
        if got is not None and not isinstance(got, ConfigError):
            if version is None:  # the last good one, should a newer one fail
                self._good[(wf.name, wf.version)] = want
            return want, got  # decoded before: the common case
        if version is not None:
            got = self._decode(wf, wc, version)
            if isinstance(got, ConfigError):
                raise ConfigError(
                    f"{wf.ref} cannot decode config v{version}, which the instance "
                    f"recorded: {got}"
                )
            return version, got
        served = self._serve(wf, wc, want)
        return served, self._decode(wf, wc, served)

    def _serve(self, wf: Workflow[Any], wc: WorkflowConfig | None, want: int) -> int:
        """``want``, or the last good version when this code refuses ``want``."""
        if not isinstance(self._decode(wf, wc, want), ConfigError):
            self._good[(wf.name, wf.version)] = want
            return want
        good = self._good.get((wf.name, wf.version))
        if good is not None:
            return good
        for v in range(want - 1, -1, -1):
            if (wc is None or v in wc.versions or v == 0) and not isinstance(
                self._decode(wf, wc, v), ConfigError
            ):
                self._good[(wf.name, wf.version)] = v
                return v
        raise ConfigError(f"{wf.ref} can decode no version of its config")

    def _decode(
        self, wf: Workflow[Any], wc: WorkflowConfig | None, version: int
    ) -> _Decoded:
        cache = (wf.name, wf.version, version)
        if cache in self._decoded:
            return self._decoded[cache]
        assert wf.config is not None
        try:
            if version == 0:
                got: _Decoded = decode_config(wf.config, {})
            elif wc is None or version not in wc.versions:
                got = ConfigError(f"config v{version} of {wf.name} is not stored")
            else:
                got = decode_config(wf.config, wc.versions[version].document)
        except ConfigError as exc:
            got = exc
            self.refusals[(wf.name, version)] = (
                self.refusals.get((wf.name, version), 0) + 1
            )
            log.error(
                "%s cannot decode config v%s, keeps the last good one: %s",
                wf.ref,
                version,
                exc,
            )
        self._decoded[cache] = got
        return got

    def check(self) -> None:
        """After a refresh: decode what each local version should serve, report it.

        Called with the registry's lock held; writes a report only when what
        this engine serves or refuses changed.
        """
        reg = self.deployments.attached
        if reg is None:
            return
        for name, wc in self.deployments.view.configs.items():
            applied, refused, error = wc.current, 0, ""
            for version in reg.versions(name):
                wf = reg.get(name, version)
                if wf.config is None:
                    continue
                for want in {wc.current, wc.canary or wc.current}:
                    got = self._decode(wf, wc, want)
                    if isinstance(got, ConfigError):
                        refused, error = max(refused, want), str(got)
                        applied = min(applied, self._serve(wf, wc, want))
            if self._reported.get(name) != (applied, refused) and self._report(
                ConfigReported(name, self._worker, applied, refused, error)
            ):
                self._reported[name] = (applied, refused)

    @property
    def _worker(self) -> str:
        return self.deployments.worker

    def _report(self, report: ConfigReported) -> bool:
        store = self.deployments.store
        stream = config_status_stream(report.workflow)
        codec = self.deployments.codec
        for _ in range(8):
            after = store.stream_position(stream)
            name, data = codec.encode(
                report, Metadata(stream), recorded_at=now_micros()
            )
            try:
                store.append([NewRecord(stream, after + 1, name, data)])
                return True
            except ConcurrencyConflict:
                continue
            except NonstopError as exc:  # the store is down: the next refresh retries
                log.warning("could not report config of %s: %s", report.workflow, exc)
                return False
        return False


def read_reports(
    store: EventStore, workflow: str, codec: Any
) -> dict[str, tuple[int, ConfigReported]]:
    """The last report of each engine on ``workflow``'s config, by worker.

    Returns:
        ``{worker: (recorded at in µs, report)}``.
    """
    out: dict[str, tuple[int, ConfigReported]] = {}
    for rec in store.read_stream(config_status_stream(workflow)):
        for e in codec.decode(
            rec.stream_id, rec.position, rec.global_position, rec.type, rec.data
        ):
            if isinstance(e.event, ConfigReported):
                out[e.event.worker] = (e.recorded_at, e.event)
    return out
