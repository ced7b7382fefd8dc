"""Exactly-once effect: a worker process killed mid-stream, restarted, and a group.

The killed worker is a real ``nonstop worker`` process, stopped with SIGKILL at
random points while messages keep arriving: whatever it committed stays, what it
had not committed is applied by the next one, and nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine
from engine.kafka.worker import Worker
from tests.kafka import tally
from tests.kafka.conftest import (
    FAST_GROUP,
    Produced,
    create_topic,
    produce,
    tracked,
    wait_until,
)

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

ROOT = Path(__file__).resolve().parents[2]
KEYS = [f"k{i}" for i in range(12)]


def _messages(start: int, count: int) -> list[tuple[bytes, bytes]]:
    return [
        (KEYS[i % len(KEYS)].encode(), json.dumps({"add": i % 9 + 1}).encode())
        for i in range(start, start + count)
    ]


def _expected(total: int) -> dict[str, tuple[int, int]]:
    out = dict.fromkeys(KEYS, (0, 0))
    for i in range(total):
        k = KEYS[i % len(KEYS)]
        s, c = out[k]
        out[k] = (s + i % 9 + 1, c + 1)
    return out


async def _feed(
    kafka: str,
    topic: str,
    produced: Produced,
    total: int,
    gate: asyncio.Event | None = None,
) -> None:
    """Produce ``total`` adds in chunks while the workers run.

    With a ``gate``, the second half waits until the gate is set.
    """
    for start in range(0, total, 400):
        if gate is not None and start >= total // 2:
            await gate.wait()
        await produce(kafka, topic, _messages(start, min(400, total - start)), produced)
        await asyncio.sleep(0.05)  # a stream, not one burst


async def _check(pg_url: str, total: int) -> None:
    async with Engine(pg_url, tally.registry()) as engine:
        for key, (s, c) in _expected(total).items():
            info = await engine.get(key)
            assert (info.state.total, info.state.count) == (s, c), key
            ids = [e.command_id for e in await engine.history(key)][1:]
            assert len(ids) == len(set(ids)) == c  # each message applied once


async def _open(kafka: str, topic: str, produced: Produced) -> None:
    await produce(
        kafka, topic, [(k.encode(), b'{"open": true}') for k in KEYS], produced
    )


def _worker(kafka: str, topic: str, pg_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "--store",
        pg_url,
        "--app",
        "tests.kafka.tally:registry",
        "worker",
        "--kafka",
        kafka,
        "--topic",
        topic,
        "--group",
        "g",
        "--mapping",
        "tests.kafka.tally:mapping",
        "--max-batch",
        "250",
        "--session-timeout-ms",
        "2000",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)


async def test_a_worker_killed_at_random_points_applies_everything_once(
    kafka, pg_url, tmp_path
):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    topic = await create_topic(kafka)
    produced = Produced()
    await _open(kafka, topic, produced)
    total = 8_000
    feeding = asyncio.create_task(_feed(kafka, topic, produced, total))
    log = tmp_path / "worker.log"
    from engine import open_store

    store = open_store(pg_url)
    try:

        async def progress() -> int:
            now = await asyncio.to_thread(tracked, store, "g", topic, 3)
            return sum(now.values())

        for kill in range(3):
            proc = _worker(kafka, topic, pg_url, log)
            target = await progress() + rng.randint(100, 1500)

            async def advanced(
                target: int = target, proc: subprocess.Popen[bytes] = proc
            ) -> bool:
                assert proc.poll() is None, log.read_text()
                return await progress() >= target

            await wait_until(advanced, 60, f"progress before kill {kill} (seed {seed})")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        await feeding
        proc = _worker(kafka, topic, pg_url, log)

        async def finished() -> bool:
            assert proc.poll() is None, log.read_text()
            return await progress() == produced.total

        await wait_until(finished, 90, f"the last worker to finish (seed {seed})")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        store.close()
    assert "worker stopped" in log.read_text()
    await _check(pg_url, total)


async def test_two_workers_in_a_group_one_stops_the_other_takes_over(kafka, pg_url):
    topic = await create_topic(kafka)
    produced = Produced()
    await _open(kafka, topic, produced)
    total = 6_000
    gate = asyncio.Event()
    feeding = asyncio.create_task(_feed(kafka, topic, produced, total, gate))
    async with (
        Engine(pg_url, tally.registry()) as e1,
        Engine(pg_url, tally.registry()) as e2,
    ):
        w1 = Worker(
            e1,
            bootstrap=kafka,
            topics=[topic],
            group="g",
            mapping=tally.mapping,
            max_batch=200,
            consumer_options=FAST_GROUP,
        )
        w2 = Worker(
            e2,
            bootstrap=kafka,
            topics=[topic],
            group="g",
            mapping=tally.mapping,
            max_batch=200,
            consumer_options=FAST_GROUP,
        )
        stop1, stop2 = asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(w1.run(stop1))
        t2 = asyncio.create_task(w2.run(stop2))

        async def both_working() -> bool:
            for t in (t1, t2):
                if t.done():
                    t.result()
            return w1.stats.applied > 0 and w2.stats.applied > 0

        # Both own partitions and have applied some: the group is shared.

        await wait_until(both_working, 60, "both workers to apply messages")
        stop2.set()
        gate.set()  # the stream goes on while w2 stops
        await t2
        assert w2.partitions == []  # it gave its partitions up

        async def took_over() -> bool:
            return len(w1.partitions) == 3

        await wait_until(took_over, 30, "the survivor to own every partition")
        await feeding

        async def done() -> bool:
            if t1.done():
                t1.result()
            now = await asyncio.to_thread(tracked, e1.store, "g", topic, 3)
            return now == produced.ends

        await wait_until(done, 90, "the survivor to finish")
        stop1.set()
        await t1
        assert w1.partitions == []
    assert w1.stats.applied + w2.stats.applied >= total
    await _check(pg_url, total)
