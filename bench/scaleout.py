"""Scenario "scaleout": engine processes writing to one PostgreSQL database.

Each round starts N engine processes (``multiprocessing``, spawn), each with
its own ``Engine`` on the same store and ``CALLERS`` asyncio tasks, each task
sending ``Increment`` to its own counter instance one after another (the load
of the commit scenario, ``bench/counter.py``). Every process starts its
counters and warms up for the same time, then waits at a barrier; all leave it
together, send for a fixed time and report what was committed and the CPU
seconds they used in that window. The figure is all processes' commits over
the longest window.

Around the window the parent reads the CPU time of every ``postgres`` process
and of the whole machine from ``/proc``, so that where the machine's cores are
the limit the figures say so. The rounds (1, 2 and 4 processes with either
append mode, and 1 process with 1 writer) are interleaved; each mode has a fresh
schema of its own (a schema keeps the append mode it was created with).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import statistics
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.counter import Begin, Increment, registry, workflow
from bench.harness import (
    BenchContext,
    Contender,
    Figure,
    Target,
    measure,
    pg_schema,
    store_url,
)
from engine import Engine, open_store
from engine.store import NewRecord
from engine.store.postgres import PostgresStore

__all__ = ["DESCRIPTION", "run"]

CALLERS = 32
"""Callers (asyncio tasks) per engine process."""
SECONDS = {False: 8.0, True: 2.0}
"""The timed window of a round, full and quick."""
WARMUP = {False: 1.0, True: 0.5}
"""Sending before the window, in every process."""
_WAIT = 180.0
"""The longest a process may take to start and warm up, or to report."""

DESCRIPTION = f"""\
- **scaleout** (`python -m bench --only scaleout`): engine processes on one
  PostgreSQL database, each its own `Engine` with {CALLERS} asyncio tasks sending
  `Increment` to their own counter instances one after another (the commit
  scenario's load); committed transitions/s of all processes together. With
  `appends=concurrent` (appends of every process side by side, group
  commits in flight per engine up to 4 for a backlog): 1, 2 and 4 processes,
  and 1 process with a single one (`writers=1`); with `appends=serial` (every append
  locks the events table): 1, 2 and 4 processes. Then the store alone: 1 and 4
  processes of 8 threads, each thread appending one event per transaction
  (`PostgresStore.append`, no engine, so no group commit), in either mode.
  Each process is spawned, starts its counters and sends for
  {WARMUP[False]:g} s, then all start the timed window ({SECONDS[False]:g} s)
  together at a barrier; rounds interleaved, each mode in a fresh schema. The
  CPU of each engine process, of the server (every `postgres` process, from
  `/proc`) and of the whole machine over the window is given as a share of one
  core (1.0 = one core busy), with the rest of the machine's (the kernel, other
  programs): where the machine's cores are all busy, more processes cannot add
  throughput."""


def _label(procs: int, mode: str) -> str:
    noun = "process" if procs == 1 else "processes"
    return f"{procs} {noun} x {CALLERS} callers, {mode} appends"


C1, C2, C4 = (_label(n, "concurrent") for n in (1, 2, 4))
S1, S2, S4 = (_label(n, "serial") for n in (1, 2, 4))
C1W1 = f"{C1}, 1 writer"
"""One process with one group commit in flight (``?writers=1``; 4 by default)."""
THREADS = 8
"""Threads per process appending one event per transaction (the store alone)."""
_DATA = b"x" * 200


def _appenders(procs: int, mode: str) -> str:
    noun = "process" if procs == 1 else "processes"
    return f"{procs} {noun} x {THREADS} threads, one event per append, {mode}"


A1C, A4C = (_appenders(n, "concurrent") for n in (1, 4))
A1S, A4S = (_appenders(n, "serial") for n in (1, 4))


@dataclass(frozen=True)
class Round:
    """What one round measured."""

    done: int
    """Transitions committed by every process in its window."""
    seconds: float
    """The longest process's window."""
    processes: list[float]
    """Each engine process's CPU over its window, in cores."""
    server: float | None
    """Every ``postgres`` process's CPU over the window, in cores (None: no /proc)."""
    machine: float | None
    """The whole machine's busy CPU over the window, in cores (None: no /proc)."""

    @property
    def rest(self) -> float | None:
        """The machine's CPU used by neither the engines nor the server, in cores."""
        if self.machine is None or self.server is None:
            return None
        return self.machine - self.server - sum(self.processes)


# ------------------------------------------------------------------ /proc

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _server_ticks() -> dict[int, int] | None:
    """utime + stime of every process named ``postgres``, or None."""
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    ticks: dict[int, int] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks or None


def _machine_ticks() -> int | None:
    """Busy ticks of every core since boot (all but idle and iowait), or None."""
    try:
        with open("/proc/stat") as f:
            cpu = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(cpu[:8]) - cpu[3] - cpu[4]  # user..steal, less idle, iowait


def _server_cores(
    before: dict[int, int] | None, after: dict[int, int] | None, wall: float
) -> float | None:
    """The server's CPU between two readings, in cores (ended processes: lost)."""
    if before is None or after is None:
        return None
    ticks = sum(t - before.get(pid, 0) for pid, t in after.items())
    return ticks / _TICK / wall


# ------------------------------------------------------------------ child


async def _send_until(engine: Engine, ids: list[str], deadline: float) -> int:
    """One task per id sends ``Increment`` until the deadline; the sends done."""
    done = [0]

    async def caller(iid: str) -> None:
        while time.perf_counter() < deadline:
            await engine.send(iid, Increment(1))
            done[0] += 1

    await asyncio.gather(*(caller(i) for i in ids))
    return done[0]


async def _process(
    url: str, tag: str, seconds: float, warmup: float, barrier: Any, out: Any
) -> None:
    engine = Engine(open_store(url), registry())
    try:
        ids = [f"{tag}-{i}" for i in range(CALLERS)]
        await asyncio.gather(
            *(engine.start(workflow.name, Begin(), instance_id=i) for i in ids)
        )
        await _send_until(engine, ids, time.perf_counter() + warmup)
        await asyncio.to_thread(barrier.wait, _WAIT)
        cpu, t0 = time.process_time(), time.perf_counter()
        done = await _send_until(engine, ids, t0 + seconds)
        elapsed = time.perf_counter() - t0
        out.put(("ok", done, elapsed, time.process_time() - cpu))
    finally:
        await engine.close()


def _appends(
    url: str, tag: str, seconds: float, warmup: float, barrier: Any, out: Any
) -> None:
    """``THREADS`` threads on one store, each appending one event at a time."""
    store = PostgresStore(url, pool_size=THREADS)
    made = [0] * THREADS

    def drive(k: int, deadline: float) -> int:
        n = 0
        while time.perf_counter() < deadline:
            made[k] += 1
            store.append([NewRecord(f"{tag}-{k}-{made[k]}", 1, "Counted", _DATA)])
            n += 1
        return n

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            end = time.perf_counter() + warmup
            list(pool.map(lambda k: drive(k, end), range(THREADS)))
            barrier.wait(_WAIT)
            cpu, t0 = time.process_time(), time.perf_counter()
            done = sum(pool.map(lambda k: drive(k, t0 + seconds), range(THREADS)))
            elapsed = time.perf_counter() - t0
        out.put(("ok", done, elapsed, time.process_time() - cpu))
    finally:
        store.close()


def _child(
    url: str,
    tag: str,
    seconds: float,
    warmup: float,
    barrier: Any,
    out: Any,
    kind: str = "engine",
) -> None:
    """A process of a round (the target of ``multiprocessing``)."""
    try:
        if kind == "appends":
            _appends(url, tag, seconds, warmup, barrier, out)
        else:
            asyncio.run(_process(url, tag, seconds, warmup, barrier, out))
    except BaseException:
        out.put(("error", traceback.format_exc()))
        barrier.abort()
        raise


# ----------------------------------------------------------------- parent


def _round(
    url: str, procs: int, tag: str, seconds: float, warmup: float, kind: str
) -> Round:
    """Run ``procs`` processes of ``kind`` on ``url`` through one timed window."""
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(procs + 1)
    out = mp.Queue()
    children = [
        mp.Process(
            target=_child,
            args=(url, f"{tag}-p{k}", seconds, warmup, barrier, out, kind),
            daemon=True,
        )
        for k in range(procs)
    ]
    for child in children:
        child.start()
    try:
        try:
            barrier.wait(_WAIT)
        except threading.BrokenBarrierError:
            raise RuntimeError(_failure(out, "before the window")) from None
        server0, machine0 = _server_ticks(), _machine_ticks()
        t0 = time.perf_counter()
        got = []
        for _ in children:
            try:
                item = out.get(timeout=seconds + _WAIT)
            except queue.Empty:
                raise RuntimeError("an engine process did not report") from None
            if item[0] != "ok":
                raise RuntimeError(f"an engine process failed:\n{item[1]}")
            got.append(item[1:])
        wall = time.perf_counter() - t0
        server1, machine1 = _server_ticks(), _machine_ticks()
        for child in children:
            child.join(_WAIT)
        if any(child.exitcode != 0 for child in children):
            raise RuntimeError(_failure(out, "after the window"))
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
                child.join()
    machine = (
        None
        if machine0 is None or machine1 is None
        else (machine1 - machine0) / _TICK / wall
    )
    return Round(
        done=sum(done for done, _, _ in got),
        seconds=max(elapsed for _, elapsed, _ in got),
        processes=[cpu / elapsed for _, elapsed, cpu in got],
        server=_server_cores(server0, server1, wall),
        machine=machine,
    )


def _failure(out: Any, when: str) -> str:
    """What the engine processes that failed reported."""
    errors = []
    try:
        while True:
            item = out.get(timeout=5)
            if item[0] == "error":
                errors.append(item[1])
    except queue.Empty:
        pass
    return f"an engine process failed {when}:\n" + (
        "\n".join(errors) or "(no report; it may have been killed)"
    )


def _cores(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _contender(
    label: str,
    url: str,
    procs: int,
    seconds: float,
    warmup: float,
    rounds: dict[str, list[Round]],
    kind: str = "engine",
) -> Contender:
    def go() -> tuple[int, float]:
        n = len(rounds[label]) + 1
        tag = "".join(ch for ch in label if ch.isalnum())
        r = _round(url, procs, f"{tag}-r{n}", seconds, warmup, kind)
        rounds[label].append(r)
        print(
            f"    {label}: CPU in cores, each process "
            f"{', '.join(f'{c:.2f}' for c in r.processes)}; server "
            f"{_cores(r.server)}; machine {_cores(r.machine)} of {os.cpu_count()} "
            f"(the rest {_cores(r.rest)})"
        )
        return r.done, r.seconds

    return Contender(label, go)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _cpu(label: str, rounds: list[Round]) -> str:
    """The CPU of a configuration in words (medians over the rounds)."""
    each = [
        statistics.median(r.processes[k] for r in rounds)
        for k in range(len(rounds[0].processes))
    ]
    return (
        f"{label}: each process {', '.join(f'{c:.2f}' for c in each)}, server "
        f"{_cores(_median([r.server for r in rounds]))}, machine "
        f"{_cores(_median([r.machine for r in rounds]))} (the rest "
        f"{_cores(_median([r.rest for r in rounds]))})"
    )


def run(ctx: BenchContext) -> list[Figure]:
    """Interleave every configuration ``ctx.reps`` times; one figure per ratio."""
    seconds, warmup = SECONDS[ctx.quick], WARMUP[ctx.quick]
    rounds: dict[str, list[Round]] = {
        c: [] for c in (C2, C1, C4, S1, S2, S4, C1W1, A4C, A1C, A4S, A1S)
    }
    with (
        pg_schema(prefix=ctx.schema) as concurrent,
        pg_schema(prefix=ctx.schema) as serial,
    ):
        urls = {}
        for mode, schema in (("concurrent", concurrent), ("serial", serial)):
            urls[mode] = f"{store_url(schema)}&appends={mode}"
            store = PostgresStore(urls[mode])  # the fresh schema records the mode
            try:
                if store.appends != mode:
                    raise RuntimeError(f"{schema} appends {store.appends}, not {mode}")
            finally:
                store.close()

        def contender(
            label: str, mode: str, procs: int, options: str = "", kind: str = "engine"
        ) -> Contender:
            url = urls[mode] + options
            return _contender(label, url, procs, seconds, warmup, rounds, kind)

        fig = measure(
            "scaleout",
            "scaleout",
            unit="transitions/s",
            what="",
            subject=contender(C2, "concurrent", 2),
            baselines=[
                contender(C1, "concurrent", 1),
                contender(C4, "concurrent", 4),
                contender(S1, "serial", 1),
                contender(S2, "serial", 2),
                contender(S4, "serial", 4),
                contender(C1W1, "concurrent", 1, "&writers=1"),
            ],
            reps=ctx.reps,
        )
        appends = measure(
            "scaleout",
            "scaleout",
            unit="appends/s",
            what="",
            subject=contender(A4C, "concurrent", 4, kind="appends"),
            baselines=[
                contender(A1C, "concurrent", 1, kind="appends"),
                contender(A4S, "serial", 4, kind="appends"),
                contender(A1S, "serial", 1, kind="appends"),
            ],
            reps=ctx.reps,
        )
    samples = {C2: fig.samples, **fig.baselines}
    samples.update({A4C: appends.samples, **appends.baselines})
    window = (
        f"{CALLERS} asyncio tasks per engine process, each sending Increment to its "
        f"own counter instance one after another, for {seconds:g} s after a "
        f"{warmup:g} s warm-up, processes started together; CPU over the window "
        f"in cores (1.0 = one core busy, {os.cpu_count()} cores) -- "
    )

    def figure(
        key: str,
        name: str,
        subject: str,
        others: list[str],
        target: Target | None,
        unit: str = "transitions/s",
        what: str = window,
    ) -> Figure:
        cpu = "; ".join(_cpu(c, rounds[c]) for c in (subject, *others))
        return Figure(
            f"scaleout-{key}",
            f"PostgreSQL: {name}",
            unit,
            what + cpu,
            subject,
            samples[subject],
            {c: samples[c] for c in others},
            target=target,
        )

    figs = [
        figure(
            "concurrent-2",
            "committed transitions/s, 2 engine processes on one database",
            C2,
            [C1, S2],
            Target(1.5, ">=", against=C1),
        ),
        figure(
            "concurrent-4",
            "committed transitions/s, 4 engine processes on one database",
            C4,
            [C1, S4],
            None,
        ),
        figure(
            "serial-4",
            "committed transitions/s, 4 engine processes, serial appends",
            S4,
            [S1],
            None,
        ),
        figure(
            "writers",
            "committed transitions/s, 1 engine process, up to 4 group commits "
            "in flight against 1",
            C1,
            [C1W1],
            None,
        ),
        figure(
            "serial-2",
            "committed transitions/s, 2 engine processes, serial appends",
            S2,
            [S1],
            None,
        ),
        figure(
            "concurrent-1",
            "committed transitions/s, 1 engine process, concurrent vs serial",
            C1,
            [S1],
            None,
        ),
    ]
    figs.append(
        figure(
            "appends-4",
            "appends/s of one event each, 4 processes x 8 threads (the store alone)",
            A4C,
            [A4S, A1C, A1S],
            None,
            unit="appends/s",
            what=(
                f"{THREADS} threads per process, each appending one event per "
                "transaction to a stream of its own through PostgresStore.append "
                "(no engine, no group commit: the table lock's ceiling), "
                f"{seconds:g} s after a {warmup:g} s warm-up -- "
            ),
        )
    )
    figs.append(_cpu_figure(rounds[C4]))
    return figs


def _cpu_figure(rounds: list[Round]) -> Figure:
    """The CPU of the 4-process rounds: each process, the server, the machine."""
    baselines: dict[str, list[float]] = {}
    server = [r.server for r in rounds if r.server is not None]
    machine = [r.machine for r in rounds if r.machine is not None]
    if server:
        baselines["PostgreSQL server (every postgres process)"] = server
    if machine:
        baselines[f"whole machine ({os.cpu_count()} cores)"] = machine
    rest = [r.rest for r in rounds if r.rest is not None]
    if rest:
        baselines["the rest of the machine (kernel, other programs)"] = rest
    return Figure(
        "scaleout-cpu-4",
        "PostgreSQL: CPU over the window, 4 engine processes x "
        f"{CALLERS} callers, concurrent appends",
        "cores",
        "user + system CPU seconds over the timed window divided by its wall "
        "seconds (1.0 = one core busy): each engine process (all rounds' "
        "processes; from the process itself), the server (utime + stime of "
        "every postgres process in /proc), the whole machine (/proc/stat) and "
        "what of it neither used; "
        "ratios here are shares of the server's and the machine's CPU",
        "each engine process",
        [c for r in rounds for c in r.processes],
        baselines,
    )
