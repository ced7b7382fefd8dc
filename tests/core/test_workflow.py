"""Workflow definitions, the version registry, refs, the decider context, fold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.errors import (
    DuplicateRegistration,
    UnknownWorkflow,
    WorkflowDefinitionError,
)
from engine.core.workflow import Context, Workflow, WorkflowRegistry, fold, parse_ref


class Count(msgspec.Struct, frozen=True):
    n: int = 0


def _evolve(state: Count, e: Any) -> Count:
    return Count(state.n + int(e))


def _decide(state: Count, cmd: Any, ctx: Context) -> list[Any]:
    return [cmd]


def wf(name: str = "counter", version: int = 1, **kw: Any) -> Workflow[Count]:
    return Workflow(
        name=name,
        version=version,
        state_type=Count,
        initial=Count,
        decide=_decide,
        evolve=_evolve,
        status=lambda s: "completed" if s.n >= 10 else "running",
        **kw,
    )


# ---------------------------------------------------------------- Workflow


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a/b", "x@1", "ü"])
def test_bad_workflow_names(name: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=repr(name)):
        wf(name)


@pytest.mark.parametrize("name", ["orders", "_x", "a.b-c_9"])
def test_good_workflow_names(name: str) -> None:
    assert wf(name).ref == f"{name}@1"


@pytest.mark.parametrize("version", [0, -3])
def test_version_below_one(version: int) -> None:
    with pytest.raises(WorkflowDefinitionError, match="version"):
        wf(version=version)


def test_version_must_be_an_int() -> None:
    with pytest.raises(WorkflowDefinitionError):
        wf(version="2")  # type: ignore[arg-type]


def test_negative_snapshot_every() -> None:
    with pytest.raises(WorkflowDefinitionError, match="snapshot_every"):
        wf(snapshot_every=-1)


def test_terminal_and_state_key() -> None:
    w = wf()
    assert not w.terminal(Count(3))
    assert w.terminal(Count(10))
    assert w.state_key.startswith("counter@1#")
    assert w.state_key == wf().state_key

    class Other(msgspec.Struct, frozen=True):
        n: int = 0
        extra: str = ""

    other = Workflow(
        name="counter",
        version=1,
        state_type=Other,
        initial=Other,
        decide=_decide,
        evolve=lambda s, e: s,
        status=lambda s: "running",
    )
    assert other.state_key != w.state_key


def test_fold_applies_events_in_order() -> None:
    w = wf()
    assert fold(w, Count(), []) == Count()
    assert fold(w, Count(), [1, 2, 3]) == Count(6)
    steps: list[int] = []
    order = Workflow(
        name="order",
        version=1,
        state_type=list,
        initial=list,
        decide=_decide,
        evolve=lambda s, e: steps.append(e) or [*s, e],
        status=lambda s: "running",
    )
    assert fold(order, [], "abc") == ["a", "b", "c"]
    assert steps == ["a", "b", "c"]


@given(st.lists(st.integers(-100, 100)), st.integers(0, 20))
def test_fold_is_associative_over_splits(events: list[int], cut: int) -> None:
    w = wf()
    whole = fold(w, Count(), events)
    assert fold(w, fold(w, Count(), events[:cut]), events[cut:]) == whole


# ---------------------------------------------------------------- registry


def test_current_version_is_the_newest_unless_set() -> None:
    reg = WorkflowRegistry()
    v1, v2, v3 = wf(version=1), wf(version=2), wf(version=3)
    reg.register(v3, v1)
    assert reg.current_version("counter") == 3
    reg.register(v2)
    assert reg.get("counter") is v3
    assert reg.versions("counter") == [1, 2, 3]
    reg.set_current("counter", 2)
    assert reg.current_version("counter") == 2
    assert reg.get("counter") is v2
    assert reg.get("counter", 1) is v1
    assert reg.get("counter", 3) is v3


def test_set_current_to_an_unknown_version() -> None:
    reg = WorkflowRegistry()
    reg.register(wf(version=1))
    with pytest.raises(UnknownWorkflow):
        reg.set_current("counter", 5)
    assert reg.current_version("counter") == 1


def test_unknown_workflow_lists_what_is_registered() -> None:
    reg = WorkflowRegistry()
    reg.register(wf(version=1), wf(version=2), wf("other"))
    with pytest.raises(UnknownWorkflow) as info:
        reg.get("nope")
    assert info.value.known == ["counter@1", "counter@2", "other@1"]
    assert "counter@1, counter@2, other@1" in str(info.value)
    with pytest.raises(UnknownWorkflow) as info:
        reg.get("counter", 9)
    assert "'counter@9'" in str(info.value)
    assert info.value.version == 9
    with pytest.raises(UnknownWorkflow, match="none"):
        WorkflowRegistry().current_version("x")


def test_duplicate_version() -> None:
    reg = WorkflowRegistry()
    first = wf(version=1)
    reg.register(first)
    reg.register(first)  # the same object again is fine
    with pytest.raises(DuplicateRegistration, match="counter@1"):
        reg.register(wf(version=1))
    assert reg.get("counter", 1) is first


def test_names_and_refs() -> None:
    reg = WorkflowRegistry()
    reg.register(wf("b", 2), wf("a", 1), wf("b", 1))
    assert reg.names() == ["a", "b"]
    assert reg.refs() == ["a@1", "b@1", "b@2"]


# -------------------------------------------------------------------- refs


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [("orders@2", ("orders", 2)), ("orders", ("orders", None)), ("a@10", ("a", 10))],
)
def test_parse_ref(ref: str, parsed: tuple[str, int | None]) -> None:
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["orders@", "orders@0", "orders@x", "orders@-1"])
def test_parse_bad_ref(ref: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=repr(ref)):
        parse_ref(ref)


# ----------------------------------------------------------------- Context


def _read_all(ctx: Context) -> tuple[datetime, float, str, float]:
    return ctx.now(), ctx.random(), ctx.uuid(), ctx.random()


def test_context_records_values_in_order() -> None:
    ctx = Context("i-1", "orders@1")
    now, r1, u, r2 = _read_all(ctx)
    assert now.tzinfo is UTC
    assert abs((datetime.now(UTC) - now).total_seconds()) < 60
    assert 0 <= r1 < 1 and 0 <= r2 < 1
    assert len(u) == 32 and int(u, 16) >= 0
    assert [k for k, _ in ctx.recorded] == ["now", "random", "uuid", "random"]
    assert ctx.recorded[1][1] == r1 and ctx.recorded[2][1] == u
    assert (ctx.instance_id, ctx.workflow) == ("i-1", "orders@1")


def test_context_replay_returns_the_recorded_values() -> None:
    live = Context("i", "w@1")
    first = _read_all(live)
    # What the store gives back: the recorded list after an encode/decode trip.
    recorded = msgspec.msgpack.decode(msgspec.msgpack.encode(live.recorded))
    again = Context("i", "w@1", replay=recorded)
    assert _read_all(again) == first
    assert again.recorded == live.recorded


def test_context_replay_reading_more_than_recorded() -> None:
    live = Context("i", "w@1")
    live.random()
    replay = Context("i", "w@1", replay=live.recorded)
    replay.random()
    with pytest.raises(WorkflowDefinitionError, match=r"ctx\.random\(\) at step 1"):
        replay.random()


def test_context_replay_reading_something_else() -> None:
    live = Context("i", "w@1")
    live.random()
    with pytest.raises(WorkflowDefinitionError, match="not deterministic"):
        Context("i", "w@1", replay=live.recorded).uuid()


def test_context_replay_of_nothing() -> None:
    with pytest.raises(WorkflowDefinitionError):
        Context("i", "w@1", replay=[]).now()


def test_empty_name_in_ref_is_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match="empty"):
        parse_ref("@1")


def test_bool_version_is_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match="version"):
        Workflow(
            name="w",
            version=True,
            state_type=int,
            initial=int,
            decide=lambda s, c, x: [],
            evolve=lambda s, e: s,
            status=lambda s: "running",
        )
