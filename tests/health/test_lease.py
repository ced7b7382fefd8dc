"""One active rollout controller per store: exclusivity and takeover."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.core.codec import EventCodec
from engine.health.events import LEASE_STREAM, LeaseTaken
from engine.health.lease import Lease
from engine.store import open_store
from tests.health.test_rollout_e2e import wait_until

ROOT = Path(__file__).resolve().parents[2]
TTL = 1.0
POLL = 0.2


def leases(url: str) -> list[LeaseTaken]:
    codec = EventCodec()
    store = open_store(url)
    try:
        return [
            e.event
            for r in store.read_stream(LEASE_STREAM)
            for e in codec.decode(r.stream_id, r.position, 0, r.type, r.data)
        ]
    finally:
        store.close()


def controller(url: str) -> subprocess.Popen[bytes]:
    code = "import sys; from engine.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["--store", url, "rollout", "run", "--ttl", f"{TTL}s", "--poll", f"{POLL}s"]
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )


def exclusive(history: list[LeaseTaken]) -> None:
    """A lease changes hands only after the previous one expired."""
    for prev, nxt in itertools.pairwise(history):
        if nxt.holder != prev.holder:
            assert nxt.at >= prev.expires, (prev, nxt)


@pytest.mark.slow
def test_two_controllers_one_holds_and_the_other_takes_over_after_sigkill(
    durable_url: str,
) -> None:
    procs = [controller(durable_url) for _ in range(2)]
    try:
        wait_until(lambda: len(leases(durable_url)) >= 6, 30)
        history = leases(durable_url)
        holders = {h.holder for h in history}
        assert len(holders) == 1  # the other never got it while renewed
        holder_pid = int(history[-1].holder.rsplit(":", 1)[1])
        victim = next(p for p in procs if p.pid == holder_pid)
        other = next(p for p in procs if p is not victim)
        victim.send_signal(signal.SIGKILL)
        killed = time.time()
        wait_until(lambda: leases(durable_url)[-1].holder.endswith(f":{other.pid}"), 30)
        history = leases(durable_url)
        taken = next(h for h in history if h.holder.endswith(f":{other.pid}"))
        # Replaced within one lease plus one pass (the controller's interval).
        assert taken.at - killed <= TTL + POLL + 0.5
        exclusive(history)
        other.send_signal(signal.SIGTERM)
        assert other.wait(timeout=30) == 0
        last = leases(durable_url)[-1]
        assert last.holder.endswith(f":{other.pid}") and last.expires == last.at
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


def test_a_lease_is_taken_by_one_of_two_and_released(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    now = [100.0]
    a = Lease(store, "a", ttl=5, clock=lambda: now[0])
    b = Lease(store, "b", ttl=5, clock=lambda: now[0])
    assert a.acquire() and not b.acquire()
    assert a.held(margin=1) and not b.held()
    now[0] = 104.0
    assert a.acquire() and not b.acquire()  # renewed until 109
    now[0] = 108.5
    assert not a.held(margin=1) and a.held()
    now[0] = 109.5
    assert not a.held() and b.acquire() and not a.acquire()
    b.release()
    assert a.acquire()
    exclusive(leases(sqlite_url))
    store.close()
