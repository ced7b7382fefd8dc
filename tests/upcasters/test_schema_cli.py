"""``nonstop schema lock`` and ``check``: the example app's lock, each breaking kind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine import EventTypeRegistry, Workflow, WorkflowRegistry
from engine.commands.schema import check_lock, code_document
from engine.demo import orders
from upcasters import SchemaLockError, UpcasterRegistry, read_lock, write_lock

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path(orders.__file__).with_name("schema.lock")


def _nonstop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # From a scratch directory: the repository root keeps no nonstop.db.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(cwd)])}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_example_app_passes_against_its_committed_lock(tmp_path: Path) -> None:
    done = _nonstop("schema", "check", "--lock", str(LOCK), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 breaking" in done.stdout and "schema check OK" in done.stdout


def test_committed_lock_holds_both_orderplaced_schemas_and_the_states() -> None:
    doc = read_lock(LOCK)
    placed = doc["events"]["OrderPlaced"]
    assert placed["schema"] == 2 and sorted(placed["versions"]) == ["1", "2"]
    v1 = [f["name"] for f in placed["versions"]["1"]["fields"]]
    v2 = [f["name"] for f in placed["versions"]["2"]["fields"]]
    assert "currency" not in v1 and v2[-1] == "currency"
    assert set(doc["states"]) == {"orders@1", "orders@2"}
    assert not any(name.startswith("nonstop.") for name in doc["events"])


def test_lock_is_stable_and_keeps_history(tmp_path: Path) -> None:
    path = tmp_path / "schema.lock"
    path.write_text(LOCK.read_text())
    first = _nonstop("schema", "lock", "--output", str(path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "OrderPlaced schema 2" in first.stdout
    assert path.read_text() == LOCK.read_text()  # already up to date: no diff


# ------------------------------------------------------- each breaking kind


class Placed(msgspec.Struct):
    order_id: str
    amount: int


class PlacedRemoved(msgspec.Struct):
    order_id: str


class PlacedRenamed(msgspec.Struct):
    order_id: str
    total: int


class PlacedRetyped(msgspec.Struct):
    order_id: str
    amount: str


class PlacedRequired(msgspec.Struct):
    order_id: str
    amount: int
    currency: str


class PlacedDefault(msgspec.Struct):
    order_id: str
    amount: int
    currency: str = "EUR"


class Cart(msgspec.Struct):
    items: int = 0


class CartBigger(msgspec.Struct):
    items: int = 0
    total: int = 0


def _registry(state: type[Any] = Cart, state_schema: int = 1) -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(
        Workflow(
            name="shop",
            version=1,
            state_type=state,
            initial=state,
            decide=lambda s, c, x: [],
            evolve=lambda s, e: s,
            status=lambda s: "running",
            state_schema=state_schema,
        )
    )
    return reg


def _types(cls: type[Any], schema: int = 1, name: str = "Placed") -> EventTypeRegistry:
    types = EventTypeRegistry()
    types.register(cls, name, schema)
    return types


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "schema.lock"
    write_lock(path, code_document(_registry(), _types(Placed)))
    return path


@pytest.mark.parametrize(
    ("types", "subject", "words"),
    [
        (_types(PlacedRemoved), "Placed.amount", "field removed"),
        (_types(PlacedRenamed), "Placed.amount Placed.total", "(or renamed)"),
        (_types(PlacedRetyped), "Placed.amount", "type changed from int to str"),
        (_types(PlacedRequired), "Placed.currency", "new field without a default"),
        (_types(Placed, name="OrderPlaced"), "Placed", "event type vanished"),
        (_types(PlacedRequired, 2), "Placed", "bumped 1 -> 2 without an upcaster"),
    ],
    ids=["removed", "renamed", "retyped", "required", "vanished", "bumped"],
)
def test_each_breaking_change_is_reported_precisely(
    lock: Path, types: EventTypeRegistry, subject: str, words: str
) -> None:
    changes = check_lock(lock, _registry(), types=types, upcasters=UpcasterRegistry())
    breaking = [c for c in changes if c.kind == "breaking"]
    assert [c.subject for c in breaking] == subject.split()
    assert words in breaking[0].message


def test_upcasters_turn_breaking_changes_into_two_step_or_safe(lock: Path) -> None:
    steps = UpcasterRegistry()
    steps.add("Placed", 1, lambda p: {**p, "currency": "EUR"})
    bumped = check_lock(
        lock, _registry(), types=_types(PlacedRequired, 2), upcasters=steps
    )
    assert [c.kind for c in bumped] == ["mixed-fleet-unsafe"]
    renamed = UpcasterRegistry()
    renamed.rename_type("Placed", "OrderPlaced")
    moved = check_lock(
        lock, _registry(), types=_types(Placed, name="OrderPlaced"), upcasters=renamed
    )
    assert {c.kind for c in moved} == {"safe"}
    additive = check_lock(lock, _registry(), types=_types(PlacedDefault))
    assert [(c.kind, c.subject) for c in additive] == [("safe", "Placed.currency")]


def test_state_changes_are_classified(lock: Path) -> None:
    same_schema = check_lock(lock, _registry(CartBigger), types=_types(Placed))
    assert [(c.kind, c.subject) for c in same_schema] == [("breaking", "state shop@1")]
    bumped = check_lock(lock, _registry(CartBigger, 2), types=_types(Placed))
    assert [c.kind for c in bumped] == ["safe"] and "rebuilt" in bumped[0].message
    steps = UpcasterRegistry()
    steps.add_state("shop@1", 1, lambda s: {**s, "total": 0})
    upcast = check_lock(
        lock, _registry(CartBigger, 2), types=_types(Placed), upcasters=steps
    )
    assert [c.kind for c in upcast] == ["safe"] and "upcast" in upcast[0].message
    gone = check_lock(lock, WorkflowRegistry(), types=_types(Placed))
    assert [(c.kind, c.subject) for c in gone] == [("breaking", "state shop@1")]


def test_a_missing_or_broken_lock_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaLockError, match="nonstop schema lock"):
        check_lock(tmp_path / "nope.lock", _registry())
    bad = tmp_path / "bad.lock"
    bad.write_text(json.dumps({"format": 1, "events": {"X": {"schema": 1}}}))
    with pytest.raises(SchemaLockError, match="'events' is malformed"):
        check_lock(bad, _registry())


# ------------------------------------------------------------ the command

_APP = """
import msgspec
from engine import Workflow, WorkflowRegistry, event
from upcasters import upcaster

class Cart(msgspec.Struct):
    items: int = 0

{events}

def registry():
    reg = WorkflowRegistry()
    reg.register(Workflow(name="shop", version=1, state_type=Cart, initial=Cart,
        decide=lambda s, c, x: [], evolve=lambda s, e: s,
        status=lambda s: "running"))
    return reg
"""
_V1 = """
@event("Placed")
class Placed(msgspec.Struct):
    order_id: str
    amount: int
"""
_REQUIRED = """
@event("Placed")
class Placed(msgspec.Struct):
    order_id: str
    amount: int
    currency: str
"""
_BUMPED = """
@event("Placed", schema=2)
class Placed(msgspec.Struct):
    order_id: str
    amount: int
    currency: str

@upcaster("Placed", from_version=1)
def add_currency(p):
    return {**p, "currency": "EUR"}
"""


def _app(tmp_path: Path, name: str, events: str) -> str:
    (tmp_path / f"{name}.py").write_text(_APP.format(events=textwrap.dedent(events)))
    return f"{name}:registry"


def test_check_command_exit_codes(tmp_path: Path) -> None:
    lock = str(tmp_path / "schema.lock")
    v1 = _app(tmp_path, "shop_v1", _V1)
    done = _nonstop("--app", v1, "schema", "lock", "--output", lock, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    required = _app(tmp_path, "shop_required", _REQUIRED)
    done = _nonstop("--app", required, "schema", "check", "--lock", lock, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BREAKING Placed.currency: new field without a default" in done.stdout
    assert "schema check FAILED" in done.stdout
    bumped = _app(tmp_path, "shop_bumped", _BUMPED)
    done = _nonstop("--app", bumped, "schema", "check", "--lock", lock, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TWO-STEP Placed: schema bumped 1 -> 2" in done.stdout
    strict = _nonstop(
        "--app", bumped, "schema", "check", "--lock", lock, "--strict", cwd=tmp_path
    )
    assert strict.returncode == 1
    missing = _nonstop(
        "--app", v1, "schema", "check", "--lock", "absent.lock", cwd=tmp_path
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("nonstop: error: no schema lock at absent.lock")
    unwritable = _nonstop(
        "--app", v1, "schema", "lock", "--output", "no/such/dir/x.lock", cwd=tmp_path
    )
    assert unwritable.returncode == 2
    assert "cannot write the schema lock no/such/dir/x.lock" in unwritable.stderr
