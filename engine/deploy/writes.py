"""The write half of the deployments registry: serialised appends, flags.

:class:`RegistryWrites` decides each change against a fresh view and appends
it at the registry stream's expected position, with the index entry of a new
stream in the same transaction. Routing changes of one workflow are
serialised on its stream: when two operators race, the loser's append fails,
nothing of it is written, and it raises
:class:`~engine.core.errors.DeployConflict` naming the change that won (it
never re-decides on routing it did not see). Flag changes, failure records and
migration audits retry on the fresh state instead.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Sequence
from typing import Any

from engine.core.codec import EventCodec
from engine.core.errors import (
    ConcurrencyConflict,
    DeployConflict,
    DeploySourceError,
    FlagError,
)
from engine.core.events import Metadata, now_micros
from engine.core.workflow import Workflow
from engine.deploy.events import (
    CONFIG_STREAM_PREFIX,
    DEPLOY_STREAM_PREFIX,
    FLAGS_STREAM,
    INDEX_STREAM,
    FlagChanged,
    InstancesMigrated,
    RegistryStream,
    deploy_stream,
)
from engine.deploy.flags import Flag, FlagKind
from engine.deploy.routing import Routing, percent_to_bp
from engine.deploy.view import DeployView
from engine.loading import import_object
from engine.store import EventStore, NewRecord

__all__ = ["ATTEMPTS", "RegistryWrites", "default_user", "flag_event", "load_source"]

ATTEMPTS = 8
"""Tries of a registry write that keeps losing races to other writers."""


def default_user() -> str:
    """Who is making a change when ``by`` is not given: ``$USER`` or the login."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def load_source(source: str, workflow: str, version: int) -> Workflow[Any]:
    """Import ``package.module:attr`` and check it is ``workflow@version``.

    The attribute is a :class:`Workflow` or a zero-argument callable returning
    one. Importing runs the module, which also registers its event types.

    Raises:
        DeploySourceError: the import failed or it is not that workflow version.
    """
    target = import_object(source, DeploySourceError)
    attr = source.partition(":")[2]
    if not isinstance(target, Workflow) and callable(target):
        try:
            target = target()
        except Exception as exc:  # user code
            raise DeploySourceError(
                source, f"calling {attr}() failed ({exc!r})"
            ) from None
    if not isinstance(target, Workflow):
        raise DeploySourceError(
            source, f"{attr} is a {type(target).__name__}, not a Workflow"
        )
    if (target.name, target.version) != (workflow, version):
        raise DeploySourceError(
            source, f"it defines {target.ref}, not {workflow}@{version}"
        )
    return target


class RegistryWrites:
    """Serialised writes of the registry (a base of ``Deployments``)."""

    store: EventStore
    codec: EventCodec
    _view: DeployView

    def refresh(self, exact: bool = False) -> DeployView:
        """Fold the registry events written since the last read (``Deployments``)."""
        raise NotImplementedError

    def set_flag(
        self,
        name: str,
        kind: FlagKind,
        *,
        enabled: bool = False,
        percent: float = 0.0,
        variants: Sequence[tuple[str, float]] = (),
        by: str | None = None,
        reason: str = "",
    ) -> Flag:
        """Define or change a flag (clears its kill switch).

        Raises:
            FlagError: the definition is malformed.
        """
        user = by or default_user()
        if not name or name != name.strip() or name.startswith("@"):
            raise FlagError(
                f"flag name {name!r} is empty, padded or starts with '@' "
                "(reserved for the engine's own recorded values)"
            )
        flag = Flag(
            name,
            kind,
            enabled,
            percent_to_bp(percent),
            tuple((v, percent_to_bp(w)) for v, w in variants),
        )
        action = "set"

        def make(view: DeployView) -> list[Any]:
            return [flag_event(flag, action, user, reason)]

        self._change(FLAGS_STREAM, make)
        return self._view.flags[name]

    def kill_flag(
        self,
        name: str,
        *,
        revive: bool = False,
        by: str | None = None,
        reason: str = "",
    ) -> Flag:
        """Turn flag ``name`` off for everyone (or, with ``revive``, back on).

        Raises:
            FlagError: no such flag.
        """
        user = by or default_user()

        def make(view: DeployView) -> list[Any]:
            known = view.flags.get(name)
            if known is None:
                choices = ", ".join(sorted(view.flags)) or "none"
                raise FlagError(
                    f"unknown flag {name!r} (defined: {choices}); define it "
                    "with nonstop flags set first"
                )
            flag = Flag(
                known.name,
                known.kind,
                known.enabled,
                known.percent_bp,
                known.variants,
                killed=not revive,
            )
            return [flag_event(flag, "revive" if revive else "kill", user, reason)]

        self._change(FLAGS_STREAM, make)
        return self._view.flags[name]

    # ---------------------------------------------------------- internal

    def _routing(self, workflow: str) -> Routing:
        r = self._view.workflow(workflow).routing
        assert r is not None
        return r

    def _change(self, stream: str, make: Callable[[DeployView], list[Any]]) -> None:
        """Decide events against a fresh view and append them at its position.

        A workflow stream is serialised: when its position moved under this
        command, the command fails with :class:`DeployConflict` instead of
        deciding again on routing its caller never saw. Other streams (flags)
        and a race on the index alone are retried on the fresh state.
        """
        for _ in range(ATTEMPTS):
            view = self.refresh(exact=True)
            decided_at = view.positions.get(stream, 0)
            audited = len(view.audit)
            events = make(view)
            try:
                self._write(self._batch(view, stream, events))
            except ConcurrencyConflict:
                view = self.refresh(exact=True)
                if stream.startswith(DEPLOY_STREAM_PREFIX) and (
                    view.positions.get(stream, 0) != decided_at
                ):
                    raise _lost_race(stream, view, audited) from None
                continue
            self.refresh(exact=True)
            return
        raise DeployConflict(
            f"the registry stream {stream!r} kept changing under this command "
            f"({ATTEMPTS} attempts); nothing was written: retry"
        )

    def record_migration(
        self,
        workflow: str,
        from_version: int,
        to_version: int,
        *,
        migrated: int,
        failed: int,
        mapper: str = "",
        by: str | None = None,
        reason: str = "",
    ) -> None:
        """Add a migration of running instances to the audit trail."""
        event = InstancesMigrated(
            workflow,
            from_version,
            to_version,
            migrated,
            failed,
            mapper,
            by or default_user(),
            reason,
        )
        stream = deploy_stream(workflow)
        for _ in range(ATTEMPTS):
            view = self.refresh(exact=True)
            try:
                self._write(self._batch(view, stream, [event]))
            except ConcurrencyConflict:
                continue
            self.refresh(exact=True)
            return
        raise DeployConflict(
            f"the registry stream {stream!r} kept changing while recording the "
            f"migration of {workflow} (v{from_version} -> v{to_version}); the "
            "instances are migrated, only the audit entry is missing: retry"
        )

    def _batch(
        self, view: DeployView, stream: str, events: list[Any]
    ) -> list[tuple[str, list[Any], int]]:
        """``events`` at the end of ``stream``, plus its index entry if new."""
        batch = [(stream, events, view.positions.get(stream, 0))]
        indexed = stream.startswith((DEPLOY_STREAM_PREFIX, CONFIG_STREAM_PREFIX))
        if indexed and stream not in view.streams:
            batch += self._index_entry(view, stream)
        return batch

    @staticmethod
    def _index_entry(view: DeployView, stream: str) -> list[tuple[str, list[Any], int]]:
        return [
            (
                INDEX_STREAM,
                [RegistryStream(stream)],
                view.positions.get(INDEX_STREAM, 0),
            )
        ]

    def _write(self, batch: list[tuple[str, list[Any], int]]) -> None:
        """Append each ``(stream, events, after)`` in one transaction."""
        now = now_micros()
        records = []
        for stream, events, after in batch:
            meta = Metadata(stream)
            for i, e in enumerate(events, start=1):
                name, data = self.codec.encode(e, meta, recorded_at=now)
                records.append(NewRecord(stream, after + i, name, data))
        self.store.append(records)


def _lost_race(stream: str, view: DeployView, audited: int) -> DeployConflict:
    workflow = stream.removeprefix(DEPLOY_STREAM_PREFIX)
    won = [a for a in view.audit[audited:] if a.subject == workflow]
    what = (
        "; ".join(
            f"{a.action} by {a.by}{f' ({a.reason})' if a.reason else ''}: {a.detail}"
            for a in won
        )
        or "a change"
    )
    routing = view.workflow(workflow).routing
    now = routing.describe() if routing is not None else "none"
    return DeployConflict(
        f"{workflow}'s deployments changed while this command ran ({what}); "
        f"nothing was written. Routing is now {now}: check it (nonstop versions "
        f"{workflow}) and run the command again if it still applies"
    )


def flag_event(flag: Flag, action: str, by: str, reason: str) -> FlagChanged:
    """The registry event of a flag change."""
    return FlagChanged(
        flag.name,
        action,
        flag.kind,
        flag.enabled,
        flag.percent_bp,
        list(flag.variants),
        flag.killed,
        by,
        reason,
    )
