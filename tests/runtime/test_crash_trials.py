"""Crash trials: SIGKILL an engine process mid-commit, then check the log.

Each trial starts an engine process (``tests.runtime.crash_child``) that drives
32 concurrent callers against 8 shared instances, waits until a random number
of commands have been acknowledged, and kills it with SIGKILL, usually with a
group commit in flight. The trials of one store run one after another on the
same instances, so each also checks recovery from the previous kill. After every
trial:

- every acknowledged command id is stored exactly once;
- no command id is stored twice, acknowledged or not (each ``Increment`` is
  one ``Incremented`` event carrying its id);
- every stream's positions are 1, 2, 3, ... with no gap;
- the state ``get`` answers equals a fold of the stream's events.

``NONSTOP_TRIALS`` sets the number of trials per store (20 by default).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine import Engine, fold
from tests.runtime.counter import Incremented, counter, registry
from tests.runtime.crash_child import INSTANCES, instance_id

ROOT = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("NONSTOP_TRIALS", "20"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60 + 15 * TRIALS)]


def _acks(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line]


async def _wait_for(path: Path, count: int, proc: subprocess.Popen[bytes]) -> None:
    """Until ``path`` holds ``count`` acknowledgements after ``ready`` (60 s max)."""

    async def reached() -> bool:
        lines = _acks(path)
        return "ready" in lines and len(lines) - lines.index("ready") - 1 >= count

    async def poll() -> None:
        while not await reached():
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                pytest.fail(
                    f"the engine process exited early ({proc.returncode}):\n{err}"
                )
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout=60)


async def _check(url: str, acked: list[str]) -> int:
    """Check the log against the acknowledged ids; return the events seen."""
    seen: Counter[str] = Counter()
    events = 0
    async with Engine(url, registry()) as engine:
        for n in range(INSTANCES):
            iid = instance_id(n)
            history = await engine.history(iid)
            positions = [e.position for e in history]
            assert positions == list(range(1, len(history) + 1)), (iid, positions)
            seen.update(
                e.command_id for e in history if isinstance(e.event, Incremented)
            )
            state = fold(counter(), counter().initial(), [e.event for e in history])
            assert (await engine.get(iid)).state == state
            events += len(history)
    twice = [cid for cid, k in seen.items() if k > 1]
    assert not twice, f"command ids stored twice: {twice[:10]}"
    lost = [cid for cid in acked if cid not in seen]
    assert not lost, f"acknowledged but not stored: {lost[:10]}"
    return events


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_sigkill_during_group_commits_loses_and_doubles_nothing(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'crash.db'}"
        if store == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    rng = random.Random(os.environ.get("NONSTOP_TRIAL_SEED", "crash"))
    acked: list[str] = []
    for trial in range(TRIALS):
        acks = tmp_path / f"acks-{trial}.txt"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.runtime.crash_child",
                url,
                str(acks),
                f"t{trial}",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            await _wait_for(acks, rng.randint(1, 400), proc)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        acked.extend(a for a in _acks(acks) if a != "ready")
        await _check(url, acked)
    events = await _check(url, acked)
    assert events >= len(acked) + INSTANCES  # every ack is one event, plus Started
