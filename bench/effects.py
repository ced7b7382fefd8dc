"""Effects and timers: outbox rows delivered and recorded per second (PostgreSQL).

Each repetition fills a fresh schema with N instances that each asked for one
effect (or armed one timer due at once), then times the effect runner (a no-op
handler) or the timer service draining them with its own loop (two rounds in
flight): claim a batch, run the handlers or build the commands, record the
outcomes as commands in one transaction, mark the rows done. The baseline does
the same outbox work with raw psycopg in the same run, in one sequential loop:
claim a batch (``FOR UPDATE SKIP LOCKED``), insert one result row per claimed
row, mark them done, one transaction per step. DBOS runs beside them on the
same server, in a child process (DBOS is a process-wide singleton) with its
system database in a fresh database: async workflows of one no-op step
(``@DBOS.step``), and of one zero-second durable sleep (``DBOS.sleep_async``),
100 at a time, each started and awaited -- a workflow start and end around each
step or wake-up, which the nonstop figures do not include.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import msgspec
import psycopg

from bench.harness import (
    PG_URL,
    BenchContext,
    Figure,
    Target,
    create_database,
    drop_database,
    pg_schema,
    store_url,
)
from bench.workflow import ROOT
from engine import Context, Status, Workflow, WorkflowRegistry, event, open_store
from engine.core.effects import EffectCompleted
from engine.runtime import Engine
from engine.runtime.effects import EffectRunner, Settings, TimerService
from engine.runtime.handlers import EffectHandlers, ManualClock, effect_handler

__all__ = ["DESCRIPTION", "run"]

DESCRIPTION = (
    "- **effects**: effect requests executed (no-op handler) and recorded per "
    "second, and timers fired per second, by the effect runner and the timer "
    "service on PostgreSQL, against raw psycopg doing the same outbox claim "
    "and result insert in batches."
)

BATCH = 500


class Go(msgspec.Struct, frozen=True):
    """Start input: ask for one effect (or arm one timer)."""

    timer: bool = False


class Noop(msgspec.Struct, frozen=True):
    """The effect."""


class Ping(msgspec.Struct, frozen=True):
    """The timer's command."""


@event("bench.Asked")
class Asked(msgspec.Struct, frozen=True):
    pass


@event("bench.Answered")
class Answered(msgspec.Struct, frozen=True):
    pass


class Box(msgspec.Struct, frozen=True):
    status: Status = "running"


def _decide(state: Box, cmd: Any, ctx: Context) -> list[Any]:
    if isinstance(cmd, Go):
        if cmd.timer:
            ctx.after(timedelta(0), Ping())
        else:
            ctx.request(Noop())
        return [Asked()]
    if isinstance(cmd, (EffectCompleted, Ping)):
        return [Answered()]
    return []


def _evolve(state: Box, e: Any) -> Box:
    return state


_workflow: Workflow[Box] = Workflow(
    "bench-effects", 1, Box, Box, _decide, _evolve, lambda s: s.status
)


def _registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(_workflow)
    return reg


def _handlers() -> EffectHandlers:
    reg = EffectHandlers()

    @effect_handler("Noop", registry=reg)
    async def noop(req: Noop) -> None:
        return None

    return reg


async def _fill(engine: Engine, n: int, *, timer: bool) -> None:
    for i in range(0, n, BATCH):
        await asyncio.gather(
            *(
                engine.start(_workflow.name, Go(timer), instance_id=f"b{k}")
                for k in range(i, min(n, i + BATCH))
            )
        )


def _nonstop(n: int, *, timer: bool) -> float:
    """Deliveries per second of the runner (or the timer service) draining n."""
    with pg_schema() as schema:
        store = open_store(store_url(schema))

        async def go() -> float:
            engine = Engine(store, _registry(), deployments=False)
            await _fill(engine, n, timer=timer)
            clock = ManualClock()
            clock.advance(timedelta(seconds=1))
            settings = Settings(batch=BATCH, poll=0.001)
            service: EffectRunner | TimerService = (
                TimerService(engine, clock=clock, settings=settings)
                if timer
                else EffectRunner(engine, _handlers(), clock=clock, settings=settings)
            )
            # The service's own loop, as a process runs it (overlapping rounds).
            stop = asyncio.Event()
            t0 = time.perf_counter()
            loop = asyncio.create_task(service.run(stop))
            while service.delivered < n:
                await asyncio.sleep(0.001)
            seconds = time.perf_counter() - t0
            stop.set()
            await loop
            await engine.close()
            assert service.delivered == n, (service.delivered, n)
            return n / seconds

        return asyncio.run(go())


def _raw(n: int) -> float:
    """Rows per second of raw psycopg doing the outbox claim and result insert."""
    with pg_schema() as schema, psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(
            f'CREATE TABLE "{schema}".outbox (id text PRIMARY KEY, stream text, '
            "status text, due bigint, lease bigint, created bigint)"
        )
        c.execute(f'CREATE INDEX ON "{schema}".outbox (status, due)')
        c.execute(
            f'CREATE TABLE "{schema}".events (id bigserial PRIMARY KEY, '
            "stream text, position bigint, type text, data bytea, "
            "UNIQUE (stream, position))"
        )
        with c.cursor() as cur:
            cur.executemany(
                f"INSERT INTO \"{schema}\".outbox VALUES (%s, %s, 'pending', 0, 0, %s)",
                [(f"b{k}@2#1", f"b{k}", k) for k in range(n)],
            )
        claim = (
            f'UPDATE "{schema}".outbox SET lease = %s WHERE id IN (SELECT id FROM '
            f"\"{schema}\".outbox WHERE status = 'pending' AND due <= %s AND "
            "lease <= %s ORDER BY due, created LIMIT %s FOR UPDATE SKIP LOCKED) "
            "RETURNING id, stream"
        )
        insert = (
            f'INSERT INTO "{schema}".events (stream, position, type, data) '
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::bytea[])"
        )
        finish = f"UPDATE \"{schema}\".outbox SET status = 'done' WHERE id = ANY(%s)"
        body = msgspec.msgpack.encode([1, None, 0, "bench-effects@1", "effect:x"])
        t0 = time.perf_counter()
        done = 0
        now = time.time_ns() // 1000
        while True:
            with c.transaction():
                rows = c.execute(claim, (now + 30_000_000, now, now, BATCH)).fetchall()
            if not rows:
                break
            with c.transaction():
                c.execute(
                    insert,
                    (
                        [r[1] for r in rows],
                        [3] * len(rows),
                        ["bench.Answered"] * len(rows),
                        [body] * len(rows),
                    ),
                )
            with c.transaction():
                c.execute(finish, ([r[0] for r in rows],))
            done += len(rows)
        seconds = time.perf_counter() - t0
    assert done == n
    return n / seconds


def _dbos(n: int) -> dict[str, float]:
    """DBOS steps/s and sleep wake-ups/s, measured in a child process."""
    dbname, url = create_database("nonstop_bench_dbos")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.effects", "--dbos-child", url, str(n)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        rates: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return rates
    finally:
        drop_database(dbname)


def _dbos_child(url: str, n: int) -> None:
    """Launch DBOS on ``url``; print the rates of ``n`` step and sleep workflows."""
    from dbos import DBOS as Dbos

    @Dbos.step()
    async def noop() -> None:
        return None

    @Dbos.workflow()
    async def one_step() -> None:
        await noop()

    @Dbos.workflow()
    async def one_sleep() -> None:
        await Dbos.sleep_async(0.0)

    async def rate(wf: Any) -> float:
        t0 = time.perf_counter()
        for i in range(0, n, 100):
            handles = await asyncio.gather(
                *(Dbos.start_workflow_async(wf) for _ in range(i, min(n, i + 100)))
            )
            await asyncio.gather(*(h.get_result() for h in handles))
        return n / (time.perf_counter() - t0)

    async def main() -> dict[str, float]:
        return {"steps": await rate(one_step), "sleeps": await rate(one_sleep)}

    config: Any = {"name": "nonstop-bench", "system_database_url": url}
    config["log_level"] = "WARNING"
    Dbos(config=config)
    Dbos.launch()
    try:
        print(json.dumps(asyncio.run(main())), flush=True)
    finally:
        Dbos.destroy()


def run(ctx: BenchContext) -> list[Figure]:
    """Effects and timers per second against the raw psycopg outbox loop."""
    n = 1_000 if ctx.quick else 10_000
    effects: list[float] = []
    timers: list[float] = []
    raw: list[float] = []
    steps: list[float] = []
    sleeps: list[float] = []
    for _ in range(ctx.reps):
        effects.append(_nonstop(n, timer=False))
        timers.append(_nonstop(n, timer=True))
        raw.append(_raw(n))
        dbos = _dbos(n // 5)  # DBOS is ~50x slower: keep the run short
        steps.append(dbos["steps"])
        sleeps.append(dbos["sleeps"])
    what = f"{n:,} pending rows drained in batches of {BATCH} (PostgreSQL)"
    baseline = "raw psycopg: claim + insert results + mark done"
    return [
        Figure(
            "effects",
            "effects executed and recorded",
            "effects/s",
            what,
            "EffectRunner loop, no-op async handler",
            effects,
            {baseline: raw, "DBOS 1-step workflows (start + step + end)": steps},
            Target(2_000.0),
        ),
        Figure(
            "effects",
            "timers fired",
            "timers/s",
            what,
            "TimerService loop, commands recorded",
            timers,
            {baseline: raw, "DBOS 0 s durable sleeps (start + wake-up + end)": sleeps},
            Target(2_000.0),
        ),
    ]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dbos-child", nargs=2, metavar=("URL", "N"), required=True)
    args = ap.parse_args()
    _dbos_child(args.dbos_child[0], int(args.dbos_child[1]))
