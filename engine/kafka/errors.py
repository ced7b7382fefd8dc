"""Errors of the Kafka edge, all under :class:`~engine.errors.NonstopError`."""

from __future__ import annotations

from engine.errors import NonstopError

__all__ = [
    "AlreadyReplayed",
    "BrokerUnavailable",
    "DeadLetterNotFound",
    "MappingError",
    "MappingLoadError",
    "PublishBlocked",
    "PublishUsageError",
    "SkipRefused",
]


class BrokerUnavailable(NonstopError, ConnectionError):
    """The Kafka broker cannot be reached or started."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(
            f"Kafka broker {where} is unavailable: {reason}. Check the --kafka "
            "HOST:PORT and that the broker runs (or omit it where the command "
            "starts one itself)."
        )


class MappingLoadError(NonstopError, ValueError):
    """``--mapping MOD:ATTR`` does not name a callable."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(
            f"cannot load the mapping {spec!r}: {reason}. Pass --mapping "
            "MODULE:ATTRIBUTE naming a function message -> Start | Send | None"
        )


class MappingError(NonstopError, ValueError):
    """A mapping returned something other than ``Start``, ``Send`` or ``None``."""

    def __init__(self, got: object) -> None:
        self.got = got
        super().__init__(
            f"the mapping returned a {type(got).__name__} ({got!r:.80}); it must "
            "return engine.Start, engine.Send or None (to skip the message)"
        )


class DeadLetterNotFound(NonstopError, LookupError):
    """No dead letter has the requested id."""

    def __init__(self, letter_id: int) -> None:
        self.letter_id = letter_id
        super().__init__(
            f"no dead letter with id {letter_id}; list them with "
            "`nonstop deadletters list`"
        )


class AlreadyReplayed(NonstopError, ValueError):
    """A dead letter was replayed before; it is not produced twice."""

    def __init__(self, letter_id: int, topic: str) -> None:
        self.letter_id = letter_id
        self.topic = topic
        super().__init__(
            f"dead letter {letter_id} was already replayed to {topic!r}; "
            "`nonstop deadletters list --all` shows it"
        )


class PublishBlocked(NonstopError):
    """The publisher cannot publish an event; everything before it is published."""

    def __init__(
        self, publisher: str, global_position: int, where: str, reason: str
    ) -> None:
        self.publisher = publisher
        self.global_position = global_position
        self.where = where
        self.reason = reason
        super().__init__(
            f"{publisher} stopped at global position {global_position} ({where}): "
            f"{reason}. Everything before it is published. Fix the code that "
            "reads it, or skip it with `nonstop publish skip "
            f"{global_position} --topic TOPIC --reason WHY`"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.publisher, self.global_position, self.where, self.reason),
        )


class SkipRefused(NonstopError, ValueError):
    """``publish skip`` named a position that cannot be skipped."""

    def __init__(self, publisher: str, global_position: int, reason: str) -> None:
        self.publisher = publisher
        self.global_position = global_position
        self.reason = reason
        super().__init__(
            f"cannot skip global position {global_position} for {publisher}: {reason}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.publisher, self.global_position, self.reason))


class PublishUsageError(NonstopError, ValueError):
    """``nonstop publish`` without the options it needs."""

    def __init__(self, missing: str) -> None:
        self.missing = missing
        super().__init__(
            f"publish needs {missing}: nonstop publish --kafka HOST:PORT --topic T"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.missing,))
