"""The rollout commands, in-process against a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.deploy import Deployments

APP = "tests.health.flows:registry"


def nonstop(
    capsys: pytest.CaptureFixture[str], url: str, *argv: str
) -> tuple[int, str]:
    code = main(["--store", url, "--app", APP, *argv])
    got = capsys.readouterr()
    return code, got.out + got.err


def test_start_status_pause_resume_abort(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    code, out = nonstop(capsys, sqlite_url, "rollout", "status", "tills")
    assert code == 2 and "has no rollout" in out
    Deployments(sqlite_url).deploy("tills", 1, "tests.health.flows:v1", by="t")
    plan = tmp_path / "plan.toml"
    plan.write_text('steps = [10, 100]\ninterval = "5m"\nmin_sample = 7\n')
    code, out = nonstop(
        capsys,
        sqlite_url,
        "rollout",
        "start",
        "tills",
        "2",
        "--source",
        "tests.health.flows:v2",
        "--plan",
        str(plan),
        "--failure-limit",
        "3",
    )
    assert code == 0 and "at 10 % beside v1" in out and "every 300 s" in out
    routing = Deployments(sqlite_url).refresh().workflow("tills").routing
    assert routing is not None and (routing.canary, routing.canary_bp) == (2, 1000)
    code, out = nonstop(capsys, sqlite_url, "rollout", "start", "tills", "2")
    assert code == 2 and "in progress" in out
    code, out = nonstop(capsys, sqlite_url, "rollout", "run", "--once")
    assert code == 0 and "rollout #" not in out  # no window is due yet
    for action, status in (("pause", "paused"), ("resume", "running")):
        code, out = nonstop(capsys, sqlite_url, "rollout", action, "tills")
        assert code == 0 and out.strip().endswith(status)
    code, out = nonstop(capsys, sqlite_url, "rollout", "status", "tills")
    assert code == 0 and "running, share 10 %" in out
    code, out = nonstop(
        capsys, sqlite_url, "rollout", "abort", "tills", "--reason", "enough"
    )
    assert code == 0 and out.strip().endswith("aborted")
    view = Deployments(sqlite_url).refresh()
    routing = view.workflow("tills").routing
    assert routing is not None and (routing.stable, routing.canary) == (1, None)
    assert view.audit[-1].action == "rollback"
    code, out = nonstop(capsys, sqlite_url, "rollout", "resume", "tills")
    assert code == 2 and "no rollout paused" in out
    code, out = nonstop(capsys, sqlite_url, "audit", "--json")
    actions = [a["action"] for a in json.loads(out) if a["subject"] == "tills"]
    for kind in ("start", "pause", "resume", "abort"):
        assert f"rollout {kind}" in actions
    assert actions.index("rollout start") < actions.index("rollout abort")


def test_a_bad_plan_is_refused_with_what_to_do(
    capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    Deployments(sqlite_url).deploy("tills", 1, "tests.health.flows:v1", by="t")
    code, out = nonstop(
        capsys, sqlite_url, "rollout", "start", "tills", "2", "--steps", "50,20,100"
    )
    assert code == 2 and "must increase" in out
    code, out = nonstop(
        capsys, sqlite_url, "rollout", "start", "tills", "2", "--interval", "soon"
    )
    assert code == 2 and "like 90, 90s, 5m" in out
