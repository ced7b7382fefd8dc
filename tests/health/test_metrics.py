"""Prometheus exposition: scraped over HTTP, parsed with prometheus_client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import CommandRejected, WorkflowCodeError
from engine.health.prometheus import serve
from engine.runtime import Engine
from engine.store import open_store
from tests.health import flows
from tests.health.test_rollout_e2e import wait_until

ROOT = Path(__file__).resolve().parents[2]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return float(samples.get((name, tuple(sorted(labels.items()))), 0.0))


async def test_engine_metrics_scraped_over_http(sqlite_url: str) -> None:
    server = serve(0)
    port = server.server_port
    try:
        before = scrape(port)
        outcomes = {"accepted": 0, "rejected": 0, "crashed": 0}
        async with Engine(open_store(sqlite_url), flows.registry(), metrics=True) as e:
            await e.start("tills", flows.Open(), instance_id="m", version=3)
            outcomes["accepted"] += 1
            for n in range(30):
                try:
                    await e.send("m", flows.Work(n))
                    outcomes["accepted"] += 1
                except CommandRejected:
                    outcomes["rejected"] += 1
                except WorkflowCodeError:
                    outcomes["crashed"] += 1
            await e.send("m", flows.Close())
            outcomes["accepted"] += 1
        after = scrape(port)
    finally:
        server.shutdown()
    lab = {"workflow": "tills", "version": "3"}
    for outcome, n in outcomes.items():
        got = value(after, "nonstop_commands_total", outcome=outcome, **lab)
        assert (
            got - value(before, "nonstop_commands_total", outcome=outcome, **lab) == n
        )
    count = value(after, "nonstop_command_seconds_count", **lab) - value(
        before, "nonstop_command_seconds_count", **lab
    )
    assert count == outcomes["accepted"]
    for name, n in (("started", 1), ("completed", 1), ("failed", 0)):
        metric = f"nonstop_instances_{name}_total"
        assert value(after, metric, **lab) - value(before, metric, **lab) == n


@pytest.mark.slow
def test_metrics_serve_reports_projection_lag(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    from engine.store import NewRecord, Tracking

    store.append(
        [NewRecord(f"s{i}", 1, "x", b"\x90") for i in range(5)],
        tracking=Tracking("tally", 2),
    )
    store.close()
    port = free_port()
    code = "import sys; from engine.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["--store", sqlite_url, "metrics", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv, "--projection", "tally"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            try:
                scrape(port)
                return True
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_until(up, 30)
        got = scrape(port)
        assert value(got, "nonstop_log_head") == 5
        assert value(got, "nonstop_projection_lag", projection="tally") == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
