"""Scenario "workflow": a three-step order workflow beside DBOS and eventsourcing.

Every contender runs the same order (place, pay, ship) on PostgreSQL, from 1 and
from 64 concurrent callers, for a fixed time, and records the latency of each
workflow (and, where it has them, of each transition):

- nonstop: ``Engine.start`` + ``Engine.send(Pay)`` + ``Engine.send(Ship)`` of the
  ``orders@1`` example workflow from asyncio tasks on one ``Engine``;
- DBOS: an async ``@DBOS.workflow`` of three ``@DBOS.step`` calls, from asyncio
  tasks, with its system database in a fresh database on the same server;
- eventsourcing: an ``Application`` whose aggregate does the three transitions,
  saved after each one (three transactions), from threads;
- raw psycopg: one ``INSERT`` + ``COMMIT`` per call, the floor for one durable
  transition, beside nonstop's transitions at concurrency 1.

DBOS is a process-wide singleton (one ``DBOS()`` per process, a global registry
of decorated functions, background threads and its own event loop thread), so
it runs in a child process of the benchmark (``python -m bench.workflow
--dbos-child URL``), launched once per run and driven over a pipe: the parent
asks for a round, the child runs it and answers with its measurements. The
rounds are still interleaved with the other contenders'.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

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

__all__ = ["DESCRIPTION", "run"]

DESCRIPTION = """\
- **workflow** (`python -m bench --only workflow`): a three-step order workflow
  (place, pay, ship; `engine.demo.orders` v1) on PostgreSQL from 1 and from 64
  concurrent callers, for a fixed time per round: nonstop (`Engine.start` + two
  `Engine.send`, asyncio tasks on one `Engine`) against DBOS (an async workflow of
  three steps, its system database in a fresh database on the same server, run in
  a child process because DBOS is a process-wide singleton) and an `eventsourcing`
  `Application` whose aggregate does the same three transitions, saved after each
  (three transactions, from threads; the caller keeps the aggregate between them,
  so it reads nothing). Figures: workflows/s, p50 and p99 latency of a whole
  workflow; and the latency of one nonstop transition at concurrency 1
  against one bare PostgreSQL `INSERT` + `COMMIT` (raw psycopg) measured beside it:
  the check that group commit does not make a lone caller wait."""

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 64)
AMOUNT = 10
DBOS = "DBOS async workflow of 3 steps"
ES = "eventsourcing Application, 3 saves"
RAW = "raw psycopg INSERT+COMMIT"
_MARK = "@@bench "


@dataclass
class Round:
    """What one contender did in one round."""

    workflows: int
    """Workflows completed."""
    seconds: float
    """Wall time of the round."""
    latencies: list[float] = field(default_factory=list)
    """Seconds per workflow (per call for the raw driver)."""
    transitions: list[float] = field(default_factory=list)
    """Seconds per transition, where the contender has them."""


class Contender(Protocol):
    """Runs rounds: ``concurrency`` callers for about ``seconds``."""

    def __call__(self, concurrency: int, seconds: float) -> Round: ...

    def close(self) -> None:
        """Release what the contender holds."""


def _percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank, in milliseconds."""
    xs = sorted(values)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0


# ---------------------------------------------------------------- nonstop


class _Nonstop:
    """``orders@1`` on one Engine, callers are asyncio tasks."""

    def __init__(self, url: str) -> None:
        from engine import open_store
        from engine.demo import orders

        self.store = open_store(url)
        self.registry = orders.registry()
        self.rounds = 0

    def __call__(self, concurrency: int, seconds: float) -> Round:
        self.rounds += 1
        return asyncio.run(self._round(f"n{self.rounds}", concurrency, seconds))

    async def _round(self, tag: str, concurrency: int, seconds: float) -> Round:
        from engine import Engine
        from engine.demo.orders import Pay, PlaceOrder, Ship

        # A fresh engine per round (its writer task belongs to this loop); it
        # shares the open store and is not closed, which would close the store.
        engine = Engine(self.store, self.registry)
        out = Round(0, 0.0)
        deadline = time.perf_counter() + seconds

        async def caller(k: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                iid = f"{tag}-{k}-{n}"
                n += 1
                t0 = time.perf_counter()
                await engine.start(
                    "orders", PlaceOrder(iid, AMOUNT), instance_id=iid, version=1
                )
                t1 = time.perf_counter()
                await engine.send(iid, Pay(AMOUNT))
                t2 = time.perf_counter()
                info = await engine.send(iid, Ship())
                t3 = time.perf_counter()
                if info.status != "completed":
                    raise AssertionError(f"order {iid} ended {info.status}")
                out.latencies.append(t3 - t0)
                out.transitions.extend((t1 - t0, t2 - t1, t3 - t2))

        t0 = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(concurrency)))
        out.seconds = time.perf_counter() - t0
        out.workflows = len(out.latencies)
        return out

    def close(self) -> None:
        self.store.close()


# ----------------------------------------------------------- eventsourcing


def _threads(
    concurrency: int, seconds: float, one: Callable[[int, int], list[float]]
) -> Round:
    """``concurrency`` threads call ``one(thread, n)`` until the deadline.

    ``one`` returns the seconds each transition of its workflow took.
    """
    out = Round(0, 0.0)
    lock = threading.Lock()
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def loop(k: int) -> None:
        n = 0
        try:
            while time.perf_counter() < deadline:
                steps = one(k, n)
                n += 1
                with lock:
                    out.latencies.append(sum(steps))
                    out.transitions.extend(steps)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(concurrency)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    out.workflows = len(out.latencies)
    return out


class _EventSourcing:
    """An ``eventsourcing`` Application; callers are threads."""

    def __init__(self, schema: str) -> None:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event

        # eventsourcing is typed as Any here (mypy skips it): hence the ignores.
        class Order(Aggregate):  # type: ignore[misc]
            @event("Placed")  # type: ignore[untyped-decorator]
            def __init__(self, order_id: str, amount: int) -> None:
                self.order_id = order_id
                self.amount = amount
                self.stage = "placed"
                self.paid = 0

            @event("Paid")  # type: ignore[untyped-decorator]
            def pay(self, amount: int) -> None:
                if self.stage != "placed" or amount != self.amount:
                    raise ValueError(f"cannot pay {amount} for {self.order_id}")
                self.paid = amount
                self.stage = "paid"

            @event("Shipped")  # type: ignore[untyped-decorator]
            def ship(self, carrier: str) -> None:
                if self.stage != "paid":
                    raise ValueError(f"cannot ship {self.order_id}: {self.stage}")
                self.stage = "shipped"

        info = psycopg.conninfo.conninfo_to_dict(PG_URL)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(info.get("dbname", "postgres")),
            "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(info.get("port", 5432)),
            "POSTGRES_USER": str(info.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(info.get("password", "")),
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": "16",
            "POSTGRES_MAX_OVERFLOW": "0",
        }

        class BenchOrders(Application[Any]):  # type: ignore[misc]
            """Its events table is ``benchorders_events``."""

        self.app: Any = BenchOrders(env=env)
        self.order = Order
        self.rounds = 0

    def __call__(self, concurrency: int, seconds: float) -> Round:
        self.rounds += 1
        tag = f"e{self.rounds}"
        app, order = self.app, self.order

        def one(k: int, n: int) -> list[float]:
            # The caller keeps the aggregate between transitions (no reads):
            # the cheapest way to drive it, three transactions in all.
            t0 = time.perf_counter()
            o = order(f"{tag}-{k}-{n}", AMOUNT)
            app.save(o)
            t1 = time.perf_counter()
            o.pay(AMOUNT)
            app.save(o)
            t2 = time.perf_counter()
            o.ship("post")
            app.save(o)
            t3 = time.perf_counter()
            return [t1 - t0, t2 - t1, t3 - t2]

        return _threads(concurrency, seconds, one)

    def close(self) -> None:
        self.app.close()


# ----------------------------------------------------------------- raw


class _RawCommit:
    """One row per transaction, the floor of one durable transition."""

    def __init__(self, schema: str) -> None:
        self.conn = psycopg.connect(PG_URL)
        self.table = sql.Identifier(schema, "raw_transitions")
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE {} (stream_id text NOT NULL, position bigint NOT NULL, "
                "type text NOT NULL, data bytea NOT NULL, "
                "global_position bigserial, "
                "PRIMARY KEY (stream_id, position))"
            ).format(self.table)
        )
        # The same indexes as the events table: stream key and global order.
        self.conn.execute(
            sql.SQL("CREATE UNIQUE INDEX ON {} (global_position)").format(self.table)
        )
        self.conn.commit()
        self.insert = sql.SQL(
            "INSERT INTO {} (stream_id, position, type, data) VALUES (%s, %s, %s, %s)"
        ).format(self.table)
        self.rounds = 0

    def __call__(self, concurrency: int, seconds: float) -> Round:
        if concurrency != 1:
            raise ValueError(f"the raw commit runs one caller, got {concurrency}")
        self.rounds += 1
        sid = f"r{self.rounds}"
        out = Round(0, 0.0)
        payload = b"\x98" + b"\x01" * 60
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            t0 = time.perf_counter()
            self.conn.execute(self.insert, (sid, n, "OrderPaid", payload), prepare=True)
            self.conn.commit()
            out.latencies.append(time.perf_counter() - t0)
        out.seconds = time.perf_counter() - start
        out.workflows = n
        out.transitions = out.latencies
        return out

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------ DBOS


class _Dbos:
    """Drives DBOS in a child process, in a database of its own."""

    def __init__(self) -> None:
        self.dbname, url = create_database("nonstop_bench_dbos")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.workflow", "--dbos-child", url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            self._reply()  # launched
        except BaseException:
            self.close()
            raise

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(_MARK):
                answer: dict[str, Any] = json.loads(line[len(_MARK) :])
                if "error" in answer:
                    raise RuntimeError(f"the DBOS child failed: {answer['error']}")
                return answer
        raise RuntimeError(f"the DBOS child exited ({self.proc.wait()})")

    def __call__(self, concurrency: int, seconds: float) -> Round:
        assert self.proc.stdin is not None
        ask = {"concurrency": concurrency, "seconds": seconds}
        self.proc.stdin.write(json.dumps(ask) + "\n")
        self.proc.stdin.flush()
        got = self._reply()
        return Round(got["workflows"], got["seconds"], got["latencies"])

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            drop_database(self.dbname)


def _dbos_child(url: str) -> None:
    """Launch DBOS on ``url`` and run the rounds the parent asks for."""
    from dbos import DBOS as Dbos

    @Dbos.step()
    async def place(order_id: str, amount: int) -> dict[str, Any]:
        return {"stage": "placed", "order_id": order_id, "amount": amount, "paid": 0}

    @Dbos.step()
    async def pay(state: dict[str, Any], amount: int) -> dict[str, Any]:
        if state["stage"] != "placed" or amount != state["amount"]:
            raise ValueError(f"cannot pay {amount} for {state['order_id']}")
        return {**state, "stage": "paid", "paid": amount}

    @Dbos.step()
    async def ship(state: dict[str, Any]) -> dict[str, Any]:
        if state["stage"] != "paid":
            raise ValueError(f"cannot ship {state['order_id']}: {state['stage']}")
        return {**state, "stage": "shipped"}

    @Dbos.workflow()
    async def order(order_id: str, amount: int) -> dict[str, Any]:
        state = await place(order_id, amount)
        state = await pay(state, amount)
        return await ship(state)

    async def round_(tag: str, concurrency: int, seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def caller(k: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                got = await order(f"{tag}-{k}-{n}", AMOUNT)
                n += 1
                if got["stage"] != "shipped":
                    raise AssertionError(f"order ended {got['stage']}")
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - t0
        return {"workflows": len(latencies), "seconds": elapsed, "latencies": latencies}

    def say(answer: dict[str, Any]) -> None:
        print(_MARK + json.dumps(answer), flush=True)

    async def serve() -> None:
        # One loop for every round: DBOS's async workflows keep loop-bound state.
        loop = asyncio.get_running_loop()
        n = 0
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            ask = json.loads(line)
            n += 1
            try:
                got = await round_(
                    f"d{n}", int(ask["concurrency"]), float(ask["seconds"])
                )
            except Exception as exc:
                say({"error": repr(exc)})
                continue
            say(got)

    Dbos(
        config={
            "name": "nonstop-bench",
            "system_database_url": url,
            "log_level": "WARNING",
        }
    )
    Dbos.launch()
    say({"launched": True})
    try:
        asyncio.run(serve())
    finally:
        Dbos.destroy()


# --------------------------------------------------------------- scenario


def _ms(rounds: list[Round], q: float, *, transitions: bool = False) -> list[float]:
    return [
        _percentile(r.transitions if transitions else r.latencies, q) for r in rounds
    ]


def run(ctx: BenchContext) -> list[Figure]:
    """Run every contender at each concurrency, interleaved, ``ctx.reps`` times."""
    with pg_schema(prefix=ctx.schema) as schema:  # tables of its own
        return _run(
            schema, ctx.reps, 0.3 if ctx.quick else 3.0, 1.0 if ctx.quick else 10.0
        )


def _run(schema: str, reps: int, seconds: float, p99_seconds: float) -> list[Figure]:
    """Every contender at each concurrency; then the lone-transition rounds.

    The transition latency figures take their own, longer rounds (nonstop and
    the raw INSERT + COMMIT interleaved): a p99 needs thousands of samples per
    round to be stable, and the raw baseline's spread over rounds is reported.
    """
    contenders: dict[str, Contender] = {}
    makers: list[tuple[str, Callable[[], Contender]]] = [
        ("nonstop", lambda: _Nonstop(store_url(schema))),
        (DBOS, _Dbos),
        (ES, lambda: _EventSourcing(schema)),
        (RAW, lambda: _RawCommit(schema)),
    ]
    try:
        for name, make in makers:
            contenders[name] = make()
        results: dict[tuple[str, int], list[Round]] = {}
        for c in contenders.values():  # warm up pools, caches, prepared plans
            c(1, 0.2)
        for rep in range(reps):
            for conc in CONCURRENCY:
                for name, c in contenders.items():
                    if name == RAW and conc != 1:
                        continue
                    r = c(conc, seconds)
                    results.setdefault((name, conc), []).append(r)
                    rate = r.workflows / r.seconds
                    print(
                        f"  [{rep + 1}/{reps}] c={conc:<3} {name:<40} "
                        f"{rate:>10,.1f}/s  p50 {_percentile(r.latencies, 0.5):.2f} "
                        f"ms  p99 {_percentile(r.latencies, 0.99):.2f} ms"
                    )
        for rep in range(reps):
            for name in ("nonstop", RAW):
                r = contenders[name](1, p99_seconds)
                results.setdefault((name, 0), []).append(r)
                print(
                    f"  [{rep + 1}/{reps}] transition {name:<30} "
                    f"{len(r.transitions):>7,} samples  p50 "
                    f"{_percentile(r.transitions, 0.5):.2f} ms  p99 "
                    f"{_percentile(r.transitions, 0.99):.2f} ms"
                )
    finally:
        for c in reversed(contenders.values()):
            c.close()
    return _figures(results, seconds, p99_seconds)


def _figures(
    results: dict[tuple[str, int], list[Round]], seconds: float, p99_seconds: float
) -> list[Figure]:
    figs: list[Figure] = []
    for conc in CONCURRENCY:
        callers = "1 caller" if conc == 1 else f"{conc} concurrent callers"
        ours = results[("nonstop", conc)]
        others = {b: results[(b, conc)] for b in (DBOS, ES)}
        subject = (
            "nonstop Engine, asyncio tasks"
            if conc > 1
            else "nonstop Engine (start, send, send)"
        )
        goal = 2.0 if conc == 1 else 20.0
        figs.append(
            Figure(
                f"workflow-c{conc}",
                f"PostgreSQL: order workflows/s (place, pay, ship), {callers}",
                "workflows/s",
                f"{callers} run three-step order workflows back to back for "
                f"{seconds:g} s a round; a workflow counts when its last step is "
                "committed",
                subject,
                [r.workflows / r.seconds for r in ours],
                {b: [r.workflows / r.seconds for r in rs] for b, rs in others.items()},
                target=Target(goal, ">=", against=DBOS),
            )
        )
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            figs.append(
                Figure(
                    f"workflow-{label}-c{conc}",
                    f"PostgreSQL: {label} latency of one order workflow, {callers}",
                    "ms",
                    f"from the first call to the last step committed, {callers}; "
                    "lower is better",
                    subject,
                    _ms(ours, q),
                    {b: _ms(rs, q) for b, rs in others.items()},
                )
            )
    one = results[("nonstop", 0)]
    raw = results[(RAW, 0)]
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        base = _ms(raw, q, transitions=True)
        spread = f"{min(base):.2f}-{max(base):.2f} ms"
        figs.append(
            Figure(
                f"transition-{label}",
                f"PostgreSQL: {label} latency of one transition, 1 caller",
                "ms",
                "one Engine.start or Engine.send of the order workflow from a lone "
                "caller (decide, encode, one commit), against one bare INSERT + "
                "COMMIT on a table with the same keys (bigserial global position, "
                f"unique stream key) in interleaved rounds of {p99_seconds:g} s; "
                f"the baseline's {label} ranged {spread} over {len(base)} rounds; "
                "lower is better",
                "nonstop Engine.send / start",
                _ms(one, q, transitions=True),
                {RAW: _ms(raw, q, transitions=True)},
                target=Target(3.0, "<=", against=RAW) if label == "p99" else None,
            )
        )
    return figs


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.workflow")
    ap.add_argument("--dbos-child", metavar="URL", required=True)
    args = ap.parse_args(argv)
    _dbos_child(args.dbos_child)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
