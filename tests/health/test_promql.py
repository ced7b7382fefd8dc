"""Metric checks by PromQL against a real Prometheus server scraping nonstop."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from engine.cli import main
from engine.core.errors import RolloutError
from engine.deploy import Deployments
from engine.health import Health
from engine.health.controller import Rollouts
from engine.health.events import MetricCheck
from engine.health.prometheus import HealthCollector, serve
from engine.health.promql import PromQL
from engine.health.rollout import RolloutPlan
from engine.store import EventStore, open_store

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None and not os.environ.get("CI"),
        reason="Debian's prometheus is not installed (make debs installs it)",
    ),
]

REJECTED = (
    'sum(nonstop_commands_total{workflow="$workflow",version="$version",'
    'outcome="rejected"})'
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, HealthCollector]]:
    """A Prometheus server scraping a ``/metrics`` of this process every second."""
    assert PROMETHEUS is not None, "CI needs Debian's prometheus (make debs)"
    collector = HealthCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    target = _free_port()
    server = serve(target, registry=registry)
    port = _free_port()
    d = tmp_path_factory.mktemp("prometheus")
    (d / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: nonstop\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
    )
    log = (d / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={d / 'prometheus.yml'}",
            f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _ready(url), 60, "Prometheus to be ready")
        yield url, collector
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        server.shutdown()


def _rollout(
    store: EventStore, url: str, check: MetricCheck
) -> tuple[Rollouts, Health, list[float]]:
    now = [1_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    ops = Deployments(store)
    if 1 not in ops.refresh().workflow("tills").deployments:
        ops.deploy("tills", 1, "tests.health.flows:v1", by="t")
    rollouts = Rollouts(store, clock=clock, bucket_seconds=1, settle=0)
    plan = RolloutPlan(
        "tills",
        2,
        steps=(50, 100),
        interval=10,
        min_sample=5,
        max_error_rate=1.0,  # the store's counts alone never fail a window here
        failure_limit=1,
        prometheus=url,
        metrics=(check,),
    )
    rollouts.start(plan, source="tests.health.flows:v2", by="t")
    return rollouts, Health(store, bucket_seconds=1, clock=clock), now


def _traffic(health: Health, collector: HealthCollector, url: str) -> None:
    """Ten good commands per version and three rejections of v2, scraped."""
    collector.add(health)
    for _ in range(10):
        health.accepted("tills", 2, start=False, status="running", seconds=0.01)
        health.accepted("tills", 1, start=False, status="running", seconds=0.01)
    for _ in range(3):
        health.rejected("tills", 2)
    health.flush()
    query = REJECTED.replace("$workflow", "tills").replace("$version", "2")
    _until(lambda: PromQL(url).value(query) == 3, 30, "Prometheus to scrape them")


@pytest.mark.parametrize(
    ("check", "action", "verdict", "reason"),
    [
        # the store's counts pass the window (max_error_rate 1): the metric fails it
        (
            MetricCheck("rejections", REJECTED + " or vector(0)", max=0),
            "rollback",
            "fail",
            "metric rejections 3 (max 0)",
        ),
        (MetricCheck("rejections", REJECTED, max=5), "complete", "pass", ""),
        (
            MetricCheck("absent", 'sum(nonstop_commands_total{workflow="no"})', max=1),
            "hold",
            "inconclusive",
            "metric absent not judged: the query returned no sample",
        ),
    ],
    ids=["fails", "passes", "no-data-holds"],
)
def test_a_metric_check_judges_each_window(
    prometheus: tuple[str, HealthCollector],
    sqlite_url: str,
    check: MetricCheck,
    action: str,
    verdict: str,
    reason: str,
) -> None:
    url, collector = prometheus
    store = open_store(sqlite_url)
    rollouts, health, now = _rollout(store, url, check)
    _traffic(health, collector, url)
    now[0] += 10
    [decided] = rollouts.tick()
    assert (decided.action, decided.verdict) == (action, verdict)
    assert reason in decided.reason
    routing = Deployments(store).refresh().workflow("tills").routing
    assert routing is not None
    assert routing.stable == (1 if action in ("rollback", "hold") else 2)
    health.close()
    store.close()


def test_a_plan_whose_query_prometheus_refuses_is_not_started(
    prometheus: tuple[str, HealthCollector], sqlite_url: str
) -> None:
    url, _ = prometheus
    store = open_store(sqlite_url)
    with pytest.raises(RolloutError, match=r"metric check 'bad'.*bad_data"):
        _rollout(store, url, MetricCheck("bad", "sum(", max=1))
    with pytest.raises(RolloutError, match="did not answer"):
        _rollout(
            store, f"http://127.0.0.1:{_free_port()}", MetricCheck("x", "1", max=1)
        )
    with pytest.raises(RolloutError, match="returns 2 series"):
        two = 'label_replace(vector(1), "a", "1", "", "") or vector(2)'
        _rollout(store, url, MetricCheck("two", two, max=1))
    assert Rollouts(store).refresh().latest("tills") is None  # nothing written
    store.close()


def test_metric_queries_from_the_command_line(
    prometheus: tuple[str, HealthCollector],
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url, _ = prometheus
    base = ["--store", sqlite_url, "--app", "tests.health.flows:registry"]
    assert (
        main([*base, "deploy", "tills", "1", "--source", "tests.health.flows:v1"]) == 0
    )
    start = [*base, "rollout", "start", "tills", "2", "--source"]
    start += ["tests.health.flows:v2", "--prometheus", url]
    assert main([*start, "--metric-query", "rejections", "lots", "1"]) != 0
    err = capsys.readouterr().err
    assert "--metric-query rejections: MAX 'lots' is not a number" in err
    assert main([*start, "--metric-query", "rejections", "0", REJECTED]) == 0
    capsys.readouterr()
    assert main([*base, "rollout", "status", "tills"]) == 0
    out = capsys.readouterr().out
    assert "metric checks on" in out and "rejections (max 0)" in out
