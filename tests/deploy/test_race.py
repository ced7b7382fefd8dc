"""Routing changes of one workflow are serialised: racing commands never both win.

Each race holds both commands' appends until both have decided on the same
registry view, so the race is certain, not a matter of timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.deploy import CanaryActive, DeployConflict, Deployments
from engine.deploy.events import INDEX_STREAM, deploy_stream
from engine.store import EventStore, open_store

SRC = "tests.deploy.flows"
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


@pytest.fixture
def shared(store_url: str) -> Iterator[EventStore]:
    s = open_store(store_url)
    yield s
    s.close()


def _gate_appends(store: EventStore, parties: int) -> None:
    """Hold each of the next ``parties`` appends until all of them arrived.

    Every racer has then decided on the same registry view before any writes.
    """
    barrier = threading.Barrier(parties, timeout=TIMEOUT)
    real = store.append
    waits = iter(range(parties))
    lock = threading.Lock()

    def append(records: Any, **kw: Any) -> Any:
        with lock:
            gated = next(waits, None) is not None
        if gated:
            barrier.wait()
        return real(records, **kw)

    store.append = append  # type: ignore[method-assign]


def _race(*changes: Callable[[], object]) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = [None] * len(changes)

    def run(i: int) -> None:
        try:
            changes[i]()
        except BaseException as exc:  # reported to the test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(changes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive(), "a racing command hung"
    return outcomes


Change = Callable[[Deployments], object]
RACES: dict[str, tuple[Change, Change, tuple[int, int]]] = {
    "two canaries": (
        lambda d: d.deploy("jobs", 4, f"{SRC}:v4", canary=10, replace=True, by="ann"),
        lambda d: d.deploy("jobs", 6, f"{SRC}:v6", canary=20, replace=True, by="bob"),
        (2, 2),
    ),
    "promote and rollback": (
        lambda d: d.promote("jobs", 2, percent=50, by="ann"),
        lambda d: d.rollback("jobs", by="bob"),
        (1, 1),
    ),
    "deploy and promote": (
        lambda d: d.deploy("jobs", 4, f"{SRC}:v4", by="ann"),
        lambda d: d.promote("jobs", 2, by="bob"),
        (2, 1),
    ),
}


@pytest.mark.parametrize("race", sorted(RACES))
def test_racing_changes_on_one_view_never_both_win(
    shared: EventStore, race: str
) -> None:
    setup = Deployments(shared, poll_interval=0.0)
    setup.deploy("jobs", 1, f"{SRC}:v1")
    setup.deploy("jobs", 2, f"{SRC}:v2", canary=5)
    before = setup.refresh().positions[deploy_stream("jobs")]
    ann, bob = (Deployments(shared, poll_interval=0.0) for _ in range(2))
    first, second, events = RACES[race]
    _gate_appends(shared, 2)
    outcomes = _race(lambda: first(ann), lambda: second(bob))
    lost = [o for o in outcomes if o is not None]
    assert len(lost) == 1, outcomes
    assert isinstance(lost[0], DeployConflict)
    message = str(lost[0])
    assert "changed while this command ran" in message
    assert "nothing was written" in message
    winner = "ann" if outcomes[0] is None else "bob"
    assert f"by {winner}" in message  # the loser names the change that won
    view = Deployments(shared).refresh()
    written = view.positions[deploy_stream("jobs")] - before
    assert written == events[0 if winner == "ann" else 1]
    assert view.audit[-1].by == winner


def test_a_second_canary_is_refused_without_replace(
    deployments: Deployments,
) -> None:
    deployments.deploy("jobs", 1, f"{SRC}:v1")
    deployments.deploy("jobs", 2, f"{SRC}:v2", canary=10, by="ann")
    stream = deploy_stream("jobs")
    at = deployments.refresh().positions[stream]
    with pytest.raises(
        CanaryActive, match=r"already has a canary: v2 at 10 %.*--replace"
    ):
        deployments.deploy("jobs", 4, f"{SRC}:v4", canary=20)
    assert deployments.refresh().positions[stream] == at  # nothing written
    routing = deployments.deploy(
        "jobs", 4, f"{SRC}:v4", canary=20, replace=True, by="bob", reason="v2 slow"
    )
    assert routing.describe() == "v1: 80 %, v4: 20 %"
    wd = deployments.view.workflow("jobs")
    assert wd.replaced == 2
    assert wd.deployments[2].state == "draining"
    last = deployments.view.audit[-1]
    assert (last.by, last.reason) == ("bob", "v2 slow")
    assert "replaces canary v2" in last.detail
    # Raising the share of the same canary replaces nothing.
    deployments.promote("jobs", 4, percent=30)
    assert deployments.view.workflow("jobs").replaced is None


def test_promoting_another_version_beside_a_canary_needs_replace(
    deployments: Deployments,
) -> None:
    deployments.deploy("jobs", 1, f"{SRC}:v1")
    deployments.deploy("jobs", 2, f"{SRC}:v2", canary=10)
    deployments.rollback("jobs")
    deployments.deploy("jobs", 4, f"{SRC}:v4", canary=10)
    with pytest.raises(CanaryActive):
        deployments.promote("jobs", 2, percent=30)
    routing = deployments.promote("jobs", 2, percent=30, replace=True)
    assert routing.describe() == "v1: 70 %, v2: 30 %"
    assert "replaces canary v4" in deployments.view.audit[-1].detail


def test_the_first_change_of_a_workflow_lists_its_stream(
    deployments: Deployments,
) -> None:
    deployments.deploy("jobs", 1, f"{SRC}:v1")
    deployments.deploy("jobs", 4, f"{SRC}:v4")
    deployments.deploy("other", 1, f"{SRC}:v1", check=False)
    index = deployments.store.read_stream(INDEX_STREAM)
    assert len(index) == 2  # one entry per workflow stream, not per change
    assert deployments.view.streams == {deploy_stream("jobs"), deploy_stream("other")}


# ------------------------------------------------- real processes, PostgreSQL


def _nonstop(url: str, cwd: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--store", url, *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _done(p: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


@pytest.mark.postgres
def test_racing_deploy_processes_never_both_win(pg_url: str, tmp_path: Path) -> None:
    code, _, err = _done(
        _nonstop(pg_url, tmp_path, "deploy", "jobs", "1", "--source", f"{SRC}:v1")
    )
    assert code == 0, err
    # Each round races two canary deploys of fresh versions; exactly one wins.
    pairs = [(2, 4), (6, 7), (8, 9)]
    registry = Deployments(pg_url)
    try:
        for a, b in pairs:
            racers = [
                _nonstop(
                    pg_url,
                    tmp_path,
                    "deploy",
                    "jobs",
                    str(v),
                    "--source",
                    f"{SRC}:v{v}",
                    "--canary",
                    str(share),
                    "--by",
                    f"op{v}",
                )
                for v, share in ((a, 10), (b, 20))
            ]
            results = [_done(p) for p in racers]
            codes = sorted(code for code, _, _ in results)
            assert codes == [0, 2], results
            ((_, won, _),) = [r for r in results if r[0] == 0]
            ((_, _, lost),) = [r for r in results if r[0] == 2]
            assert (
                "already has a canary" in lost
                or "changed while this command ran" in lost
            ), lost
            assert "Traceback" not in lost
            view = registry.refresh()
            routing = view.workflow("jobs").effective()
            assert routing is not None
            assert f"routing {routing.describe()}" in won  # what took effect
            code, _, err = _done(
                _nonstop(pg_url, tmp_path, "rollback", "jobs", "--by", "lead")
            )
            assert code == 0, err
    finally:
        registry.close()
