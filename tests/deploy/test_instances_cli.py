"""``nonstop start|send`` and ``--json`` listings, run as a user runs them.

Each command is a subprocess of the installed ``nonstop`` script, from a
temporary directory holding the user's workflow module (``loans.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

NONSTOP = str(Path(sys.executable).parent / "nonstop")

LOANS = '''
from __future__ import annotations

import msgspec

from engine import Context, Status, Workflow, WorkflowRegistry, event


class Apply(msgspec.Struct, frozen=True):
    applicant: str
    amount: int
    note: str = ""


class Approve(msgspec.Struct, frozen=True):
    by: str


class Unrelated(msgspec.Struct, frozen=True):
    """Not a command: decide's annotation names the commands."""


@event("loans.Applied")
class Applied(msgspec.Struct, frozen=True):
    applicant: str
    amount: int
    note: str = ""


@event("loans.Approved")
class Approved(msgspec.Struct, frozen=True):
    by: str


class Loan(msgspec.Struct, frozen=True):
    applicant: str = ""
    amount: int = 0
    note: str = ""
    approved_by: str = ""


def decide(state: Loan, cmd: Apply | Approve, ctx: Context) -> list[object]:
    if isinstance(cmd, Apply):
        return [Applied(cmd.applicant, cmd.amount, cmd.note)]
    return [Approved(cmd.by)]


def evolve(state: Loan, e: object) -> Loan:
    if isinstance(e, Applied):
        return Loan(e.applicant, e.amount, e.note)
    if isinstance(e, Approved):
        return msgspec.structs.replace(state, approved_by=e.by)
    return state


def status(state: Loan) -> Status:
    return "completed" if state.approved_by else "running"


v1 = Workflow("loans", 1, Loan, Loan, decide, evolve, status)
v2 = Workflow("loans", 2, Loan, Loan, decide, evolve, status)


def registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(v1)
    return reg
'''


class User:
    """Runs ``nonstop`` in the user's directory against one store."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.store = f"sqlite:///{home / 'loans.db'}"
        (home / "loans.py").write_text(LOANS)

    def run(self, *argv: str, app: str = "loans:registry") -> tuple[int, str, str]:
        env = {**os.environ, "PYTHONPATH": str(self.home)}
        done = subprocess.run(
            [NONSTOP, "--store", self.store, "--app", app, *argv],
            cwd=self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr

    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv, "--json")
        assert code in (0, 1), err
        return json.loads(out)


@pytest.fixture
def user(tmp_path: Path) -> User:
    return User(tmp_path)


def test_start_and_send_by_command_name(user: User) -> None:
    started = user.json(
        "start",
        "loans",
        "--input",
        '{"applicant": "ada", "amount": 500}',
        "--id",
        "l-1",
    )
    assert started == {
        "instance_id": "l-1",
        "workflow": "loans",
        "version": 1,
        "status": "running",
        "position": 2,
        "state": {"applicant": "ada", "amount": 500, "note": "", "approved_by": ""},
    }
    (user.home / "apply.json").write_text('{"applicant": "bo", "amount": 7}')
    code, out, err = user.run(
        "start", "loans", "--input", "@apply.json", "--id", "l-2", "--version", "1"
    )
    assert code == 0, err
    assert "started l-2" in out and '"applicant":"bo"' in out
    sent = user.json(
        "send", "l-1", "Approve", "--input", '{"by": "cy"}', "--command-id", "ap-1"
    )
    assert (sent["status"], sent["state"]["approved_by"]) == ("completed", "cy")
    code, out, err = user.run(
        "send", "l-1", "Approve", "--input", '{"by": "cy"}', "--command-id", "ap-1"
    )
    assert code == 0 and "already applied" in out, err
    assert len(user.json("history", "l-1")) == 3  # Started, Applied, Approved


def test_bad_commands_are_refused_by_name_and_write_nothing(user: User) -> None:
    code, _, err = user.run(
        "start", "loans", "--input", '{"applicant": "ada", "amount": "lots"}'
    )
    assert code == 2
    assert "not a valid Apply for loans@1" in err and "$.amount" in err
    assert "fields: applicant, amount, note" in err
    code, _, err = user.run("start", "loans", "--input", "{not json")
    assert code == 2 and "--input is not JSON" in err
    code, _, err = user.run("start", "loans", "--input", "@missing.json")
    assert code == 2 and "cannot read --input file 'missing.json'" in err
    assert user.json("instances") == []
    user.run(
        "start", "loans", "--input", '{"applicant": "a", "amount": 1}', "--id", "x"
    )
    code, _, err = user.run("send", "x", "Unrelated")
    assert (
        code == 2
        and "loans@1 has no command 'Unrelated'; it takes: Apply, Approve" in err
    )
    code, _, err = user.run("send", "x", "Approve", "--input", "{}")
    assert code == 2 and "Object missing required field `by`" in err
    assert [e["type"] for e in user.json("history", "x")] == [
        "nonstop.Started",
        "loans.Applied",
    ]


def test_the_declared_input_and_command_types(user: User) -> None:
    # The demo's order workflow declares them: Workflow(inputs=..., commands=...).
    code, out, err = user.run(
        "start",
        "orders",
        "--input",
        '{"order_id": "o-1", "amount": 5}',
        "--id",
        "o-1",
        "--json",
        app="engine.demo.orders:registry",
    )
    assert code == 0, err
    assert json.loads(out)["state"]["order_id"] == "o-1"
    code, _, err = user.run("send", "o-1", "Refund", app="engine.demo.orders:registry")
    assert code == 2 and "orders@1 has no command 'Refund'; it takes: Pay, Ship" in err


def test_the_command_types_of_a_module_without_annotations() -> None:
    # Nothing declared, decide annotated as ``object``: the structs of its
    # module that are not events nor the state are its commands.
    import dataclasses

    from engine.commands.instances import command_types
    from engine.demo import orders

    bare = dataclasses.replace(orders.v1, inputs=(), commands=())
    names = ["PlaceOrder", "CheckFraud", "Pay", "Ship"]
    assert list(command_types(bare)) == names
    assert list(command_types(bare, start=True)) == names
    assert list(command_types(orders.v2, start=True)) == ["PlaceOrder"]


def test_listings_print_json_and_show_decodes_migrations(user: User) -> None:
    note = "~" * 400
    for v in (1, 2):
        code, _, err = user.run("deploy", "loans", str(v), "--source", f"loans:v{v}")
        assert code == 0, err
    user.run(
        "start",
        "loans",
        "--version",
        "1",
        "--id",
        "m-1",
        "--input",
        json.dumps({"applicant": "ada", "amount": 3, "note": note}),
    )
    code, _, err = user.run(
        "migrate", "loans", "--from", "1", "--to", "2", "--by", "ann", "--reason", "r"
    )
    assert code == 0, err
    shown = user.json("show", "m-1")
    assert shown["version"] == 2 and shown["state"]["note"] == note
    migrated = shown["history"][-1]
    assert migrated["type"] == "nonstop.Migrated"
    assert migrated["event"]["state"] == {  # decoded, not base64 msgpack
        "applicant": "ada",
        "amount": 3,
        "note": note,
        "approved_by": "",
    }
    assert shown["history"][0]["event"]["input"]["applicant"] == "ada"
    # The note is in the state, the start input, Applied and Migrated: cut to
    # fit a line each without --full, whole (wrapped in its cell) with it.
    code, out, _ = user.run("show", "m-1")
    assert code == 0 and '"applicant":"ada"' in out and "--full" in out
    assert out.count("~") < 4 * 200
    code, out, _ = user.run("show", "m-1", "--full")
    assert out.count("~") == 4 * 400 and "--full" not in out
    [instance] = user.json("instances")
    assert (instance["instance_id"], instance["version"]) == ("m-1", 2)
    versions = user.json("versions", "loans")
    assert [(v["version"], v["state"], v["running"]) for v in versions] == [
        (1, "drained", 0),
        (2, "active", 1),
    ]
    audit = user.json("audit", "loans")
    assert audit[-1]["action"] == "migrate" and audit[-1]["by"] == "ann"
    assert "1 instance(s) v1 -> v2" in audit[-1]["detail"]
    assert user.json("flags", "list") == []
    status = user.json("projections", "status")
    assert any(p["name"] == "nonstop_instances" for p in status)
    assert user.json("deadletters", "list") == []
