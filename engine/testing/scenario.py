"""``given(workflow, events).when(command).then(events | rejected())``.

A test of one decision, pure: the given events are folded with the workflow's
``evolve`` from its ``initial`` state, the command is decided by its ``decide``
with a :class:`FixedContext` (a fixed clock, randomness and flag values, so the
events are known in advance), and the outcome is compared with what the test
expects. No store and no engine are involved.

Example:
    >>> given(orders_v1, [OrderPlaced("o1", 10, "ann", 0.0, "EUR")]).when(
    ...     Pay(10)
    ... ).then(PaymentReceived(10))
    >>> given(orders_v1, []).when(Pay(10)).then(rejected("cannot pay"))
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec

from engine.core.config import ConfigReader, decode_config
from engine.core.errors import CommandRejected
from engine.core.workflow import Context, Workflow, fold

__all__ = ["EPOCH", "FixedContext", "Rejected", "Scenario", "given", "rejected"]

S = TypeVar("S")

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""The time ``ctx.now()`` returns in a scenario unless told otherwise."""


class FixedContext(Context):
    """A decider context whose clock, randomness and flags are given.

    Each value read is recorded as the engine's context records it, so a
    history built with it replays like one the engine wrote.

    Args:
        instance_id: The instance being decided.
        workflow: ``name@version``.
        now: What ``ctx.now()`` returns.
        random: What ``ctx.random()`` returns.
        flags: Flag and variant values by name (others get their default).
        config: What ``ctx.config`` returns (recorded as config version 1);
            without it, the defaults of ``config_type`` (version 0).
        config_type: The workflow's config type (``Workflow.config``), for
            the defaults.
    """

    def __init__(
        self,
        instance_id: str,
        workflow: str,
        *,
        now: datetime = EPOCH,
        random: float = 0.5,
        flags: Mapping[str, Any] | None = None,
        config: Any = None,
        config_type: type[Any] | None = None,
    ) -> None:
        given = dict(flags or {})
        super().__init__(
            instance_id,
            workflow,
            flags=lambda kind, name, d: given.get(name, d),
            configs=_config_reader(config, config_type),
        )
        self._fixed: dict[str, Callable[[], Any]] = {
            "now": lambda: now.timestamp() * 1e6,
            "random": lambda: random,
            "uuid": lambda: (
                uuid.uuid5(
                    uuid.NAMESPACE_URL, f"{instance_id}/{len(self.recorded)}"
                ).hex
            ),
        }

    def _value(self, kind: str, make: Callable[[], Any]) -> Any:
        return super()._value(kind, self._fixed.get(kind, make))


def _config_reader(config: Any, config_type: type[Any] | None) -> ConfigReader | None:
    """``ctx.config`` of a test: the given config (v1) or the type's defaults (v0)."""
    if config is None and config_type is None:
        return None
    if config is not None:
        version, value = 1, config
    else:
        assert config_type is not None
        version, value = 0, decode_config(config_type, {})

    def read(_: int | None) -> tuple[int, Any]:
        return version, value

    return read


def rejected(match: str = "") -> Rejected:
    """Expect the command to be refused (``CommandRejected``).

    Args:
        match: Text the rejection's reason must contain (any reason if empty).
    """
    return Rejected(match)


@dataclass(frozen=True)
class Rejected:
    """The expectation that a command is rejected (see :func:`rejected`)."""

    match: str = ""
    """Text the reason must contain."""


@dataclass(frozen=True)
class Scenario(Generic[S]):
    """A workflow, the events that happened, and the command under test."""

    workflow: Workflow[S]
    """The version under test."""
    history: tuple[Any, ...]
    """The given events, oldest first."""
    options: dict[str, Any] = field(default_factory=dict)
    """``now``, ``random`` and ``flags`` for the :class:`FixedContext`."""
    command: Any = None
    """The command of :meth:`when`."""

    @property
    def state(self) -> S:
        """The state the given events fold into."""
        return fold(self.workflow, self.workflow.initial(), self.history)

    def when(self, command: Any) -> Scenario[S]:
        """The command to decide in the given state."""
        return Scenario(self.workflow, self.history, self.options, command)

    def then(self, *expected: Any) -> S:
        """Assert the outcome: exactly these events, or :func:`rejected`.

        The events are given one by one (``then(a, b)``) or as one list
        (``then([a, b])``); ``then()`` expects no event.

        Returns:
            The state after the decided events (the given state if rejected).

        Raises:
            AssertionError: the outcome differs; the message shows the given
                events, the command, what was expected and what happened.
        """
        if len(expected) == 1 and isinstance(expected[0], (list, tuple)):
            expected = tuple(expected[0])
        state = self.state
        ctx = FixedContext(
            "scenario",
            self.workflow.ref,
            config_type=self.workflow.config,
            **self.options,
        )
        try:
            events = list(self.workflow.decide(state, self.command, ctx))
        except CommandRejected as exc:
            return self._rejected(expected, exc, state)
        if len(expected) == 1 and isinstance(expected[0], Rejected):
            raise AssertionError(
                self._head() + f"expected it to be rejected, but it decided "
                f"{_show(events)}"
            )
        if events != list(expected):
            raise AssertionError(
                self._head()
                + f"expected {_show(expected)}\n  decided  {_show(events)}"
                + _first_difference(list(expected), events)
            )
        for e in events:
            _round_trip(self._head(), e)
        return fold(self.workflow, state, events)

    def _rejected(self, expected: Sequence[Any], exc: CommandRejected, state: S) -> S:
        wanted = expected[0] if len(expected) == 1 else None
        if not isinstance(wanted, Rejected):
            raise AssertionError(
                self._head() + f"expected {_show(expected)}\n  but it was rejected: "
                f"{exc.reason}"
            ) from None
        if wanted.match not in exc.reason:
            raise AssertionError(
                self._head() + f"expected a rejection containing {wanted.match!r}\n"
                f"  but the reason was {exc.reason!r}"
            ) from None
        return state

    def _head(self) -> str:
        return (
            f"{self.workflow.ref}: given {_show(self.history)}\n"
            f"  when {self.command!r}\n  "
        )


def given(
    workflow: Workflow[S], events: Sequence[Any] = (), **options: Any
) -> Scenario[S]:
    """Start a scenario: ``workflow`` after ``events`` (none: a new instance).

    Args:
        workflow: The workflow version under test.
        events: Events already recorded, oldest first.
        **options: ``now`` (a datetime), ``random`` (a float), ``flags`` (a
            mapping) and ``config`` (what ``ctx.config`` returns; the config
            type's defaults without it) for the decider's context
            (:class:`FixedContext`).
    """
    unknown = set(options) - {"now", "random", "flags", "config"}
    if unknown:
        raise TypeError(
            f"given() takes the options now, random, flags and config, not "
            f"{', '.join(sorted(unknown))}"
        )
    return Scenario(workflow, tuple(events), dict(options))


def _show(events: Sequence[Any]) -> str:
    return "[" + ", ".join(repr(e) for e in events) + "]" if events else "no events"


def _first_difference(expected: list[Any], decided: list[Any]) -> str:
    for i, (a, b) in enumerate(zip(expected, decided, strict=False)):
        if a != b:
            return f"\n  first difference at event {i}: {a!r} != {b!r}"
    return f"\n  expected {len(expected)} events, decided {len(decided)}"


def _round_trip(head: str, event: Any) -> None:
    """An event must come back equal from its stored encoding."""
    try:
        back = msgspec.msgpack.decode(msgspec.msgpack.encode(event), type=type(event))
    except (msgspec.EncodeError, msgspec.ValidationError, TypeError) as exc:
        raise AssertionError(
            head + f"the decided event {event!r} cannot be stored: {exc}"
        ) from None
    if back != event:
        raise AssertionError(
            head + f"the decided event {event!r} reads back as {back!r} from storage"
        )
