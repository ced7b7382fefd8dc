"""Crash trials: SIGKILL the effect runner and timer service at random points.

Each trial adds work (instances asking for one ``Charge`` effect each, and
instances arming timers due at once), starts a runner process
(``tests.effects.crash_child``), waits for a random number of gateway calls
and kills it with SIGKILL, usually with handlers, result commits or outcome
updates in flight. The next trial's process takes over what the killed one
held once its lease runs out. At the end the parent drains the outbox and
checks:

- every requested effect's result is recorded exactly once (one event with the
  effect's command id), and every effect row is ``done``;
- the gateway saw every key at least once, and only keys of requested effects
  (a repeat comes with the same key);
- every timer fired exactly once (one ``Noted`` with its command id).

``NONSTOP_EFFECT_TRIALS`` sets the number of trials per store (30 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine import Engine, open_store
from engine.core.effects import effect_command_id, timer_command_id
from engine.runtime.effects import EffectRunner, TimerService
from tests.effects import crash_child, flows

ROOT = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("NONSTOP_EFFECT_TRIALS", "30"))
PER_TRIAL = 6
"""Effect instances and timer instances added per trial."""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 + 10 * TRIALS)]


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line]


async def _wait_for(path: Path, count: int, proc: subprocess.Popen[bytes]) -> None:
    """Until ``path`` holds ``count`` calls after ``ready`` (or 10 s of none)."""

    async def poll() -> None:
        while True:
            lines = _lines(path)
            if "ready" in lines and len(lines) - lines.index("ready") - 1 >= count:
                return
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                pytest.fail(f"the runner exited early ({proc.returncode}):\n{err}")
            await asyncio.sleep(0.005)

    with contextlib.suppress(TimeoutError):  # nothing left to call: kill it idle
        await asyncio.wait_for(poll(), timeout=10)


async def _add_work(url: str, trial: int) -> None:
    # Command ids: a start retried after a commit in doubt is answered.
    async with Engine(url, flows.registry(), deployments=False) as engine:
        for k in range(PER_TRIAL):
            for iid, cmd in (
                (f"e{trial}-{k}", flows.Buy(k + 1)),
                (f"t{trial}-{k}", flows.Remind(2)),
            ):
                await engine.start("sales", cmd, instance_id=iid, command_id=iid)


async def _drain(url: str, path: Path) -> None:
    """Deliver what is left (after the last lease ran out), in this process."""
    calls = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with Engine(url, flows.registry(), deployments=False) as engine:
        runner = EffectRunner(
            engine, crash_child.handlers(calls), settings=crash_child.SETTINGS
        )
        timers = TimerService(engine, settings=crash_child.SETTINGS)
        box = engine.store.outbox()
        async with asyncio.timeout(60):
            while box.entries(status="pending", limit=1):
                if not (await runner.run_once() + await timers.run_once()):
                    await asyncio.sleep(0.05)  # a dead runner's lease runs out


async def _check(url: str, calls: list[str]) -> None:
    store = open_store(url)
    box = store.outbox()
    effects = box.entries(kind="effect", limit=100_000)
    every_timer = box.entries(kind="timer", limit=100_000)
    timers = [t for t in every_timer if t.item.stream_id.startswith("t")]
    unpaid = [t for t in every_timer if t.item.stream_id.startswith("e")]
    assert len(effects) == len(unpaid) == PER_TRIAL * TRIALS
    assert len(timers) == 2 * PER_TRIAL * TRIALS
    assert {e.status for e in effects} == {"done"}
    assert {e.status for e in timers} == {"done"}
    # Paid before an hour passed: each "unpaid" timer ended with its instance.
    assert {t.status for t in unpaid} == {"cancelled"}
    async with Engine(store, flows.registry(), deployments=False) as engine:
        recorded: Counter[str] = Counter()
        for iid in {e.item.stream_id for e in [*effects, *timers]}:
            history = await engine.history(iid)
            positions = [e.position for e in history]
            assert positions == list(range(1, len(history) + 1))
            recorded.update(e.command_id for e in history if e.command_id)
    for e in effects:
        assert recorded[effect_command_id(e.id)] == 1, e.id
    for t in timers:
        assert recorded[timer_command_id(t.id)] == 1, t.id
    seen = Counter(calls)
    ids = {e.id for e in effects}
    assert set(seen) <= ids, sorted(set(seen) - ids)[:5]
    assert set(seen) == ids  # every handler was called at least once


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_sigkill_of_the_runner_loses_and_doubles_no_result(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'crash.db'}"
        if store == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    rng = random.Random(os.environ.get("NONSTOP_TRIAL_SEED", "effects"))
    calls: list[str] = []
    kills = 0
    for trial in range(TRIALS):
        await _add_work(url, trial)
        path = tmp_path / f"calls-{trial}.txt"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.effects.crash_child", url, str(path)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            await _wait_for(path, rng.randint(1, PER_TRIAL * 2), proc)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        kills += 1
        calls.extend(c for c in _lines(path) if c != "ready")
    assert kills == TRIALS
    drained = tmp_path / "calls-drain.txt"
    await _drain(url, drained)
    await _check(url, [*calls, *_lines(drained)])
