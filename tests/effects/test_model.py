"""Effects, timers and commands interleaved, against a pure model.

Hypothesis draws a sequence of operations on a few instances (starts that ask
for a payment and arm the ``unpaid`` timer, reminders, dropped timers, notes,
operator cancels, effect runner rounds that succeed or fail, clock moves, timer
service rounds) and runs it on an engine over the memory store with a manual
clock. A pure model predicts every instance's status and notes and every outbox
row's status; and each delivered result or timer is recorded exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import CommandRejected, Engine, UnknownInstance
from engine.core.effects import effect_command_id, timer_command_id
from engine.runtime.effects import EffectRunner, TimerService
from engine.runtime.handlers import ManualClock

from . import flows

STEP = 600  # seconds: the clock moves in steps of 10 minutes
HOUR_STEPS = 6
IDS = ["a", "b", "c"]


@dataclass
class Timer:
    after: int  # steps after the start of the test (decisions read the wall clock)
    seq: int
    status: str = "pending"
    kind: str = "note"


@dataclass
class Inst:
    status: str = "running"
    notes: int = 0
    position: int = 0


@dataclass
class Model:
    """What the engine should do, computed without it."""

    clock: int = 0  # steps advanced
    seq: int = 0
    insts: dict[str, Inst] = field(default_factory=dict)
    rows: dict[str, str] = field(default_factory=dict)  # effect id -> status
    effects: dict[str, str] = field(default_factory=dict)  # effect id -> instance
    timers: dict[str, Timer] = field(default_factory=dict)
    timer_of: dict[str, str] = field(default_factory=dict)

    def running(self, iid: str) -> bool:
        i = self.insts.get(iid)
        return i is not None and i.status == "running"

    def _end(self, iid: str, status: str) -> None:
        self.insts[iid].status = status
        for tid, t in self.timers.items():
            if self.timer_of[tid] == iid and t.status == "pending":
                t.status = "cancelled"

    def _timer(self, iid: str, tid: str, after: int, kind: str) -> None:
        self.seq += 1
        self.timers[tid] = Timer(after, self.seq, "pending", kind)
        self.timer_of[tid] = iid

    def buy(self, iid: str) -> None:
        if iid in self.insts and not self.running(iid):
            return
        inst = self.insts.setdefault(iid, Inst())
        inst.position += 2 if inst.position == 0 else 1
        eid = f"{iid}@{inst.position}#1"
        self.rows[eid] = "pending"
        self.effects[eid] = iid
        self._timer(iid, f"{iid}#timer:unpaid", HOUR_STEPS, "expire")

    def remind(self, iid: str, after: int) -> None:
        if not self.running(iid):
            return
        inst = self.insts[iid]
        inst.position += 1
        self._timer(iid, f"{iid}@{inst.position}#1", after, "note")

    def drop(self, iid: str) -> None:
        if not self.running(iid):
            return
        self.insts[iid].position += 1
        t = self.timers.get(f"{iid}#timer:unpaid")
        if t is not None and t.status == "pending":
            t.status = "cancelled"

    def note(self, iid: str) -> None:
        if self.running(iid):
            self.insts[iid].position += 1
            self.insts[iid].notes += 1

    def cancel(self, iid: str) -> None:
        if self.running(iid):
            self.insts[iid].position += 1
            self._end(iid, "cancelled")

    def run_effects(self, ok: bool) -> None:
        for eid, status in list(self.rows.items()):
            if status != "pending":
                continue
            self.rows[eid] = "done" if ok else "failed"
            iid = self.effects[eid]
            if self.running(iid):
                self.insts[iid].position += 1
                self._end(iid, "completed" if ok else "failed")

    def fire(self) -> None:
        due = sorted(
            (t.after, t.seq, tid)
            for tid, t in self.timers.items()
            if t.status == "pending" and t.after < self.clock
        )
        for _, _, tid in due:
            self.timers[tid].status = "done"  # claimed: delivered whatever comes
        for _, _, tid in due:
            iid = self.timer_of[tid]
            if not self.running(iid):
                continue
            self.insts[iid].position += 1
            if self.timers[tid].kind == "expire":
                self.insts[iid].status = "failed"
                for other, t in self.timers.items():
                    if self.timer_of[other] == iid and t.status == "pending":
                        t.status = "cancelled"
            else:
                self.insts[iid].notes += 1


ids = st.sampled_from(IDS)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), ids),
        st.tuples(st.just("remind"), ids, st.sampled_from([0, 1, 3, HOUR_STEPS])),
        st.tuples(st.just("drop"), ids),
        st.tuples(st.just("note"), ids),
        st.tuples(st.just("cancel"), ids),
        st.tuples(st.just("effects"), st.booleans()),
        st.tuples(st.just("advance"), st.integers(1, 4)),
        st.tuples(st.just("fire")),
    ),
    max_size=30,
)


async def _run(ops: list[tuple[object, ...]]) -> None:
    clock = ManualClock()
    ok, bad = flows.Gateway(), flows.Gateway(fail_first=1_000)
    model = Model()
    async with Engine("memory://", flows.registry(), deployments=False) as engine:
        good_runner = EffectRunner(engine, flows.handlers(ok), clock=clock)
        bad_runner = EffectRunner(engine, flows.handlers(bad), clock=clock)
        timers = TimerService(engine, clock=clock)
        for op in ops:
            name = op[0]
            try:
                if name == "buy":
                    iid = str(op[1])
                    model.buy(iid)
                    if await _exists(engine, iid):
                        await engine.send(iid, flows.Buy(1))
                    else:
                        await engine.start("sales", flows.Buy(1), instance_id=iid)
                elif name == "remind":
                    model.remind(str(op[1]), int(op[2]))  # type: ignore[call-overload]
                    after = float(int(op[2]) * STEP)  # type: ignore[call-overload]
                    await engine.send(str(op[1]), flows.Remind(1, after))
                elif name == "drop":
                    model.drop(str(op[1]))
                    await engine.send(str(op[1]), flows.Drop())
                elif name == "note":
                    model.note(str(op[1]))
                    await engine.send(str(op[1]), flows.Note())
                elif name == "cancel":
                    model.cancel(str(op[1]))
                    await engine.cancel(str(op[1]), reason="model", by="tests")
                elif name == "effects":
                    model.run_effects(bool(op[1]))
                    await (good_runner if op[1] else bad_runner).run_once()
                elif name == "advance":
                    model.clock += int(op[1])  # type: ignore[call-overload]
                    clock.advance(timedelta(seconds=STEP * int(op[1])))  # type: ignore[call-overload]
                else:
                    model.fire()
                    await timers.run_once()
            except (CommandRejected, UnknownInstance):
                pass
        await _compare(engine, model)


async def _exists(engine: Engine, iid: str) -> bool:
    try:
        await engine.get(iid)
    except UnknownInstance:
        return False
    return True


async def _compare(engine: Engine, model: Model) -> None:
    box = engine.store.outbox()
    for iid, want in model.insts.items():
        info = await engine.get(iid)
        assert (info.status, info.state.notes, info.position) == (
            want.status,
            want.notes,
            want.position,
        ), iid
        recorded = Counter(e.command_id for e in await engine.history(iid))
        for eid, i in model.effects.items():
            if i == iid and model.rows[eid] != "pending":
                assert recorded[effect_command_id(eid)] <= 1
        for tid, t in model.timers.items():
            if model.timer_of[tid] == iid:
                assert recorded[timer_command_id(tid)] <= 1
                if t.status in ("pending", "cancelled"):
                    assert recorded[timer_command_id(tid)] == 0, tid
    got = {e.id: e.status for e in box.entries(limit=10_000)}
    want_rows = dict(model.rows)
    want_rows.update({tid: t.status for tid, t in model.timers.items()})
    assert got == want_rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_effects_timers_and_commands_follow_the_model(
    ops: list[tuple[object, ...]],
) -> None:
    asyncio.run(_run(ops))
