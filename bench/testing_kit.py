"""Scenario "testing": what a property test with ``engine.testing`` costs.

The same order histories (a start and up to eight commands of ``orders@2``,
drawn once from a seeded generator, rejected commands included) are run three
ways in one process:

- *assert_replay_stable* (the subject): decide and encode as the engine does,
  fold the log, restart after every decision (reload and snapshot) and fold
  the log again under a second code of the version (the three laws);
- *decide and fold once*: the decisions alone, no encoding, no checks: the
  least work a test of these histories can do;
- *in-memory SyncEngine*: the same histories through an engine on a
  ``memory://`` store (``start`` and ``send``), what a test using the
  plugin's ``nonstop_sync_engine`` fixture does.

Figures are histories/s (higher is better); there is no target, the ratios
say how much a property test with the kit costs against the two other ways.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from typing import Any

from bench.harness import BenchContext, Contender, Figure, measure
from engine import CommandRejected, EventCodec, SyncEngine
from engine.demo.orders import CheckFraud, Pay, PlaceOrder, Ship, release2, v2
from engine.testing import assert_replay_stable
from engine.testing.scenario import FixedContext

__all__ = ["DESCRIPTION", "run"]

DESCRIPTION = """\
- **testing** (`python -m bench --only testing`): order histories (a start and
  up to 8 commands of orders@2) checked by `engine.testing.assert_replay_stable`
  (the three replay laws, with a second code of the version), against deciding
  and folding them once, and against running them through an in-memory
  `SyncEngine`; histories/s, no target (the ratios are the cost of the kit)."""


def _histories(n: int) -> list[list[Any]]:
    rng = random.Random(15)
    out = []
    for i in range(n):
        amount = rng.randint(1, 3)
        cmds: list[Any] = [PlaceOrder(f"o{i}", amount)]
        for _ in range(rng.randint(0, 8)):
            cmds.append(
                rng.choice([CheckFraud(), Pay(amount), Pay(amount + 1), Ship()])
            )
        out.append(cmds)
    return out


def _once(histories: list[list[Any]]) -> int:
    for cmds in histories:
        state = v2.initial()
        for cmd in cmds:
            if v2.terminal(state):
                break
            try:
                events = v2.decide(
                    state, cmd, FixedContext("b", v2.ref, config_type=v2.config)
                )
            except CommandRejected:
                continue
            for e in events:
                state = v2.evolve(state, e)
    return len(histories)


def run(ctx: BenchContext) -> list[Figure]:
    histories = _histories(30 if ctx.quick else 300)
    release = release2()
    refactor = dataclasses.replace(v2, evolve=lambda s, e: v2.evolve(s, e))

    def kit() -> tuple[int, float]:
        t0 = time.perf_counter()
        for cmds in histories:
            assert_replay_stable(
                v2,
                cmds,
                new=refactor,
                types=release.types,
                upcasters=release.upcasters,
            )
        return len(histories), time.perf_counter() - t0

    def once() -> tuple[int, float]:
        t0 = time.perf_counter()
        n = _once(histories)
        return n, time.perf_counter() - t0

    def engine() -> tuple[int, float]:
        with SyncEngine(
            "memory://",
            release.registry,
            codec=EventCodec(release.types),
            upcasters=release.upcasters,
        ) as eng:
            t0 = time.perf_counter()
            for i, cmds in enumerate(histories):
                iid = f"h{i}"
                try:
                    eng.start("orders", cmds[0], instance_id=iid, version=2)
                except CommandRejected:
                    continue
                for cmd in cmds[1:]:
                    with contextlib.suppress(CommandRejected):
                        eng.send(iid, cmd)
            return len(histories), time.perf_counter() - t0

    return [
        measure(
            "testing",
            "testing-replay-stable",
            unit="histories/s",
            what="order histories checked by assert_replay_stable (3 laws)",
            subject=Contender("assert_replay_stable", kit),
            baselines=[
                Contender("decide and fold once", once),
                Contender("in-memory SyncEngine", engine),
            ],
            reps=ctx.reps,
        )
    ]
