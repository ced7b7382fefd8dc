"""``nonstop cancel``, run as a user runs it: a subprocess from the user's directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_instances_cli import LOANS

NONSTOP = str(Path(sys.executable).parent / "nonstop")


class User:
    """Runs ``nonstop`` in a directory holding ``loans.py``, against one store."""

    def __init__(self, home: Path, store: str) -> None:
        self.home = home
        self.store = store
        (home / "loans.py").write_text(LOANS)

    def run(self, *argv: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [NONSTOP, "--store", self.store, "--app", "loans:registry", *argv],
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr

    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def user(tmp_path: Path, durable_url: str) -> User:
    home = tmp_path / "home"
    home.mkdir()
    return User(home, durable_url)


def _start(user: User, iid: str) -> None:
    user.json(
        "start", "loans", "--input", '{"applicant": "a", "amount": 1}', "--id", iid
    )


@pytest.mark.timeout(240)
def test_cancel_from_the_command_line(user: User) -> None:
    _start(user, "l-1")
    _start(user, "l-2")
    code, out, err = user.run(
        "cancel", "l-1", "--reason", "duplicate application", "--by", "ops:ana"
    )
    assert code == 0, err
    assert "cancelled l-1" in out and "cancelled" in out

    # It stays cancelled, audited, and refuses commands.
    shown = user.json("show", "l-1")
    assert shown["status"] == "cancelled"
    last = shown["history"][-1]
    assert last["type"] == "nonstop.Cancelled"
    assert last["event"]["reason"] == "duplicate application"
    assert last["event"]["by"] == "ops:ana"
    code, out, _ = user.run("show", "l-1")
    assert "cancelled by" in out and "ops:ana" in out and "duplicate" in out
    code, out, _ = user.run("history", "l-1")
    assert code == 0 and "nonstop.Cancelled" in out and "duplicate" in out
    code, _, err = user.run("send", "l-1", "Approve", "--input", '{"by": "x"}')
    assert code == 2 and "the instance is cancelled" in err

    listed = {i["instance_id"]: i["status"] for i in user.json("instances")}
    assert listed == {"l-1": "cancelled", "l-2": "running"}
    only = user.json("instances", "--status", "cancelled")
    assert [i["instance_id"] for i in only] == ["l-1"]
    (v1,) = user.json("versions")
    assert (v1["running"], v1["cancelled"]) == (1, 1)


@pytest.mark.timeout(240)
def test_refused_cancels_are_exit_2_and_write_nothing(user: User) -> None:
    _start(user, "l-1")
    assert user.run("cancel", "l-1", "--reason", "stop")[0] == 0
    before = len(user.json("history", "l-1"))
    code, out, err = user.run("cancel", "l-1", "--reason", "again")
    assert code == 2 and out == ""
    assert "the instance is cancelled; only a running instance" in err

    _start(user, "l-2")
    user.json("send", "l-2", "Approve", "--input", '{"by": "cy"}')
    code, _, err = user.run("cancel", "l-2", "--reason", "late")
    assert code == 2 and "the instance is completed" in err

    code, _, err = user.run("cancel", "nope", "--reason", "x")
    assert code == 2 and "nope" in err
    code, _, err = user.run("cancel", "l-1")
    assert code == 2 and "--reason" in err
    assert len(user.json("history", "l-1")) == before
    assert len(user.json("history", "l-2")) == 3


@pytest.mark.timeout(240)
def test_cancel_with_a_command_id_is_idempotent(user: User) -> None:
    _start(user, "l-1")
    first = user.run("cancel", "l-1", "--reason", "stop", "--command-id", "c-1")
    again = user.run("cancel", "l-1", "--reason", "stop", "--command-id", "c-1")
    assert first[0] == again[0] == 0, again[2]
    assert "already cancelled (same --command-id)" in again[1]
    assert len(user.json("history", "l-1")) == 3
