"""``nonstop migrate`` shows progress and stops cleanly on Ctrl-C.

The user's mapper waits at one instance for a gate file, so the test knows an
instance is in flight when it sends SIGINT; then it opens the gate. The command
must finish that instance, say how many it migrated and where it stopped, exit
130; a second run must migrate the rest, none twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine.store import open_store
from tests.deploy.test_instances_cli import LOANS

pytestmark = pytest.mark.timeout(180)

NONSTOP = str(Path(sys.executable).parent / "nonstop")
COUNT = 20
GATE_AT = 7  # the mapper waits at the 8th instance

GATED = """

import os
import time
from pathlib import Path


def gated(state: Loan) -> Loan:
    if state.applicant == os.environ.get("GATE_AT"):
        gate = Path(os.environ["GATE"])
        (gate.parent / "waiting").touch()
        while not gate.exists():  # the test opens it after SIGINT
            time.sleep(0.005)
    return msgspec.structs.replace(state, note="migrated")
"""

FILL = """
import asyncio
import loans
from engine import Engine

async def main() -> None:
    async with Engine(URL, loans.registry()) as engine:
        for i in range(COUNT):
            await engine.start(
                "loans", loans.Apply(f"a{i}", i), instance_id=f"l{i:02d}", version=1
            )

asyncio.run(main())
"""


def _run(home: Path, url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NONSTOP, "--store", url, "--app", "loans:registry", *argv],
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _until(path: Path, proc: subprocess.Popen[str]) -> None:
    async def poll() -> None:
        while not path.exists():
            assert proc.poll() is None, proc.communicate()
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout=60)


def _migrated(url: str) -> Counter[str]:
    store = open_store(url)
    try:
        return Counter(r.stream_id for r in store.iter_all(types=["nonstop.Migrated"]))
    finally:
        store.close()


async def test_ctrl_c_finishes_the_instance_in_flight_and_a_rerun_goes_on(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "loans.py").write_text(LOANS + GATED)
    url = f"sqlite:///{tmp_path / 'loans.db'}"
    filled = subprocess.run(
        [
            sys.executable,
            "-c",
            FILL.replace("URL", repr(url)).replace("COUNT", str(COUNT)),
        ],
        cwd=home,
        env={**os.environ, "PYTHONPATH": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert filled.returncode == 0, filled.stderr
    for v in (1, 2):
        done = _run(home, url, "deploy", "loans", str(v), "--source", f"loans:v{v}")
        assert done.returncode == 0, done.stderr

    gate = tmp_path / "gate"
    argv = ["migrate", "loans", "--from", "1", "--to", "2", "--mapper", "loans:gated"]
    env = {**os.environ, "GATE": str(gate), "GATE_AT": f"a{GATE_AT}"}
    proc = subprocess.Popen(
        [NONSTOP, "--store", url, "--app", "loans:registry", *argv],
        cwd=home,
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
    first = GATE_AT + 1  # the ones before the gate, and the one in flight
    assert f"{first} migrated, 0 failed" in out, out
    assert f"stopped by Ctrl-C before l{first:02d}" in out, out
    assert f"{COUNT - first} still run v1" in out, out
    assert f"{first}/{COUNT}" in out, out  # the progress bar: done/total
    assert "instances/s" in out, out
    migrated = _migrated(url)
    assert sorted(migrated) == [f"l{i:02d}" for i in range(first)]

    again = _run(home, url, *argv)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{COUNT - first} migrated, 0 failed" in again.stdout
    assert f"{COUNT - first}/{COUNT - first}" in again.stdout
    migrated = _migrated(url)
    assert sorted(migrated) == [f"l{i:02d}" for i in range(COUNT)]
    assert set(migrated.values()) == {1}  # nothing migrated twice

    audit = _run(home, url, "audit", "loans")
    assert f"{first} instance(s) v1 -> v2" in audit.stdout, audit.stdout
