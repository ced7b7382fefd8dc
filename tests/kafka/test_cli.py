"""``nonstop worker``, ``publish`` and ``deadletters`` from the command line."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from engine import Engine, open_store
from engine.cli import main
from engine.health.lease import Lease
from engine.health.window import read_window
from engine.store import DeadLetter
from tests.kafka import tally
from tests.kafka.conftest import create_topic, produce, wait_until

APP = "tests.kafka.tally:registry"


def _letter(offset: int) -> DeadLetter:
    return DeadLetter("g", "orders", 0, offset, "mapping failed: bad JSON", b"k", b"{x")


def test_deadletters_list_shows_pending_letters_and_all_of_them(sqlite_url, capsys):
    with open_store(sqlite_url) as store:
        store.append([], dead_letters=[_letter(4), _letter(5)])
        first = store.dead_letters()[0]
        store.mark_dead_letter_replayed(first.id, "orders")
    assert main(["--store", sqlite_url, "deadletters", "list"]) == 0
    out = capsys.readouterr().out
    assert "orders/0/5" in out and "orders/0/4" not in out
    assert "mapping failed: bad JSON" in out and "1 dead letter" in out
    assert main(["--store", sqlite_url, "deadletters", "list", "--all"]) == 0
    out = capsys.readouterr().out
    assert "orders/0/4" in out and "2 dead letters" in out


def test_worker_refuses_a_bad_mapping_and_bad_numbers(sqlite_url, capsys):
    base = ["--store", sqlite_url, "--app", APP, "worker", "--kafka", "127.0.0.1:1"]
    args = [*base, "--topic", "t", "--group", "g", "--mapping", "nowhere:fn"]
    assert main(args) == 2
    assert "cannot load the mapping 'nowhere:fn'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*args[:-1], "tests.kafka.tally:mapping", "--max-batch", "0"])
    assert exc.value.code == 2
    assert "expected a whole number >= 1, got '0'" in capsys.readouterr().err


@pytest.mark.kafka
def test_replay_of_an_unknown_letter_is_refused(kafka, sqlite_url, capsys):
    open_store(sqlite_url).close()
    code = main(
        ["--store", sqlite_url, "deadletters", "replay", "--kafka", kafka, "999"]
    )
    assert code == 2
    assert "no dead letter with id 999" in capsys.readouterr().err


@pytest.mark.kafka
def test_publish_once_relays_what_is_committed(kafka, sqlite_url, capsys):
    async def setup() -> str:
        async with Engine(sqlite_url, tally.registry()) as engine:
            await engine.start("tally", tally.Open(), instance_id="a")
            await engine.send("a", tally.Add(2))
        return await create_topic(kafka)

    topic = asyncio.run(setup())
    argv = ["--store", sqlite_url, "--app", APP, "publish", "--kafka", kafka]
    assert main([*argv, "--topic", topic, "--once"]) == 0
    assert f"published 2 events to {topic}" in capsys.readouterr().out
    assert main([*argv, "--topic", topic, "--once"]) == 0
    assert f"published 0 events to {topic}" in capsys.readouterr().out


@pytest.mark.kafka
def test_the_kafka_demo_switches_versions_mid_stream(kafka, sqlite_url, capsys):
    argv = ["demo", "--store", sqlite_url, "--instances", "60", "--seed", "1"]
    assert main([*argv, "--kafka", kafka]) == 0
    out = capsys.readouterr().out
    assert "demo OK" in out
    assert "orders@1" in out and "orders@2" in out  # both versions ran
    assert "3 dead-lettered" in out


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_worker_counts_health_and_runs_the_rollout_guard(
    kafka, sqlite_url, tmp_path
):
    """`nonstop worker` flushes per-version health and holds the controller lease."""
    topic = await create_topic(kafka, partitions=1)
    await produce(
        kafka,
        topic,
        [(b"t1", b'{"open": true}')] + [(b"t1", b'{"add": 1}')] * 9,
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.cli",
        "--store",
        sqlite_url,
        "--app",
        APP,
        "worker",
        "--kafka",
        kafka,
        "--topic",
        topic,
        "--group",
        "g-guard",
        "--mapping",
        "tests.kafka.tally:mapping",
        cwd=Path(__file__).resolve().parents[2],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    store = open_store(sqlite_url)
    lease = Lease(store, "reader", ttl=10)
    try:

        async def counted() -> bool:
            now = time.time()
            counts = read_window(store, "tally", 1, now - 300, now + 60)
            return counts.accepted >= 10

        async def leased() -> bool:
            _, taken = lease.current()
            return taken is not None and taken.expires > time.time()

        await wait_until(counted, 60, "the worker's health flush")
        await wait_until(leased, 30, "the worker's rollout controller lease")
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err.decode()
    assert "10 applied" in out.decode()
    _, taken = lease.current()
    assert taken is not None and taken.expires <= time.time()  # released on stop
    store.close()
