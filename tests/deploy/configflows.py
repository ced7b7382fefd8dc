"""A small workflow with a typed config, for the config tests (importable sources).

``gate@1`` reads its pinned config (``ctx.config``) and a live flag; ``gate@2``
also reads the latest config (``ctx.config_latest``) and has a config type with
one more field. ``old_registry()`` is a ``gate@1`` on older code whose config
type lacks ``note`` and refuses unknown fields, as a not-yet-updated engine.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from engine import Context, Status, Workflow, WorkflowRegistry, event


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The gate's config."""

    threshold: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 100
    countries: tuple[str, ...] = ()
    note: str = ""

    def validate(self) -> list[str]:
        """Cross-field rules."""
        if len(set(self.countries)) != len(self.countries):
            return [f"countries {list(self.countries)} must not repeat"]
        return []


class Review(msgspec.Struct, frozen=True):
    """A nested section of the v2 config."""

    above: int = 1000


class LimitsV2(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The v2 config: a nested section added."""

    threshold: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 100
    countries: tuple[str, ...] = ()
    note: str = ""
    review: Review = msgspec.field(default_factory=Review)


class OldLimits(msgspec.Struct, frozen=True):
    """The config type of an older build of gate@1: no ``note`` yet."""

    threshold: Annotated[int, msgspec.Meta(ge=0)] = 100
    countries: tuple[str, ...] = ()


class Begin(msgspec.Struct, frozen=True):
    """Start input."""


class Check(msgspec.Struct, frozen=True):
    """Check an amount against the threshold."""

    amount: int


@event("configtest.Checked")
class Checked(msgspec.Struct, frozen=True):
    amount: int
    threshold: int
    latest: int = -1
    live: bool = False


class Gate(msgspec.Struct, frozen=True):
    """The state: every check and the threshold it used."""

    checks: tuple[tuple[int, int, int, bool], ...] = ()


def _evolve(state: Gate, e: object) -> Gate:
    if isinstance(e, Checked):
        row = (e.amount, e.threshold, e.latest, e.live)
        return Gate((*state.checks, row))
    return state


def _status(state: Gate) -> Status:
    return "running"


def _decider(version: int) -> Any:
    def decide(state: Gate, cmd: object, ctx: Context) -> list[object]:
        if isinstance(cmd, Begin):
            return []
        assert isinstance(cmd, Check)
        threshold = ctx.config.threshold
        latest = ctx.config_latest.threshold if version >= 2 else -1
        live = ctx.flag("gate-open", live=True)
        return [Checked(cmd.amount, threshold, latest, live)]

    return decide


def _make(version: int, config: type[Any]) -> Workflow[Gate]:
    return Workflow(
        name="gate",
        version=version,
        state_type=Gate,
        initial=Gate,
        decide=_decider(version),
        evolve=_evolve,
        status=_status,
        config=config,
    )


v1 = _make(1, Limits)
v2 = _make(2, LimitsV2)
old_v1 = _make(1, OldLimits)


def registry() -> WorkflowRegistry:
    """gate@1 and gate@2 on current code."""
    reg = WorkflowRegistry()
    reg.register(v1, v2)
    return reg


def old_registry() -> WorkflowRegistry:
    """gate@1 on older code (its config type has no ``note``)."""
    reg = WorkflowRegistry()
    reg.register(old_v1)
    return reg
