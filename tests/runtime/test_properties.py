"""Laws of the runtime, checked on random command sequences.

(a) replay determinism: the state a fresh engine folds from the log is the live one;
(b) a restart anywhere in a sequence changes nothing;
(c) concurrent writers never lose or duplicate an event.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine, NonstopError, open_store
from engine.demo.orders import CheckFraud, Pay, PlaceOrder, Ship
from engine.demo.orders import registry as orders_registry
from tests.runtime import counter
from tests.runtime.counter import Begin, Finish, Increment

PROPS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ------------------------------------------------- (a) replay determinism

_order_cmds = st.one_of(
    st.builds(Pay, st.sampled_from([0, 5, 10])),
    st.builds(Ship),
    st.builds(CheckFraud),
    st.builds(PlaceOrder, st.just("again"), st.integers(-1, 3)),
)
_order_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("start"),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([1, 2]),
            st.sampled_from([0, 10]),
        ),
        st.tuples(
            st.just("send"),
            st.sampled_from(["a", "b", "c", "nope"]),
            _order_cmds,
            st.sampled_from([None, "k1", "k2"]),
        ),
    ),
    max_size=25,
)


async def _run_orders(steps: list[tuple[Any, ...]]) -> None:
    store = open_store("memory://")
    live = Engine(store, orders_registry())
    for step in steps:
        try:
            if step[0] == "start":
                _, iid, version, amount = step
                await live.start(
                    "orders", PlaceOrder(iid, amount), instance_id=iid, version=version
                )
            else:
                _, iid, cmd, cid = step
                await live.send(iid, cmd, command_id=cid)
        except NonstopError:
            pass
    fresh = Engine(store, orders_registry())
    live_infos = await live.instances()
    assert await fresh.instances() == live_infos
    for info in live_infos:
        assert await fresh.get(info.instance_id) == info
        assert store.stream_position(info.instance_id) == info.position


@PROPS
@given(_order_steps)
def test_replayed_state_equals_live_state(steps: list[tuple[Any, ...]]) -> None:
    asyncio.run(_run_orders(steps))


# --------------------------------------------------- (b) restart anywhere

_counter_steps = st.lists(
    st.tuples(
        st.sampled_from(["x", "y"]),
        st.one_of(st.builds(Increment, st.integers(-1, 3)), st.builds(Finish)),
        st.sampled_from([None, "c1", "c2", "c3"]),
    ),
    max_size=20,
)


async def _run_counter(
    url: str, steps: list[tuple[str, Any, str | None]], restart_at: int | None
) -> tuple[list[Any], list[list[tuple[Any, ...]]]]:
    eng = Engine(url, counter.registry(snapshot_every=3))
    answers: list[Any] = []
    for iid in ("x", "y"):
        await eng.start("counter", Begin(), instance_id=iid, command_id=f"s-{iid}")
    for i, (iid, cmd, cid) in enumerate(steps):
        if i == restart_at:
            await eng.close()
            eng = Engine(url, counter.registry(snapshot_every=3))
            # A start repeated after the restart is recognised from the log.
            again = await eng.start(
                "counter", Begin(), instance_id="x", command_id="s-x"
            )
            assert not again.applied
        try:
            info = await eng.send(iid, cmd, command_id=cid)
            answers.append((info.state, info.position, info.applied))
        except NonstopError as exc:
            answers.append(type(exc).__name__)
    infos = [await eng.get(iid) for iid in ("x", "y")]
    answers.append([(i.state, i.position, i.status) for i in infos])
    histories = [
        [
            (h.position, h.type, h.event, h.command_id, h.workflow)
            for h in await eng.history(iid)
        ]
        for iid in ("x", "y")
    ]
    await eng.close()
    return answers, histories


@PROPS
@given(_counter_steps, st.data())
def test_restart_changes_nothing(
    steps: list[tuple[str, Any, str | None]], data: st.DataObject
) -> None:
    restart_at = data.draw(st.integers(0, len(steps)), label="restart_at")
    with tempfile.TemporaryDirectory() as tmp:
        straight = asyncio.run(
            _run_counter(f"sqlite:///{Path(tmp) / 'a.db'}", steps, None)
        )
        restarted = asyncio.run(
            _run_counter(f"sqlite:///{Path(tmp) / 'b.db'}", steps, restart_at)
        )
    assert restarted == straight


# ------------------------------------------- (c) concurrent writers, once


async def _race(url: str, plan: list[int], share: bool) -> None:
    first = open_store(url)
    second = first if share else open_store(url)
    engines = [
        Engine(first, counter.registry(), max_attempts=1000),
        Engine(second, counter.registry(), max_attempts=1000),
    ]
    try:
        await engines[0].start("counter", Begin(), instance_id="c")
        await engines[1].get("c")  # both caches hold the same, soon stale, state
        results = await asyncio.gather(
            *(
                engines[who].send("c", Increment(), command_id=f"k{i}")
                for i, who in enumerate(plan)
            ),
            return_exceptions=True,
        )
        accepted = {
            f"k{i}" for i, r in enumerate(results) if not isinstance(r, BaseException)
        }
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
        hist = await engines[0].history("c")
        assert [h.position for h in hist] == list(range(1, len(plan) + 3))
        ids = [h.command_id for h in hist[2:]]
        assert len(ids) == len(set(ids))
        assert set(ids) == accepted
        for eng in engines:
            assert (await eng.get("c")).state.n == len(plan)
    finally:
        await engines[0].close()
        if not share:
            await engines[1].close()


@PROPS
@given(st.lists(st.sampled_from([0, 1]), min_size=1, max_size=24))
def test_two_engines_never_lose_or_duplicate_on_memory(plan: list[int]) -> None:
    asyncio.run(_race("memory://", plan, share=True))


@settings(PROPS, max_examples=15)
@given(st.lists(st.sampled_from([0, 1]), min_size=1, max_size=16))
def test_two_engines_never_lose_or_duplicate_on_sqlite(plan: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_race(f"sqlite:///{Path(tmp) / 'race.db'}", plan, share=False))
