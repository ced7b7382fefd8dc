"""Scenario "upcast": replay where every event needs upcasting, against none.

The data is the batched replay scenario's (20,000 instances of 10 events in
PostgreSQL, read with the public ``Engine.get_many``, 1,000 ids per call),
written with the counter event ``bench.upcast.Tick`` at schema 1. The same
rows are then replayed by engines that differ only in the code they run:

- *no upcasting*: ``Tick`` is at schema 1, so every event takes the typed
  fast path (the baseline);
- *one upcast step*: ``Tick`` is at schema 2, so every event is read as plain
  data, goes through one upcaster and is converted to the struct;
- *three upcast steps*: ``Tick`` at schema 4, three upcasters per event;
- *current events, upcasters for other types*: ``Tick`` at schema 1 while the
  upcaster registry holds chains for other types, against an engine built with
  an empty registry: upcasters that do not apply must cost nothing.

Figures are rates (events/s, higher is better), so a bound on the time ratio
is written as its inverse on the rate ratio: time <= 1.25x is
``Target(0.8, ">=", against="no upcasting")``, time <= 1.6x is
``Target(0.625, ...)``; "not slower" allows 5 % of noise (>= 0.95).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import psycopg

from bench.harness import (
    PG_URL,
    BenchContext,
    Contender,
    Figure,
    Target,
    measure,
    store_url,
    timed,
)
from engine import (
    Context,
    Engine,
    EventCodec,
    EventTypeRegistry,
    Workflow,
    WorkflowRegistry,
    open_store,
)
from engine.core.events import Metadata, Started, now_micros
from engine.store import EventStore, NewRecord
from upcasters import UpcasterRegistry

__all__ = ["DESCRIPTION", "run"]

DESCRIPTION = """\
- **upcast** (`python -m bench --only upcast`): PostgreSQL replay of 20,000
  instances x 10 events (1,000 instances per query, as in the batched replay)
  where every stored event is one schema version behind the code (one upcaster
  per event: time at most 1.25x the same replay without upcasting, i.e. a rate
  ratio >= 0.8) or three versions behind (at most 1.6x, rate ratio >= 0.625);
  and replay of events at the current schema by an engine whose upcaster
  registry holds chains for other types, against one with no upcasters (not
  slower: rate ratio >= 0.95, the margin being measurement noise). Five
  interleaved repetitions instead of three, since these ratios sit near 1."""

TYPE = "bench.upcast.Tick"
STREAM_LEN = 10
BATCH = 1_000
NONE = "no upcasting (events at the current schema)"
EMPTY = "no upcaster registry"


class Tick1(msgspec.Struct, frozen=True):
    by: int


class Tick2(msgspec.Struct, frozen=True):
    by: int
    unit: str


class Tick4(msgspec.Struct, frozen=True):
    by: int
    unit: str
    source: str
    scale: int


class Total(msgspec.Struct, frozen=True):
    value: int = 0


def _evolve(state: Total, e: Any) -> Total:
    return Total(state.value + e.by)


def _registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(
        Workflow(
            name="bench-upcast",
            version=1,
            state_type=Total,
            initial=Total,
            decide=_decide,
            evolve=_evolve,
            status=lambda s: "running",
        )
    )
    return reg


def _decide(state: Total, cmd: Any, ctx: Context) -> list[Any]:
    return []


def _codec(cls: type[Any], schema: int) -> EventCodec:
    types = EventTypeRegistry()
    types.register(Started, "nonstop.Started")
    types.register(cls, TYPE, schema)
    return EventCodec(types)


def _steps(count: int) -> UpcasterRegistry:
    up = UpcasterRegistry()
    if count >= 1:
        up.add(TYPE, 1, lambda p: {**p, "unit": "piece"})
    if count >= 2:
        up.add(TYPE, 2, lambda p: {**p, "source": "bench"})
    if count >= 3:
        up.add(TYPE, 3, lambda p: {**p, "scale": 1})
    return up


def _unrelated() -> tuple[EventTypeRegistry, UpcasterRegistry]:
    """Chains for three other types, as a real app's registry would hold."""
    types = EventTypeRegistry()
    types.register(Started, "nonstop.Started")
    types.register(Tick1, TYPE, 1)
    up = UpcasterRegistry()
    for i in range(3):

        class Other(msgspec.Struct, frozen=True):
            x: int

        name = f"bench.upcast.Other{i}"
        types.register(Other, name, 3)
        up.add(name, 1, lambda p: p)
        up.add(name, 2, lambda p: p)
    up.rename_type("bench.upcast.Legacy", "bench.upcast.Other0")
    return types, up


def _populate(store: EventStore, instances: int) -> list[str]:
    codec = _codec(Tick1, 1)
    meta = Metadata("bench-upcast@1")
    now = now_micros()
    ids = [f"u{n:07d}" for n in range(instances)]
    batch: list[NewRecord] = []
    started = Started("bench-upcast", 1, "int", msgspec.msgpack.encode(0))
    for iid in ids:
        for pos in range(1, STREAM_LEN + 1):
            obj = started if pos == 1 else Tick1(1)
            name, data = codec.encode(obj, meta, recorded_at=now)
            batch.append(NewRecord(iid, pos, name, data))
        if len(batch) >= 5_000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    return ids


def _replay(
    store: EventStore, ids: list[str], make: Callable[[], Engine]
) -> Callable[[], tuple[int, float]]:
    async def go() -> int:
        engine = make()
        events = 0
        for i in range(0, len(ids), BATCH):
            loaded = await engine.get_many(ids[i : i + BATCH])
            for info in loaded.values():
                events += info.position
        assert info.state.value == STREAM_LEN - 1, info.state
        return events

    return lambda: timed(lambda: asyncio.run(go()))


def run(ctx: BenchContext) -> list[Figure]:
    """Measure replay with 0, 1 and 3 upcast steps per event, on PostgreSQL."""
    # Quick mode still replays 20,000 events: fewer leave nothing but the
    # fixed costs of an engine, and the ratios would say nothing.
    instances = 2_000 if ctx.quick else 20_000
    # Ratios near 1 drown in a shared machine's noise: more rounds (each is a
    # second or two) make the medians steadier.
    reps = max(ctx.reps, 3) if ctx.quick else max(ctx.reps, 5)
    schema = f"{ctx.schema}_upcast"  # its own rows: other scenarios read the log
    store = open_store(store_url(schema))
    try:
        ids = _populate(store, instances)
        reg = _registry()
        other_types, other_steps = _unrelated()

        def engine(codec: EventCodec, steps: UpcasterRegistry) -> Callable[[], Engine]:
            return lambda: Engine(store, reg, codec=codec, upcasters=steps)

        none = Contender(NONE, _replay(store, ids, engine(_codec(Tick1, 1), _steps(0))))
        one = Contender(
            "nonstop replay, one upcast step per event",
            _replay(store, ids, engine(_codec(Tick2, 2), _steps(1))),
        )
        three = Contender(
            "nonstop replay, three upcast steps per event",
            _replay(store, ids, engine(_codec(Tick4, 4), _steps(3))),
        )
        current = Contender(
            "nonstop replay, current events, upcasters for other types",
            _replay(store, ids, engine(EventCodec(other_types), other_steps)),
        )
        empty = Contender(
            EMPTY, _replay(store, ids, engine(_codec(Tick1, 1), UpcasterRegistry()))
        )
        n = f"{instances:,} instances x {STREAM_LEN} events"
        what = (
            f"a fresh Engine rebuilds {n} ({BATCH:,} streams per query) whose "
            "events were stored at Tick schema 1"
        )
        return [
            measure(
                "upcast-one",
                f"PostgreSQL: replay {n}, every event one schema behind",
                unit="events/s",
                what=f"{what}; the code is at schema 2 (one upcaster per event)",
                subject=one,
                baselines=[none],
                reps=reps,
                target=Target(0.8, ">=", against=NONE),
            ),
            measure(
                "upcast-three",
                f"PostgreSQL: replay {n}, every event three schemas behind",
                unit="events/s",
                what=f"{what}; the code is at schema 4 (three upcasters per event)",
                subject=three,
                baselines=[none],
                reps=reps,
                target=Target(0.625, ">=", against=NONE),
            ),
            measure(
                "upcast-current",
                f"PostgreSQL: replay {n} at the current schema, with upcasters "
                "for other types",
                unit="events/s",
                what=(
                    f"{what}, the current schema; the engine's upcaster registry "
                    "holds chains and a rename for three other types, the "
                    "baseline engine has none"
                ),
                subject=current,
                baselines=[empty],
                reps=reps,
                target=Target(0.95, ">=", against=EMPTY),
            ),
        ]
    finally:
        store.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
