"""``projections run|rebuild`` stop cleanly on Ctrl-C and show progress.

A user projection's handler waits at one event for a gate file, so the test
knows a batch is in flight when it sends SIGINT; then it opens the gate. The
command must commit that batch, say where it stopped, exit 130, and a second
run must go on from there to the end.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import Engine
from engine.demo import orders
from engine.store import open_store
from projections import open_database, status

pytestmark = pytest.mark.timeout(120)

GATED = """
import os, time
from pathlib import Path
from projections import Projection

GATE = Path(os.environ["GATE"])
AT = int(os.environ["GATE_AT"])

def build():
    p = Projection("gated", tables=["seen"])

    @p.setup
    def create(tx):
        tx.execute(f"CREATE TABLE {tx.table('seen')} (g BIGINT PRIMARY KEY)")

    @p.on("*")
    def seen(tx, e):
        if e.global_position == AT:
            (GATE.parent / "waiting").touch()
            while not GATE.exists():  # the test opens it after SIGINT
                time.sleep(0.005)
        seen = tx.table("seen")
        tx.execute(f"INSERT INTO {seen} (g) VALUES (?)", (e.global_position,))

    return [p]
"""


async def _fill(url: str, count: int) -> int:
    """``count`` paid orders (the CLI's default app); the store's head."""
    async with Engine(url, orders.registry()) as engine:
        for i in range(count):
            await engine.start(
                "orders", orders.PlaceOrder(f"o-{i}", 5, "ada"), instance_id=f"i{i}"
            )
            await engine.send(f"i{i}", orders.Pay(5))
        return engine.store.last_global_position()


async def _until(path: Path, proc: subprocess.Popen[str]) -> None:
    async def poll() -> None:
        while not path.exists():
            assert proc.poll() is None, proc.communicate()
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout=60)


def _position(url: str, name: str) -> int:
    store = open_store(url)
    try:
        with open_database(url) as db:
            (row,) = [s for s in status(db, store) if s.name == name]
            return int(row.position)
    finally:
        store.close()


async def test_ctrl_c_commits_the_batch_in_flight_and_says_where(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    head = await _fill(url, 100)
    (tmp_path / "gated.py").write_text(textwrap.dedent(GATED))
    gate = tmp_path / "gate"
    env = {"GATE": str(gate), "GATE_AT": "155", "PATH": "/usr/bin:/bin"}
    nonstop = str(Path(sys.executable).parent / "nonstop")
    run = [nonstop, "--store", url, "projections", "run", "--once", "--batch", "20"]
    run += ["--projections", "gated:build"]
    proc = subprocess.Popen(
        run,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await _until(tmp_path / "waiting", proc)
        proc.send_signal(signal.SIGINT)
        gate.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    at = _position(url, "gated")
    assert 155 <= at < head  # the gated batch committed, not the rest
    assert f"gated: stopped at global position {at} of {head}" in out
    assert "run it again to go on" in out

    again = subprocess.run(
        run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert _position(url, "gated") == head
    with open_database(url) as db:
        rows = db.query("SELECT count(*), count(DISTINCT g) FROM gated_seen")
    assert rows == [(head, head)]  # every event once across the stop
