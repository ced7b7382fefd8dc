"""Errors of the Kafka edge, all under :class:`~engine.errors.NonstopError`."""

from __future__ import annotations

from engine.errors import NonstopError

__all__ = [
    "AlreadyReplayed",
    "BrokerUnavailable",
    "DeadLetterNotFound",
    "MappingError",
    "MappingLoadError",
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
