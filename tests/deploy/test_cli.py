"""The deployment commands of ``nonstop``, in-process against a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import SyncEngine
from engine.cli import main
from engine.deploy import Deployments
from engine.store import open_store
from tests.deploy import flows

APP = "tests.deploy.flows:registry"
SRC = "tests.deploy.flows"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'deploy.db'}"


def nonstop(
    capsys: pytest.CaptureFixture[str], url: str, *argv: str
) -> tuple[int, str, str]:
    code = main(["--store", url, "--app", APP, *argv])
    got = capsys.readouterr()
    return code, got.out, got.err


def test_deploy_canary_promote_rollback_versions(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out, _ = nonstop(capsys, url, "deploy", "jobs", "1", "--source", f"{SRC}:v1")
    assert code == 0 and "routing v1: 100 %" in out
    with SyncEngine(url, flows.registry()) as engine:
        for i in range(3):
            engine.start("jobs", flows.Begin(), instance_id=f"j{i}", version=1)
        engine.send("j0", flows.Finish())
    code, out, _ = nonstop(
        capsys,
        url,
        "deploy",
        "jobs",
        "4",
        "--source",
        f"{SRC}:v4",
        "--canary",
        "10",
        "--by",
        "ann",
        "--reason",
        "try v4",
    )
    assert code == 0 and "v1: 90 %, v4: 10 %" in out
    code, out, _ = nonstop(capsys, url, "promote", "jobs", "4", "--percent", "25")
    assert code == 0 and "v1: 75 %, v4: 25 %" in out
    code, out, _ = nonstop(capsys, url, "versions", "jobs")
    assert code == 0
    v1 = next(line for line in out.splitlines() if "│ 1 " in line)
    assert "active" in v1 and "75 %" in v1
    assert v1.split("│")[5].strip() == "2"  # running
    assert v1.split("│")[6].strip() == "1"  # completed
    code, out, _ = nonstop(capsys, url, "rollback", "jobs", "--reason", "errors")
    assert code == 0 and "v1: 100 %" in out
    code, out, _ = nonstop(capsys, url, "versions")
    v4 = next(line for line in out.splitlines() if "│ 4 " in line)
    assert "drained" in v4  # no instance ever ran on it
    code, out, _ = nonstop(capsys, url, "audit", "jobs")
    assert "ann" in out and "try v4" in out and "errors" in out
    code, _, err = nonstop(capsys, url, "retire", "jobs", "1")
    assert code == 2 and "gets 100 % of new instances" in err
    code, out, _ = nonstop(capsys, url, "retire", "jobs", "4")
    assert code == 0 and "retired jobs@4" in out


def test_retire_refusal_names_the_count(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    nonstop(capsys, url, "deploy", "jobs", "1", "--source", f"{SRC}:v1")
    with SyncEngine(url, flows.registry()) as engine:
        for i in range(2):
            engine.start("jobs", flows.Begin(), instance_id=f"j{i}", version=1)
    nonstop(capsys, url, "deploy", "jobs", "2", "--source", f"{SRC}:v2")
    code, _, err = nonstop(capsys, url, "retire", "jobs", "1")
    assert code == 2 and "2 instance(s) still run on it" in err


def test_migrate_dry_run_then_apply(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    for v in (1, 2):
        code, _, err = nonstop(
            capsys, url, "deploy", "jobs", str(v), "--source", f"{SRC}:v{v}"
        )
        assert code == 0, err
    with SyncEngine(url, flows.registry()) as engine:
        for i, steps in enumerate([0, 1, 2]):
            engine.start("jobs", flows.Begin(), instance_id=f"m{i}", version=1)
            for _ in range(steps):
                engine.send(f"m{i}", flows.Step())
    mapper = f"{SRC}:failing_mapper"
    argv = ["migrate", "jobs", "--from", "1", "--to", "2", "--mapper", mapper]
    code, out, _ = nonstop(capsys, url, *argv, "--dry-run")
    assert code == 1  # one instance would fail
    assert "2 would be migrated, 1 failed" in out
    with SyncEngine(url, flows.registry()) as engine:
        assert {engine.get(f"m{i}").version for i in range(3)} == {1}
    code, out, _ = nonstop(capsys, url, *argv, "--by", "ann", "--reason", "label")
    assert "2 migrated, 1 failed" in out
    with SyncEngine(url, flows.registry()) as engine:
        assert [engine.get(f"m{i}").version for i in range(3)] == [2, 1, 2]
    code, _, err = nonstop(capsys, url, *argv[:6], "--mapper", "nowhere:f")
    assert code == 2 and "cannot load the mapper 'nowhere:f'" in err
    code, out, _ = nonstop(capsys, url, "audit", "jobs")
    line = next(x for x in out.splitlines() if "migrate" in x)
    for word in ("2 instance(s) v1 -> v2", "1 failed", "failing_mapper", "ann"):
        assert word in out, word
    assert "ann" in line and "label" in line


def test_migrate_refuses_a_version_never_deployed(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    nonstop(capsys, url, "deploy", "jobs", "1", "--source", f"{SRC}:v1")
    with SyncEngine(url, flows.registry()) as engine:
        engine.start("jobs", flows.Begin(), instance_id="m0", version=1)
    with open_store(url) as store:
        head = store.last_global_position()
    argv = ["migrate", "jobs", "--from", "1", "--to", "2"]
    code, _, err = nonstop(capsys, url, *argv)
    assert code == 2
    assert "jobs@2: it was never deployed (deployed: v1)" in err
    assert "nothing was written" in err
    with open_store(url) as store:
        assert store.last_global_position() == head
    with SyncEngine(url, flows.registry()) as engine:
        assert engine.get("m0").version == 1
    code, out, _ = nonstop(capsys, url, "audit", "jobs")
    assert "migrate" not in out


def test_flags_commands(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert nonstop(capsys, url, "flags", "set", "fast", "--on")[0] == 0
    assert nonstop(capsys, url, "flags", "set", "ramp", "--percent", "12.5")[0] == 0
    code, out, _ = nonstop(
        capsys, url, "flags", "set", "colour", "--variants", "red=30,blue=70"
    )
    assert code == 0 and "red: 30 %, blue: 70 %" in out
    code, _, err = nonstop(capsys, url, "flags", "set", "c2", "--variants", "red")
    assert code == 2 and "expected NAME=PCT" in err
    code, out, _ = nonstop(capsys, url, "flags", "kill", "fast", "--reason", "bug")
    assert code == 0 and "killed" in out
    code, _, err = nonstop(capsys, url, "flags", "kill", "nope")
    assert code == 2 and "unknown flag 'nope'" in err
    code, out, _ = nonstop(capsys, url, "flags", "list")
    assert "12.5 %" in out and "on (killed)" in out
    registry = Deployments(url)
    registry.refresh()
    assert registry.view.flags["fast"].killed
    assert registry.view.audit[-1].reason == "bug"
    registry.close()


def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, _, err = nonstop(capsys, url, "deploy", "jobs", "1", "--source", "x")
    assert code == 2 and "expected MODULE:ATTRIBUTE" in err
    code, _, err = nonstop(capsys, url, "rollback", "jobs")
    assert code == 2 and "no previous version" in err
    code, _, err = nonstop(
        capsys, url, "deploy", "jobs", "1", "--source", f"{SRC}:v1", "--canary", "200"
    )
    assert code == 2 and "between 0 and 100" in err


def test_a_second_canary_needs_replace_and_is_named(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    nonstop(capsys, url, "deploy", "jobs", "1", "--source", f"{SRC}:v1")
    argv = ["deploy", "jobs", "2", "--source", f"{SRC}:v2", "--canary", "10"]
    assert nonstop(capsys, url, *argv)[0] == 0
    argv = ["deploy", "jobs", "4", "--source", f"{SRC}:v4", "--canary", "20"]
    code, _, err = nonstop(capsys, url, *argv)
    assert code == 2 and "already has a canary: v2 at 10 %" in err
    code, out, _ = nonstop(capsys, url, *argv, "--replace", "--reason", "v2 slow")
    assert code == 0
    assert "routing v1: 80 %, v4: 20 % (replaced canary v2, which now drains)" in out
    code, out, _ = nonstop(capsys, url, "audit", "jobs")
    assert "replaces canary v2" in out and "v2 slow" in out
