"""Reading a projection's events: the recorded time of a row, undecodable rows.

A projection that takes undecodable events (``undecodable=True``) receives an
:class:`~projections.Undecodable` in place of the payload it could not read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import msgspec

from engine.core.errors import EventDecodeError
from engine.core.events import Envelope, RecordedEvent, now_micros
from engine.store import Record
from projections._api import Undecodable

__all__ = ["recorded_at", "tolerant", "undecodable"]

_header = msgspec.msgpack.Decoder(Envelope[msgspec.Raw])


def undecodable(r: Record, error: EventDecodeError) -> RecordedEvent:
    """What a projection taking undecodable events receives for ``r``."""
    return RecordedEvent(
        r.stream_id,
        r.position,
        r.global_position,
        r.type,
        0,
        0,
        Undecodable(error),
        recorded_at(r.data),
        "",
        None,
        None,
        None,
        None,
    )


def tolerant(
    decode_many: Callable[[Iterable[Record]], Iterator[RecordedEvent]],
    records: Sequence[Record],
) -> Iterator[RecordedEvent]:
    """``decode_many(records)``, an undecodable record passed on as such."""
    it = iter(records)
    last: list[Record] = []

    def feed() -> Iterator[Record]:
        for r in it:
            last[:] = [r]
            yield r

    while True:
        try:
            yield from decode_many(feed())
            return
        except EventDecodeError as exc:  # raised while decoding last[0]
            yield undecodable(last[0], exc)


def recorded_at(data: bytes) -> int:
    try:
        return _header.decode(data).recorded_at
    except msgspec.DecodeError:
        return now_micros()
