"""Typed config through the registry: set, refuse, roll back, canary, replay."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import ConfigError, WorkflowRegistry
from engine.core.config import CONFIG_KEY
from engine.deploy import Deployments, open_engine
from engine.deploy.configadmin import (
    describe_change,
    promote_config,
    rollback_config,
    set_config,
)
from engine.deploy.configs import read_reports
from engine.deploy.events import INDEX_STREAM, config_stream
from engine.deploy.routing import bucket
from tests.deploy import configflows as cf


def _set(d: Deployments, threshold: int, **kw: Any) -> int:
    wc = set_config(d, "gate", {"threshold": threshold}, registry=cf.registry(), **kw)
    return wc.latest


def test_set_show_history_and_rollback(deployments: Deployments) -> None:
    _set(deployments, 10, by="ann", reason="tighter")
    _set(deployments, 20, by="bob")
    wc = deployments.view.configs["gate"]
    assert (wc.current, wc.latest) == (2, 2)
    assert wc.table(1) == {"threshold": 10}
    wc = rollback_config(
        deployments, "gate", by="cy", reason="too loose", registry=cf.registry()
    )
    assert wc.current == 1
    wc = rollback_config(deployments, "gate", to=2, registry=cf.registry())
    assert wc.current == 2
    wc = rollback_config(deployments, "gate", to=0, registry=cf.registry())
    assert wc.current == 0
    history = [describe_change(wc, c) for c in wc.changes]
    assert history[0] == ["set: v0 -> v1 (adds v1)", "  threshold: (unset) -> 10"]
    assert history[2] == ["rollback: v2 -> v1", "  threshold: 20 -> 10"]
    assert [(c.by, c.reason) for c in wc.changes[:3]] == [
        ("ann", "tighter"),
        ("bob", ""),
        ("cy", "too loose"),
    ]
    subjects = {a.subject for a in deployments.view.audit}
    assert subjects == {"config:gate"}


def test_a_refused_config_writes_nothing_and_names_version_and_field(
    deployments: Deployments,
) -> None:
    _set(deployments, 10)
    head = deployments.store.last_global_position()
    with pytest.raises(
        ConfigError, match=r"gate@1 refuses this config: .*`\$.threshold`"
    ):
        _set(deployments, -5)
    with pytest.raises(
        ConfigError, match=r"gate@1 refuses .*unknown field `\$.review`"
    ):
        set_config(
            deployments, "gate", {"review": {"above": 1}}, registry=cf.registry()
        )
    with pytest.raises(ConfigError, match=r"no config v7 \(stored: v1"):
        rollback_config(deployments, "gate", to=7, registry=cf.registry())
    with pytest.raises(ConfigError, match="no config canary to promote"):
        promote_config(deployments, "gate")
    assert deployments.store.last_global_position() == head
    assert deployments.refresh().configs["gate"].current == 1


def test_a_workflow_without_config_type_is_refused(deployments: Deployments) -> None:
    with pytest.raises(ConfigError, match="no running version of nope declares"):
        set_config(deployments, "nope", {"x": 1}, registry=cf.registry())


def test_the_config_canary_is_sticky_and_promoted(deployments: Deployments) -> None:
    _set(deployments, 10)
    _set(deployments, 20, canary=30)
    wc = deployments.view.configs["gate"]
    assert (wc.current, wc.canary, wc.canary_bp) == (1, 2, 3000)
    keys = [f"k{i}" for i in range(400)]
    on = [k for k in keys if wc.version_for(k) == 2]
    assert on == [k for k in keys if bucket("config:gate", k) < 3000]
    assert 0.2 < len(on) / len(keys) < 0.4
    wc = rollback_config(deployments, "gate", registry=cf.registry())
    assert (wc.current, wc.canary) == (1, None)
    _set(deployments, 30, canary=50)
    wc = promote_config(deployments, "gate", reason="healthy")
    assert (wc.current, wc.canary) == (3, None)


async def test_engines_pick_up_config_without_restart_and_pin_it(
    durable_url: str,
) -> None:
    admin = Deployments(durable_url)
    await asyncio.to_thread(_set, admin, 10)
    engine = open_engine(durable_url, cf.registry(), poll_interval=0.0)
    await engine.start("gate", cf.Begin(), instance_id="a")
    first = await engine.send("a", cf.Check(5))
    await asyncio.to_thread(_set, admin, 20)
    second = await engine.send("a", cf.Check(6))
    await engine.start("gate", cf.Begin(), instance_id="b")
    other = await engine.send("b", cf.Check(7))
    # "a" keeps the version it read first; its latest reads follow; "b" is new.
    assert first.state.checks == ((5, 10, 10, False),)
    assert second.state.checks[-1] == (6, 10, 20, False)
    assert other.state.checks == ((7, 20, 20, False),)
    await engine.close()
    await asyncio.to_thread(
        rollback_config, admin, "gate", to=0, registry=cf.registry()
    )
    fresh = open_engine(durable_url, cf.registry(), poll_interval=0.0)
    again = await fresh.send("a", cf.Check(8))
    assert again.state.checks[-1] == (8, 10, 100, False)
    history = await fresh.history("a")
    reads = [e.ctx for e in history if e.ctx]
    assert reads[0] == [
        ["flag", [CONFIG_KEY, 1]],
        ["config", 1],
        ["live", ["gate-open", False]],
    ]
    await fresh.close()
    admin.close()


async def test_old_code_keeps_the_last_good_config_and_reports_it(
    durable_url: str,
) -> None:
    admin = Deployments(durable_url)
    await asyncio.to_thread(_set, admin, 10)
    old = open_engine(durable_url, cf.old_registry(), poll_interval=0.0)
    await old.start("gate", cf.Begin(), instance_id="o", version=1)
    assert (await old.send("o", cf.Check(1))).state.checks[-1][1] == 10
    await asyncio.to_thread(_set, admin, 15)
    await old.start("gate", cf.Begin(), instance_id="q", version=1)
    assert (await old.send("q", cf.Check(1))).state.checks[-1][1] == 15
    # Valid for current code (which knows `note`), not for the old build.
    await asyncio.to_thread(
        set_config,
        admin,
        "gate",
        {"threshold": 50, "note": "x"},
        registry=cf.registry(),
    )
    await old.start("gate", cf.Begin(), instance_id="p", version=1)
    info = await old.send("p", cf.Check(2))
    assert info.state.checks[-1][1] == 15  # the last good one
    router = old.router
    assert isinstance(router, Deployments)
    assert router.configs.refusals == {("gate", 3): 1}
    from engine.health.prometheus import HealthCollector

    families = {m.name: m for m in HealthCollector().collect()}
    assert any(
        s.labels == {"workflow": "gate", "config_version": "3"} and s.value >= 1
        for s in families["nonstop_config_refusals"].samples
    )
    reports = read_reports(admin.store, "gate", admin.codec)
    (report,) = [r for _, r in reports.values()]
    assert (report.applied, report.refused) == (2, 3)
    assert "unknown field `$.note`" in report.error
    # Rolling back to what it can read clears the refusal in its report.
    await asyncio.to_thread(rollback_config, admin, "gate", registry=cf.registry())
    await old.send("p", cf.Check(3))
    (report,) = [r for _, r in read_reports(admin.store, "gate", admin.codec).values()]
    assert (report.applied, report.refused) == (2, 0)
    await old.close()
    admin.close()


ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 1000)),
        st.tuples(st.just("canary"), st.integers(0, 1000)),
        st.tuples(st.just("promote"), st.none()),
        st.tuples(st.just("bad"), st.sampled_from([{"threshold": -1}, {"x": 1}])),
        st.tuples(st.just("rollback"), st.none()),
        st.tuples(st.just("check"), st.sampled_from(["i1", "i2", "i3", "i4"])),
    ),
    max_size=14,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
def test_any_sequence_replays_the_same_after_a_restart(
    ops: list[tuple[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_sequence(f"sqlite:///{Path(tmp) / 'e.db'}", ops))


class _Model:
    """What the config of ``gate`` should be: versions, routing, rollbacks."""

    def __init__(self) -> None:
        self.thresholds = [100]  # version -> threshold, v0 the defaults
        self.current = 0
        self.canary: int | None = None
        self.previous: list[int] = []

    def add(self, threshold: int, *, canary: bool) -> None:
        self.thresholds.append(threshold)
        version = len(self.thresholds) - 1
        if canary:
            self.canary = version
        else:
            self.move(version)

    def move(self, version: int) -> None:
        if version != self.current:
            self.previous.append(self.current)
        self.current, self.canary = version, None

    def rollback_target(self) -> int | None:
        if self.canary is not None:
            return self.current
        return next((v for v in reversed(self.previous) if v != self.current), None)

    def rollback(self, target: int) -> None:
        if target != self.current:
            while self.previous and self.previous[-1] != target:
                self.previous.pop()
            if self.previous:
                self.previous.pop()
        self.current, self.canary = target, None

    def version_for(self, key: str) -> int:
        if self.canary is not None and bucket("config:gate", key) < 5000:
            return self.canary
        return self.current


async def _sequence(url: str, ops: list[tuple[str, Any]]) -> None:
    admin = Deployments(url, poll_interval=0.0)
    engine = open_engine(url, cf.registry(), poll_interval=0.0)
    model = _Model()
    pinned: dict[str, int] = {}
    expected: dict[str, list[tuple[int, int, int, bool]]] = {}
    for n, (op, arg) in enumerate(ops):
        if op in ("set", "canary"):
            _set(admin, arg, **({"canary": 50} if op == "canary" else {}))
            model.add(arg, canary=op == "canary")
        elif op == "promote":
            if model.canary is None:
                with pytest.raises(ConfigError, match="no config canary"):
                    promote_config(admin, "gate")
                continue
            assert promote_config(admin, "gate").current == model.canary
            model.move(model.canary)
        elif op == "bad":
            router = engine.router
            assert isinstance(router, Deployments)
            router.refresh()
            before = [router.config(cf.v2, k, None) for k in ("i1", "i2", "i3")]
            with pytest.raises(ConfigError):
                set_config(admin, "gate", arg, registry=cf.registry())
            router.refresh()
            assert [router.config(cf.v2, k, None) for k in ("i1", "i2", "i3")] == before
        elif op == "rollback":
            target = model.rollback_target()
            if target is None:
                with pytest.raises(ConfigError, match="no earlier config"):
                    rollback_config(admin, "gate", registry=cf.registry())
                continue
            wc = rollback_config(admin, "gate", registry=cf.registry())
            assert (wc.current, wc.canary) == (target, None)
            model.rollback(target)
        else:
            if arg not in expected:
                await engine.start("gate", cf.Begin(), instance_id=arg)
                expected[arg] = []
            now = model.version_for(arg)
            pinned.setdefault(arg, now)
            await engine.send(arg, cf.Check(n))
            t = model.thresholds
            expected[arg].append((n, t[pinned[arg]], t[now], False))
    states = {i: (await engine.get(i)).state for i in expected}
    await engine.close()
    fresh = open_engine(url, cf.registry(), poll_interval=0.0)
    for i, rows in expected.items():
        assert states[i].checks == tuple(rows)
        assert (await fresh.get(i)).state == states[i]
        after = await fresh.send(i, cf.Check(-1))
        assert after.state.checks[-1][:2] == (-1, model.thresholds[pinned[i]])
    await fresh.close()
    admin.close()


@pytest.mark.parametrize("instance_events", [1_000, 20_000])
def test_reading_config_costs_the_registry_not_the_log(instance_events: int) -> None:
    from tests.deploy.test_cold_read import CountingStore, _instances

    store = CountingStore()
    with Deployments(store) as ops:
        _set(ops, 10)
        _instances(store, "a", instance_events // 100, 50)
        _set(ops, 20, canary=25)
        _instances(store, "b", instance_events // 100, 50)
    size = len(store.read_stream(INDEX_STREAM)) + len(
        store.read_stream(config_stream("gate"))
    )
    assert size == 3  # the index entry, two changes
    store.examined = 0
    view = Deployments(store).refresh()
    assert store.examined == size  # not the instance events
    wc = view.configs["gate"]
    assert (wc.current, wc.canary, wc.table(2)) == (1, 2, {"threshold": 20})


async def test_the_pinned_config_version_survives_snapshots(sqlite_url: str) -> None:
    snapshotting = dataclasses.replace(cf.v1, snapshot_every=1)
    reg = WorkflowRegistry()
    reg.register(snapshotting)
    admin = Deployments(sqlite_url)
    await asyncio.to_thread(_set, admin, 10)
    engine = open_engine(sqlite_url, reg, poll_interval=0.0)
    await engine.start("gate", cf.Begin(), instance_id="s", version=1)
    await engine.send("s", cf.Check(1))
    await engine.close()
    assert admin.store.load_snapshot("s") is not None
    await asyncio.to_thread(_set, admin, 20)
    fresh = open_engine(sqlite_url, reg, poll_interval=0.0)
    info = await fresh.send("s", cf.Check(2))
    assert [row[1] for row in info.state.checks] == [10, 10]
    await fresh.close()
    admin.close()


async def test_an_engine_without_the_registry_reads_defaults_only(
    sqlite_url: str,
) -> None:
    from engine.runtime import Engine

    admin = Deployments(sqlite_url)
    await asyncio.to_thread(_set, admin, 10)
    engine = open_engine(sqlite_url, cf.registry(), poll_interval=0.0)
    await engine.start("gate", cf.Begin(), instance_id="r", version=1)
    await engine.send("r", cf.Check(1))
    await engine.close()
    bare = Engine(sqlite_url, cf.registry(), deployments=False)  # logs a warning
    await bare.start("gate", cf.Begin(), instance_id="d", version=1)
    assert (await bare.send("d", cf.Check(2))).state.checks[-1][1] == 100
    with pytest.raises(ConfigError, match="recorded config v1, which an engine"):
        await bare.send("r", cf.Check(3))
    await bare.close()
    admin.close()
