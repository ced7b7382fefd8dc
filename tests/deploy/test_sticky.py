"""Routing through a real engine: a 0 % canary, bucket edges, other processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.deploy import Deployments, bucket, open_engine
from tests.deploy import flows

SRC = "tests.deploy.flows"
ROOT = Path(__file__).resolve().parents[2]
KEYS = [f"customer-{i}" for i in range(300)]

_STARTER = """
import asyncio, json, sys
from engine.deploy import open_engine
from tests.deploy import flows

async def main(url, prefix):
    engine = open_engine(url, flows.registry())
    got = {}
    try:
        for key in json.loads(sys.stdin.read()):
            info = await engine.start(
                "jobs", flows.Begin(), instance_id=f"{prefix}-{key}", routing_key=key
            )
            got[key] = info.version
    finally:
        await engine.close()
    print(json.dumps(got))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _canary(url: str, percent: float) -> None:
    with Deployments(url) as ops:
        ops.deploy("jobs", 1, f"{SRC}:v1")
        ops.deploy("jobs", 4, f"{SRC}:v4", canary=percent)


def _key_in_bucket(wanted: int) -> str:
    for i in range(2_000_000):
        if bucket("jobs", f"edge-{i}") == wanted:
            return f"edge-{i}"
    raise AssertionError(f"no key in bucket {wanted}")  # pragma: no cover


async def test_a_zero_canary_gets_no_instance(sqlite_url: str) -> None:
    _canary(sqlite_url, 0)
    engine = open_engine(sqlite_url, flows.registry())
    try:
        async with asyncio.timeout(60):
            versions = {
                (await engine.start("jobs", flows.Begin(), routing_key=k)).version
                for k in KEYS
            }
    finally:
        await engine.close()
    assert versions == {1}


async def test_the_edge_buckets_of_a_canary(sqlite_url: str) -> None:
    _canary(sqlite_url, 12.5)
    last_in, first_out = _key_in_bucket(1249), _key_in_bucket(1250)
    engine = open_engine(sqlite_url, flows.registry())
    try:
        async with asyncio.timeout(60):
            a = await engine.start("jobs", flows.Begin(), routing_key=last_in)
            b = await engine.start("jobs", flows.Begin(), routing_key=first_out)
    finally:
        await engine.close()
    assert (a.version, b.version) == (4, 1)


def _start_in_a_process(url: str, prefix: str, seed: str) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", _STARTER, url, prefix],
        input=json.dumps(KEYS),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got: dict[str, int] = json.loads(done.stdout)
    return got


def test_keys_route_the_same_in_separate_processes(sqlite_url: str) -> None:
    _canary(sqlite_url, 30)
    # Different hash seeds: routing must not depend on Python's str hash.
    first = _start_in_a_process(sqlite_url, "a", "1")
    second = _start_in_a_process(sqlite_url, "b", "2")
    assert first == second
    assert set(first.values()) == {1, 4}  # both versions got keys
    expected = {k: 4 if bucket("jobs", k) < 3000 else 1 for k in KEYS}
    assert first == expected


@pytest.mark.postgres
def test_processes_on_postgres_route_alike(pg_url: str) -> None:
    _canary(pg_url, 50)
    first = _start_in_a_process(pg_url, "a", "3")
    second = _start_in_a_process(pg_url, "b", "4")
    assert first == second and set(first.values()) == {1, 4}
