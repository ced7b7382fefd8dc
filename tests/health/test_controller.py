"""The controller's windows, on a controllable clock (no waiting)."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.deploy import Deployments
from engine.health import Health
from engine.health.audit import rollout_audit
from engine.health.controller import Rollouts
from engine.health.rollout import RolloutPlan
from engine.store import open_store


def test_inconclusive_windows_add_up_until_there_are_enough(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    now = [1_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    Deployments(store).deploy("tills", 1, "tests.health.flows:v1", by="t")
    rollouts = Rollouts(store, clock=clock, bucket_seconds=1, settle=0)
    plan = RolloutPlan("tills", 2, steps=(10, 100), interval=10, min_sample=20)
    rollouts.start(plan, source="tests.health.flows:v2", by="t")
    health = Health(store, bucket_seconds=1, clock=clock)

    def window(samples: int) -> str:
        for _ in range(samples):
            health.accepted("tills", 2, start=False, status="running", seconds=0.01)
            health.accepted("tills", 1, start=False, status="running", seconds=0.01)
        health.flush()
        now[0] += 10
        [decided] = rollouts.tick()
        assert rollouts.tick() == []  # one decision per window, not per pass
        return decided.action

    assert window(15) == "hold"  # 15 < 20: inconclusive
    r = rollouts.status("tills")
    assert r.decisions[-1].samples == 15 and r.window_from == 1_000_000.0
    assert window(15) == "complete"  # 30 over both windows
    assert rollouts.status("tills").decisions[-1].samples == 30
    assert len(rollouts.status("tills").decisions) == 2  # one decision per window
    routing = Deployments(store).refresh().workflow("tills").routing
    assert routing is not None and routing.stable == 2
    # Every decision, the hold too, is in the audit with its numbers.
    audit = [a for a in rollout_audit(store) if a.subject == "tills"]
    assert [a.action for a in audit] == [
        "rollout start",
        "rollout hold",
        "rollout complete",
    ]
    hold = audit[1]
    assert "inconclusive" in hold.detail and "samples 15 vs 15" in hold.detail
    assert hold.by and hold.reason
    health.close()


def test_a_flag_ramp_is_killed_when_the_flag_on_path_fails(sqlite_url: str) -> None:
    from engine import CommandRejected, SyncEngine, WorkflowCodeError
    from tests.health import flows

    store = open_store(sqlite_url)
    now = [1_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    ops = Deployments(store)
    ops.deploy("tills", 4, "tests.health.flows:v4", by="t")
    ops.set_flag("turbo", "percentage", percent=0, by="t")
    rollouts = Rollouts(store, clock=clock, bucket_seconds=1, settle=0)
    plan = RolloutPlan(
        "tills",
        0,
        steps=(30, 100),
        interval=10,
        min_sample=20,
        failure_limit=1,
        flag="turbo",
    )
    rollouts.start(plan, by="t")
    assert Deployments(store).refresh().flags["turbo"].percent_bp == 3000
    health = Health(store, bucket_seconds=1, clock=clock)
    health.rejected("tills", 4)
    health.flush()  # follows the rollouts stream: turbo is watched now
    assert health.watch == {"turbo"}
    router = Deployments(store, poll_interval=0)
    engine = SyncEngine(store, flows.registry(), router=router, health=health)
    for i in range(150):
        iid = f"i{i}"
        engine.start("tills", flows.Open(), instance_id=iid)
        for n in range(2):
            with contextlib.suppress(CommandRejected, WorkflowCodeError):
                engine.send(iid, flows.Work(n))
    health.flush()
    now[0] += 10
    [decided] = rollouts.tick()
    assert decided.action == "rollback" and decided.error_rate > 0.1
    assert decided.baseline_error_rate == 0 and decided.baseline_samples > 0
    flag = Deployments(store).refresh().flags["turbo"]
    assert flag.killed
    engine.close()


def test_two_threads_refreshing_one_rollouts_object_apply_each_event_once(
    sqlite_url: str,
) -> None:
    """A controller thread and an operator share one ``Rollouts``: no double fold."""
    store = open_store(sqlite_url)
    now = [1_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    Deployments(store).deploy("tills", 1, "tests.health.flows:v1", by="t")
    writer = Rollouts(store, clock=clock, bucket_seconds=1, settle=0)
    plan = RolloutPlan("tills", 2, steps=(10, 100), interval=10, min_sample=20)
    writer.start(plan, source="tests.health.flows:v2", by="t")
    now[0] += 10
    [decided] = writer.tick()
    assert decided.action == "hold"

    shared = Rollouts(store, clock=clock, bucket_seconds=1, settle=0)
    both_inside = threading.Barrier(2, timeout=0.5)

    class Meeting:
        """The store, but a read waits (briefly) for a second concurrent read."""

        def iter_stream(self, *args: Any, **kwargs: Any) -> Any:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_inside.wait()  # only reached by both without the fold lock
            return store.iter_stream(*args, **kwargs)

    folded: list[int] = []
    decode = shared.codec.decode

    def counting(stream: str, position: int, *args: Any) -> Any:
        folded.append(position)
        return decode(stream, position, *args)

    shared.store = Meeting()  # type: ignore[assignment]
    shared.codec.decode = counting  # type: ignore[method-assign,assignment]
    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(shared.refresh) for _ in range(2)]:
            f.result(timeout=10)
    assert sorted(folded) == [1, 2]  # the start and the hold, each folded once
    r = shared.refresh().latest("tills")
    assert r is not None and len(r.decisions) == 1
    store.close()
