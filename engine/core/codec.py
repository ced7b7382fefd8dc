"""The event codec: envelopes in and out, upcasting on read.

The type name travels beside the envelope (it is the stored record's topic), so
the reader picks a typed decoder for it before it looks at the bytes: events at
the current schema version decode in one typed pass, straight into their
struct. Older schemas (or renamed types) go through the upcaster chains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from engine.core.errors import EventDecodeError, EventFromNewerCode
from engine.core.events import (
    SYSTEM_TYPES,
    Envelope,
    EventTypeRegistry,
    Metadata,
    RecordedEvent,
    default_event_types,
    stored_schema,
)

if TYPE_CHECKING:  # upcasters imports engine.core: no import cycle at run time
    from upcasters.chain import UpcasterRegistry

__all__ = ["EventCodec", "dropped"]

_encoder = msgspec.msgpack.Encoder()
_plain_envelope = msgspec.msgpack.Decoder(Envelope[Any])
_plain_envelopes = msgspec.msgpack.Decoder(list[Envelope[Any]])
_Steps = tuple[Callable[..., Any], ...]
_Chain = tuple[str, _Steps]
_UNPLANNED: Any = object()


class EventCodec:
    """Encodes events into envelopes and decodes them back.

    Upcasting hooks in through :meth:`set_upcaster`: when a stored event's schema
    version is older than the registered one (or its type name was renamed), the
    payload is handed to the upcaster as a plain dict before the typed conversion.
    """

    def __init__(self, types: EventTypeRegistry | None = None) -> None:
        self.types = types if types is not None else default_event_types()
        self._upcast: (
            Callable[[str, int, dict[str, Any]], list[tuple[str, dict[str, Any]]]]
            | None
        ) = None
        self._planner: Callable[[str, int], _Chain | None] | None = None
        self._plans: dict[tuple[str, int | None], tuple[type[Any], _Steps] | None] = {}
        self._lists: dict[type[Any], Any] = {}

    def set_upcaster(
        self,
        upcast: Callable[[str, int, dict[str, Any]], list[tuple[str, dict[str, Any]]]],
    ) -> None:
        """Install the function that turns an old payload into current ones.

        It receives the stored type name, stored schema version and payload, and
        returns ``(type name, payload)`` pairs at the current schema (none to drop
        the event, several to split it).
        """
        self._upcast = upcast

    def use_upcasters(self, registry: UpcasterRegistry) -> None:
        """Check ``registry``'s chains against the registered types and install it.

        Raises:
            UpcastChainError: a chain has a gap, a missing step or a wrong end.
        """
        current = {
            et.name: et.schema for et in self.types if et.name not in SYSTEM_TYPES
        }
        registry.check(current)
        self._plans = {}
        self._lists = {}
        if not registry.steps_count() and not registry.renames():
            self._upcast = None
            self._planner = None
            return
        self.set_upcaster(registry.compile(current))
        self._planner = lambda name, schema: registry.plan(name, schema, current)

    def encode(
        self,
        obj: msgspec.Struct,
        meta: Metadata,
        *,
        recorded_at: int,
        ctx: list[Any] | None = None,
        key: str | None = None,
        digest: int | None = None,
    ) -> tuple[str, bytes]:
        """Encode one event; returns its type name and envelope bytes.

        ``ctx`` and ``key`` go with the first event of a decision only,
        ``digest`` (of the state after the decision) with its last.
        """
        et = self.types.of(obj)
        env = Envelope(  # positional: twice as fast as keywords (once per event)
            et.schema,
            obj,
            recorded_at,
            meta.workflow,
            meta.command_id,
            meta.correlation_id,
            meta.causation_id,
            ctx,
            key,
            digest,
        )
        return et.name, _encoder.encode(env)

    def _current(self, type_name: str, data: bytes) -> Envelope[Any] | None:
        """The envelope decoded in one typed pass, if it is at the current schema."""
        et = self.types._by_name.get(type_name)
        if et is None or stored_schema(data) != et.schema:
            return None
        try:
            env = et.decoder.decode(data)
        except msgspec.DecodeError:
            return None
        return env if env.schema == et.schema else None

    def decode_payloads(
        self, stream_id: str, position: int, type_name: str, data: bytes
    ) -> tuple[list[Any], str | None]:
        """Decode the payload(s) of a stored event and its command id, for replay.

        Returns a list because an upcaster may split an event or drop it.

        Raises:
            EventDecodeError: the bytes fit neither the current struct nor any
                upcaster chain.
        """
        env = self._current(type_name, data)
        if env is not None:
            return [env.data], env.command_id
        payloads, command_id, _ = self.decode_old(stream_id, position, type_name, data)
        return payloads, command_id

    def decode_old(
        self, stream_id: str, position: int, type_name: str, data: bytes
    ) -> tuple[list[Any], str | None, list[Any] | None]:
        """:meth:`decode_payloads` for an event known not to take the fast path.

        Returns the payloads, the command id and the recorded context (so a
        replay reads the envelope once).

        A plain chain (one event in, one out) runs as one decode, the steps and
        one typed conversion; anything unusual (a split, a drop, an error) goes
        the general way, which reports errors with the event's coordinates.
        """
        key = (type_name, stored_schema(data))
        plan = self._plans.get(key, _UNPLANNED)
        if plan is _UNPLANNED:
            plan = self._plans[key] = self._plan(*key)
        if plan is not None:
            try:
                env = _plain_envelope.decode(data)
                payload = env.data
                for step in plan[1]:
                    payload = step(payload)
                    if type(payload) is not dict:
                        break
                else:
                    return [msgspec.convert(payload, plan[0])], env.command_id, env.ctx
            except Exception:
                # The general path below runs it again and reports the failure
                # with the event's coordinates (upcasters are pure).
                pass
        header, items = self._slow(stream_id, position, type_name, data)
        return [p for _, p in items], header.command_id, header.ctx

    def decode_run(
        self, type_name: str, schema: int, datas: list[bytes]
    ) -> list[tuple[Any, str | None, list[Any] | None]] | None:
        """Decode a run of stored events of one type and schema, behind the code.

        The batched form of :meth:`decode_old` for a plain chain (one event
        in, one out): the envelopes are decoded in one msgspec call (one
        msgpack array of them), each payload goes through the steps, and the
        results are converted to the struct in one more call.

        Returns:
            Each event's payload, command id and recorded context, in order;
            None when the run needs the general path (no plain chain, a split
            or a drop, a failure): decode its events one by one then, which
            reports an error with the event's coordinates.
        """
        key = (type_name, schema)
        plan = self._plans.get(key, _UNPLANNED)
        if plan is _UNPLANNED:
            plan = self._plans[key] = self._plan(*key)
        if plan is None:
            return None
        cls, steps = plan
        many = self._lists.get(cls)
        if many is None:
            many = self._lists[cls] = list[cls]  # type: ignore[valid-type]
        try:
            n = len(datas)
            envs = _plain_envelopes.decode(
                b"\xdd" + n.to_bytes(4, "big") + b"".join(datas)
            )
            payloads = []
            for env in envs:
                payload = env.data
                for step in steps:
                    payload = step(payload)
                    if type(payload) is not dict:
                        return None
                payloads.append(payload)
            objs = msgspec.convert(payloads, many)
        except Exception:  # the general path reports it with the coordinates
            return None
        return [(o, e.command_id, e.ctx) for o, e in zip(objs, envs, strict=True)]

    def _plan(
        self, type_name: str, schema: int | None
    ) -> tuple[type[Any], _Steps] | None:
        if schema is None or self._planner is None:
            return None
        chain = self._planner(type_name, schema)
        if chain is None or chain[0] not in self.types:
            return None
        return self.types.by_name(chain[0]).cls, chain[1]

    def decode(
        self,
        stream_id: str,
        position: int,
        global_position: int,
        type_name: str,
        data: bytes,
    ) -> list[RecordedEvent]:
        """Decode a stored event with its metadata (for history and publishing)."""
        env = self._current(type_name, data)
        if env is not None:
            return [
                _recorded(
                    stream_id,
                    position,
                    global_position,
                    type_name,
                    env,
                    env.schema,
                    env.data,
                )
            ]
        header, items = self._slow(stream_id, position, type_name, data)
        if not items:
            _note_drop(stream_id, position)
        return [
            _recorded(
                stream_id,
                position,
                global_position,
                name,
                header,
                self.types.by_name(name).schema,
                payload,
            )
            for name, payload in items
        ]

    def decode_many(
        self, records: Iterable[tuple[str, int, int, str, bytes]]
    ) -> Iterator[RecordedEvent]:
        """Decode stored events in order: what :meth:`decode` gives, one by one.

        ``records`` are ``(stream_id, position, global_position, type, data)``
        tuples (the store's records). An event at its current schema takes a
        tight loop of one typed msgspec pass; any other goes through
        :meth:`decode` (upcasting; a split or a dropped event). Events are
        decoded as the iterator is consumed.

        Raises:
            EventDecodeError: when the iteration reaches an event that fits
                neither its struct nor an upcaster chain (named in the error).
        """
        by_name = self.types._by_name
        recorded = RecordedEvent
        for stream_id, position, global_position, type_name, data in records:
            et = by_name.get(type_name)
            # The inlined test of stored_schema(data) == et.schema (hot loop).
            if (
                et is not None
                and len(data) > 1
                and data[0] & 0xF0 == 0x90
                and et.schema < 0x80
                and data[1] == et.schema
            ):
                try:
                    env = et.decoder.decode(data)
                except msgspec.DecodeError:
                    pass  # decode() below reports it with the event's coordinates
                else:
                    yield recorded(  # positional arguments: cheaper than keywords
                        stream_id,
                        position,
                        global_position,
                        type_name,
                        env.schema,
                        env.schema,
                        env.data,
                        env.recorded_at,
                        env.workflow,
                        env.command_id,
                        env.correlation_id,
                        env.causation_id,
                        env.ctx,
                    )
                    continue
            yield from self.decode(
                stream_id, position, global_position, type_name, data
            )

    def _slow(
        self, stream_id: str, position: int, type_name: str, data: bytes
    ) -> tuple[Envelope[Any], list[tuple[str, Any]]]:
        try:
            header = _plain_envelope.decode(data)  # one pass, payload as plain data
            payload = header.data
        except msgspec.DecodeError as exc:
            raise EventDecodeError(
                stream_id, position, type_name, f"not a nonstop envelope ({exc})"
            ) from None
        et = self.types._by_name.get(type_name)
        if et is not None and header.schema > et.schema:
            raise EventFromNewerCode(
                stream_id, position, type_name, header.schema, et.schema
            )
        if et is not None and header.schema == et.schema:
            items: list[tuple[str, Any]] = [(type_name, payload)]
        elif self._upcast is not None:
            try:
                items = list(self._upcast(type_name, header.schema, payload))
            except Exception as exc:  # an upcaster is user code
                raise EventDecodeError(
                    stream_id,
                    position,
                    type_name,
                    f"upcaster for schema {header.schema} failed: {exc!r}",
                ) from exc
        elif et is None:
            raise EventDecodeError(
                stream_id, position, type_name, "the type name is not registered"
            )
        else:
            raise EventDecodeError(
                stream_id,
                position,
                type_name,
                f"stored schema {header.schema} differs from the registered schema "
                f"{et.schema} and no upcaster is installed",
            )
        out: list[tuple[str, Any]] = []
        for name, item in items:
            target = self.types._by_name.get(name)
            if target is None:
                raise EventDecodeError(
                    stream_id,
                    position,
                    type_name,
                    f"upcast to unregistered type {name!r}",
                )
            try:
                out.append((name, msgspec.convert(item, target.cls)))
            except msgspec.ValidationError as exc:
                raise EventDecodeError(
                    stream_id,
                    position,
                    type_name,
                    f"payload (schema {header.schema}) does not fit "
                    f"{name!r} schema {target.schema}: {exc}",
                ) from None
        return header, out


def _recorded(
    stream_id: str,
    position: int,
    global_position: int,
    type_name: str,
    env: Envelope[Any],
    schema: int,
    payload: Any,
) -> RecordedEvent:
    return RecordedEvent(
        stream_id=stream_id,
        position=position,
        global_position=global_position,
        type=type_name,
        schema=schema,
        stored_schema=env.schema,
        event=payload,
        recorded_at=env.recorded_at,
        workflow=env.workflow,
        command_id=env.command_id,
        correlation_id=env.correlation_id,
        causation_id=env.causation_id,
        ctx=env.ctx,
    )


# Events an upcaster dropped, as the most recent run of positions per stream
# (bounded): a reader of decoded events tells such a hole from a gap in the
# stored positions. Decoding is lazy and in order, so a drop is noted just
# before the reader sees the stream's next event.
_DROPS: dict[str, tuple[int, int]] = {}
_MAX_DROPS = 4096


def _note_drop(stream_id: str, position: int) -> None:
    run = _DROPS.pop(stream_id, None)
    if run is not None and run[1] == position - 1:
        _DROPS[stream_id] = (run[0], position)
    else:
        _DROPS[stream_id] = (position, position)
    if len(_DROPS) > _MAX_DROPS:
        del _DROPS[next(iter(_DROPS))]


def dropped(stream_id: str, first: int, last: int) -> bool:
    """Whether an upcaster dropped every event of positions ``first..last``."""
    run = _DROPS.get(stream_id)
    return run is not None and run[0] <= first and run[1] >= last
