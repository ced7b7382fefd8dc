"""An effect runner and timer service process for the crash trials, killed at random.

Run as ``python -m tests.effects.crash_child URL CALLS``. The fake gateway
appends the idempotency key of every handler call to CALLS before it answers
(it fails 30 % of calls, retried), so the file holds every call that reached
the far side. Leases are short, so the next process re-claims what a killed
one held.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from engine import Engine
from engine.runtime.effects import EffectRunner, Settings, TimerService
from engine.runtime.handlers import EffectHandlers, effect_handler
from engine.store.retry import Backoff
from tests.effects import flows

LEASE = 0.5
"""Seconds a claim holds its rows."""
SETTINGS = Settings(batch=4, lease=LEASE, poll=0.01)


def handlers(calls: int) -> EffectHandlers:
    reg = EffectHandlers()

    @effect_handler(
        "Charge",
        max_attempts=20,
        backoff=Backoff(first=0.001, longest=0.005),
        registry=reg,
    )
    async def charge(req: flows.Charge, key: str) -> int:
        os.write(calls, f"{key}\n".encode())
        await asyncio.sleep(random.random() / 200)
        if random.random() < 0.3:
            raise ConnectionError("flaky gateway")
        return req.amount

    return reg


async def main(url: str, calls_path: str) -> None:
    calls = os.open(calls_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with Engine(url, flows.registry(), deployments=False) as engine:
        stop = asyncio.Event()
        runner = EffectRunner(engine, handlers(calls), settings=SETTINGS)
        timers = TimerService(engine, settings=SETTINGS)
        os.write(calls, b"ready\n")
        await asyncio.gather(runner.run(stop), timers.run(stop))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
