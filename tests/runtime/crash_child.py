"""An engine process for the crash trials: drives concurrent commands until killed.

Run as ``python -m tests.runtime.crash_child URL ACKS TRIAL``. Every command
has a unique command id; after a command is acknowledged (``applied=True``)
its id is appended to the ACKS file, so what the file holds is exactly what a
client was told had been applied. The parent SIGKILLs this process at a random
moment, usually with commits in flight.
"""

from __future__ import annotations

import asyncio
import os
import sys

from engine import Engine, StoreUnavailable
from tests.runtime.counter import Begin, Increment, registry

INSTANCES = 8
"""Instances the trials share (several callers per instance: real contention)."""
CALLERS = 32
"""Concurrent callers, so that group commits carry many commands."""


def instance_id(n: int) -> str:
    return f"crash-{n}"


async def _caller(engine: Engine, acks: int, trial: str, k: int) -> None:
    i = 0
    while True:
        i += 1
        cid = f"{trial}-{k}-{i}"
        target = instance_id((k + i) % INSTANCES)
        while True:
            try:
                await engine.send(target, Increment(1), command_id=cid)
                break
            except StoreUnavailable:
                # A bounded wait ran out (a loaded machine): the caller retries
                # with the same command id, which cannot apply it twice.
                await asyncio.sleep(0.05)
        # applied, or answered as a repeat of a retry that had applied: either
        # way the caller now knows the command is in the log.
        os.write(acks, f"{cid}\n".encode())


async def main(url: str, acks_path: str, trial: str) -> None:
    acks = os.open(acks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with Engine(url, registry()) as engine:
        for n in range(INSTANCES):
            # A repeat of an earlier trial's start is answered, not applied.
            await engine.start(
                "counter", Begin(0), instance_id=instance_id(n), command_id=f"begin-{n}"
            )
        os.write(acks, b"ready\n")
        await asyncio.gather(*(_caller(engine, acks, trial, k) for k in range(CALLERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
