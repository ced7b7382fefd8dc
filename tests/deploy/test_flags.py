"""Feature flags: laws of bucketing, pinning per instance, kill switch, errors."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Context
from engine.deploy import BUCKETS, Deployments, Flag, FlagError, open_engine
from tests.deploy import flows

keys = st.text(min_size=1, max_size=30)
shares = st.integers(min_value=0, max_value=BUCKETS)


@given(key=keys, low=shares, high=shares)
def test_raising_a_percentage_never_turns_a_key_off(
    key: str, low: int, high: int
) -> None:
    low, high = sorted((low, high))
    if Flag("f", "percentage", percent_bp=low).evaluate("flag", key, False):
        assert Flag("f", "percentage", percent_bp=high).evaluate("flag", key, False)


@given(key=keys, split=st.integers(0, BUCKETS))
def test_variants_are_sticky_and_from_the_definition(key: str, split: int) -> None:
    f = Flag("c", "variant", variants=(("red", split), ("blue", BUCKETS - split)))
    first = f.evaluate("variant", key, "none")
    assert first in {"red", "blue"}
    assert f.evaluate("variant", key, "none") == first


def test_variant_shares_are_within_tolerance() -> None:
    f = Flag("c", "variant", variants=(("a", 2000), ("b", 3000), ("c", 5000)))
    n = 6000
    got = [f.evaluate("variant", f"k{i}", "none") for i in range(n)]
    for name, share in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        assert abs(got.count(name) / n - share) < 0.03


@given(key=keys, on=st.booleans(), share=shares)
def test_a_killed_flag_is_off_for_everyone(key: str, on: bool, share: int) -> None:
    assert not Flag("f", "boolean", enabled=on, killed=True).evaluate("flag", key, True)
    assert not Flag("f", "percentage", percent_bp=share, killed=True).evaluate(
        "flag", key, True
    )
    v = Flag("v", "variant", variants=(("x", BUCKETS),), killed=True)
    assert v.evaluate("variant", key, "dflt") == "dflt"


def test_malformed_definitions_are_refused() -> None:
    with pytest.raises(FlagError, match="add up to 100"):
        Flag("v", "variant", variants=(("x", 10),))
    with pytest.raises(FlagError, match="kind 'maybe'"):
        Flag("v", "maybe")  # type: ignore[arg-type]
    with pytest.raises(FlagError, match=r"use ctx\.variant"):
        Flag("v", "variant", variants=(("x", BUCKETS),)).evaluate("flag", "k", False)


def test_context_evaluates_once_and_errors_give_the_default() -> None:
    calls: list[str] = []

    def reader(kind: str, name: str, default: object) -> object:
        calls.append(name)
        if name == "bad":
            raise RuntimeError("flag service down")
        return True

    ctx = Context("i-1", "w@1", flags=reader)
    assert ctx.flag("good") is True
    assert ctx.flag("good") is True
    assert ctx.flag("bad", default=True) is True
    assert ctx.flag("bad", default=False) is True  # pinned: the first value stays
    assert calls == ["good", "bad"]
    assert ctx.recorded == [["flag", ["good", True]], ["flag", ["bad", True]]]
    assert Context("i-2", "w@1").flag("nothing") is False
    # Replaying the recorded context sees the same values without a reader.
    again = Context("i-1", "w@1", replay=ctx.recorded)
    assert again.flag("good") is True and again.flag("bad") is True


def test_flag_commands_are_audited_and_validated(deployments: Deployments) -> None:
    deployments.set_flag("fast", "percentage", percent=25, by="ann", reason="ramp")
    killed = deployments.kill_flag("fast", by="bob", reason="incident")
    assert killed.killed and killed.percent_bp == 2500
    revived = deployments.kill_flag("fast", revive=True, by="bob")
    assert not revived.killed
    audit = [(a.subject, a.action, a.by) for a in deployments.view.audit]
    assert audit == [
        ("flag:fast", "set", "ann"),
        ("flag:fast", "kill", "bob"),
        ("flag:fast", "revive", "bob"),
    ]
    with pytest.raises(FlagError, match="unknown flag 'nope'"):
        deployments.kill_flag("nope")
    with pytest.raises(FlagError, match="add up to 100"):
        deployments.set_flag("colour", "variant", variants=[("red", 30)])
    assert "colour" not in deployments.view.flags


async def test_first_evaluation_is_pinned_for_later_steps_and_replays(
    durable_url: str,
) -> None:
    deployments = Deployments(durable_url)
    await asyncio.to_thread(deployments.deploy, "jobs", 2, "tests.deploy.flows:v2")
    await asyncio.to_thread(deployments.set_flag, "fast", "boolean", enabled=True)
    await asyncio.to_thread(
        deployments.set_flag, "colour", "variant", variants=[("red", 100)]
    )
    engine = open_engine(durable_url, flows.registry(), poll_interval=0.0)
    await engine.start("jobs", flows.Begin(), instance_id="p")
    first = await engine.send("p", flows.Step())
    assert first.state.fast == (True,) and first.state.colours == ("red",)
    await asyncio.to_thread(deployments.kill_flag, "fast")
    await asyncio.to_thread(
        deployments.set_flag, "colour", "variant", variants=[("blue", 100)]
    )
    # The instance keeps its first values; a new one sees the change.
    second = await engine.send("p", flows.Step())
    assert second.state.fast == (True, True)
    assert second.state.colours == ("red", "red")
    await engine.start("jobs", flows.Begin(), instance_id="q")
    other = await engine.send("q", flows.Step())
    assert other.state.fast == (False,) and other.state.colours == ("blue",)
    await engine.close()
    # A fresh engine replays the log: the pinned values come from it.
    fresh = open_engine(durable_url, flows.registry(), poll_interval=0.0)
    third = await fresh.send("p", flows.Step())
    assert third.state.fast == (True, True, True)
    assert third.state.colours == ("red", "red", "red")
    history = await fresh.history("p")
    recorded = [e.ctx for e in history if e.ctx]
    assert recorded == [[["flag", ["fast", True]], ["flag", ["colour", "red"]]]]
    await fresh.close()
    deployments.close()


async def test_pinned_flags_survive_snapshots(durable_url: str) -> None:
    deployments = Deployments(durable_url)
    reg = flows.registry()
    reg.register(flows.snapshotting)
    await asyncio.to_thread(deployments.set_flag, "fast", "boolean", enabled=True)
    engine = open_engine(durable_url, reg, poll_interval=0.0)
    await engine.start("jobs", flows.Begin(), instance_id="s", version=5)
    for _ in range(4):
        await engine.send("s", flows.Step())
    await engine.close()
    assert deployments.store.load_snapshot("s") is not None
    await asyncio.to_thread(deployments.kill_flag, "fast")
    fresh = open_engine(durable_url, reg, poll_interval=0.0)
    info = await fresh.send("s", flows.Step())
    assert info.state.fast == (True,) * 5
    await fresh.close()
    deployments.close()
