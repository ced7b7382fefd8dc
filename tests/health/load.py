"""An engine process under load, for the rollout tests.

``python -m tests.health.load URL STOPFILE OUTFILE NAME`` runs 8 callers that
start instances, send them work and close them, until STOPFILE exists; then
writes what happened to OUTFILE (JSON): each instance's version and accepted
work, and every unexpected error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from engine import CommandRejected, WorkflowCodeError
from engine.deploy import open_engine
from engine.health import Health
from engine.store import open_store
from tests.health import flows


async def main(url: str, stop: Path, out: Path, name: str) -> None:
    store = open_store(url)
    health = Health(store, flush_interval=0.2, bucket_seconds=1)
    engine = open_engine(store, flows.registry(), poll_interval=0.1, health=health)
    instances: dict[str, list[int]] = {}
    errors: list[str] = []
    ready = Path(f"{out}.ready")

    async def caller(c: int) -> None:
        k = 0
        while not stop.exists():
            k += 1
            iid = f"{name}-{c}-{k}"
            try:
                info = await engine.start("tills", flows.Open(), instance_id=iid)
                instances[iid] = [info.version, 0]
                for n in range(3):
                    try:
                        await engine.send(iid, flows.Work(n), command_id=f"w{n}")
                        instances[iid][1] += 1
                    except (CommandRejected, WorkflowCodeError):
                        pass
                await engine.send(iid, flows.Close())
            except Exception as exc:
                errors.append(f"{iid}: {exc!r}")
            if not ready.exists():
                ready.touch()

    await asyncio.gather(*(caller(c) for c in range(8)))
    await engine.close()
    out.write_text(json.dumps({"instances": instances, "errors": errors}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]))
