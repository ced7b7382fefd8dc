"""SyncEngine is Engine's twin: same constructor, same methods, same signatures."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from engine import Engine, SyncEngine
from tests.runtime.counter import Begin, Increment, registry

_PUBLIC = sorted(
    name
    for name, fn in inspect.getmembers(Engine, inspect.iscoroutinefunction)
    if not name.startswith("_")
)


def test_engine_has_the_methods_the_twin_is_checked_for() -> None:
    assert {
        "start",
        "send",
        "get",
        "migrate",
        "cancel",
        "write_snapshot",
        "close",
    } <= set(_PUBLIC)


@pytest.mark.parametrize("name", _PUBLIC)
def test_every_public_async_method_has_a_sync_twin_with_its_signature(
    name: str,
) -> None:
    twin = getattr(SyncEngine, name, None)
    assert twin is not None, f"SyncEngine lacks {name}"
    assert not inspect.iscoroutinefunction(twin)
    assert inspect.signature(twin) == inspect.signature(getattr(Engine, name))


def test_the_constructors_take_the_same_typed_options() -> None:
    sync = inspect.signature(SyncEngine.__init__)
    assert sync == inspect.signature(Engine.__init__)
    assert all(p.kind is not p.VAR_KEYWORD for p in sync.parameters.values())


def test_the_twin_runs_the_engine(tmp_path: Path) -> None:
    with SyncEngine(f"sqlite:///{tmp_path / 'e.db'}", registry(), max_attempts=3) as e:
        assert e.engine.max_attempts == 3
        e.start("counter", Begin(1), instance_id="c")
        assert e.send("c", Increment(2), command_id="x").state.n == 3
        assert e.get("c").position == 3
        assert [h.type for h in e.history("c")][-1] == "tests.counter.Incremented"
