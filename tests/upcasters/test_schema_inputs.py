"""Start inputs and commands in the schema lock: checked like events."""

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

from engine import Context, EventTypeRegistry, Workflow, WorkflowRegistry
from engine.commands.schema import check_lock, code_document
from engine.core.errors import WorkflowDefinitionError
from engine.core.inputs import command_types, start_types
from upcasters import SchemaLockError, write_lock

ROOT = Path(__file__).resolve().parents[2]


class Cart(msgspec.Struct):
    items: int = 0


class Open(msgspec.Struct):
    shop: str


class Add(msgspec.Struct):
    sku: str
    qty: int


# The same command type changed: each variant is a struct named Add.
AddRemoved = msgspec.defstruct("Add", [("sku", str)])
AddRetyped = msgspec.defstruct("Add", [("sku", str), ("qty", str)])
AddRequired = msgspec.defstruct("Add", [("sku", str), ("qty", int), ("note", str)])
AddDefault = msgspec.defstruct("Add", [("sku", str), ("qty", int), ("note", str, "")])


class Checkout(msgspec.Struct):
    pass


def _registry(*commands: type[Any], start: type[Any] = Open) -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(
        Workflow(
            name="shop",
            version=1,
            state_type=Cart,
            initial=Cart,
            decide=lambda s, c, x: [],
            evolve=lambda s, e: s,
            status=lambda s: "running",
            inputs=(start,),
            commands=commands,
        )
    )
    return reg


NO_EVENTS = EventTypeRegistry()


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "schema.lock"
    write_lock(path, code_document(_registry(Add), NO_EVENTS))
    return path


def _changes(lock: Path, reg: WorkflowRegistry) -> list[tuple[str, str]]:
    return [(c.kind, c.subject) for c in check_lock(lock, reg, types=NO_EVENTS)]


def test_the_lock_holds_the_inputs_of_each_version(lock: Path) -> None:
    doc = json.loads(lock.read_text())
    entry = doc["inputs"]["shop@1"]
    assert list(entry["start"]) == ["Open"] and list(entry["command"]) == ["Add"]
    assert [f["name"] for f in entry["command"]["Add"]["fields"]] == ["sku", "qty"]
    assert _changes(lock, _registry(Add)) == []


@pytest.mark.parametrize(
    ("command", "subject", "words"),
    [
        (AddRemoved, "command shop@1 Add.qty", "field removed"),
        (AddRetyped, "command shop@1 Add.qty", "type changed from int to str"),
        (AddRequired, "command shop@1 Add.note", "new field without a default"),
    ],
    ids=["removed", "retyped", "required"],
)
def test_a_breaking_command_change_is_reported(
    lock: Path, command: type[Any], subject: str, words: str
) -> None:
    changes = check_lock(lock, _registry(command), types=NO_EVENTS)
    assert [(c.kind, c.subject) for c in changes] == [("breaking", subject)]
    assert words in changes[0].message


def test_a_new_field_with_a_default_is_safe(lock: Path) -> None:
    changes = check_lock(lock, _registry(AddDefault), types=NO_EVENTS)
    assert [(c.kind, c.subject) for c in changes] == [
        ("safe", "command shop@1 Add.note")
    ]
    assert "old senders leave it out" in changes[0].message


def test_a_start_input_is_checked_like_a_command(lock: Path) -> None:
    class Open(msgspec.Struct):  # the field was renamed
        name: str

    assert _changes(lock, _registry(Add, start=Open)) == [
        ("breaking", "start shop@1 Open.shop"),
        ("breaking", "start shop@1 Open.name"),
    ]


def test_a_command_no_longer_accepted_is_breaking(lock: Path) -> None:
    changes = check_lock(lock, _registry(), types=NO_EVENTS)
    assert [(c.kind, c.subject) for c in changes] == [
        ("breaking", "command shop@1 Add")
    ]
    assert "a Kafka producer may still send it" in changes[0].message


def test_a_command_newly_accepted_by_a_locked_version_needs_two_steps(
    lock: Path,
) -> None:
    assert _changes(lock, _registry(Add, Checkout)) == [
        ("mixed-fleet-unsafe", "command shop@1 Checkout")
    ]


def test_a_lock_written_before_inputs_reports_them_as_new(tmp_path: Path) -> None:
    doc = code_document(_registry(Add), NO_EVENTS)
    del doc["inputs"]
    path = tmp_path / "old.lock"
    write_lock(path, doc)
    assert _changes(path, _registry(Checkout)) == [
        ("safe", "start shop@1 Open"),
        ("safe", "command shop@1 Checkout"),
    ]


def test_a_malformed_inputs_section_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.lock"
    bad.write_text(json.dumps({"format": 1, "events": {}, "inputs": {"shop@1": 3}}))
    with pytest.raises(SchemaLockError, match="'inputs' is malformed"):
        check_lock(bad, _registry(Add), types=NO_EVENTS)


def decide_annotated(state: Cart, cmd: Open | Add | None, ctx: Context) -> list[Any]:
    return []


def test_decide_annotation_names_the_inputs_when_none_are_declared() -> None:
    wf = Workflow(
        name="shop",
        version=1,
        state_type=Cart,
        initial=Cart,
        decide=decide_annotated,
        evolve=lambda s, e: s,
        status=lambda s: "running",
    )
    assert start_types(wf) == (Open, Add) == command_types(wf)
    plain = Workflow(
        name="shop",
        version=2,
        state_type=Cart,
        initial=Cart,
        decide=lambda s, c, x: [],
        evolve=lambda s, e: s,
        status=lambda s: "running",
    )
    assert start_types(plain) == () == command_types(plain)


def test_inputs_must_be_a_tuple_of_classes() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"shop@1: commands=\[.*tuple"):
        Workflow(
            name="shop",
            version=1,
            state_type=Cart,
            initial=Cart,
            decide=lambda s, c, x: [],
            evolve=lambda s, e: s,
            status=lambda s: "running",
            commands=[Add],  # type: ignore[arg-type]
        )


_APP = """
import msgspec
from engine import Workflow, WorkflowRegistry

class Cart(msgspec.Struct):
    items: int = 0

class Add(msgspec.Struct):
    sku: str
{extra}

def registry():
    reg = WorkflowRegistry()
    reg.register(Workflow(name="shop", version=1, state_type=Cart, initial=Cart,
        decide=lambda s, c, x: [], evolve=lambda s, e: s,
        status=lambda s: "running", inputs=(Add,), commands=(Add,)))
    return reg
"""


def _nonstop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(cwd)])}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_schema_check_fails_on_a_retyped_command_field(tmp_path: Path) -> None:
    (tmp_path / "v1.py").write_text(_APP.format(extra=""))
    (tmp_path / "v2.py").write_text(_APP.format(extra="    qty: int"))
    (tmp_path / "v3.py").write_text(_APP.format(extra="    qty: int = 1"))
    done = _nonstop("--app", "v1:registry", "schema", "lock", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "inputs shop@1: start Add, command Add" in done.stdout
    done = _nonstop("--app", "v2:registry", "schema", "check", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    text = textwrap.dedent(done.stdout)
    assert "BREAKING command shop@1 Add.qty: new field without a default" in text
    assert "BREAKING start shop@1 Add.qty" in text
    done = _nonstop("--app", "v3:registry", "schema", "check", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "safe command shop@1 Add.qty: new field with a default" in done.stdout
