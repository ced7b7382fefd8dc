"""``nonstop effects list|retry|cancel``, ``run --once`` and the outbox in
``versions``, in-process against a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import SyncEngine
from engine.cli import main

from . import app, flows

BARE = "tests.effects.app:registry"
HANDLED = "tests.effects.app:with_handler"


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'effects.db'}"
    with SyncEngine(url, flows.registry()) as engine:
        engine.start("sales", flows.Buy(5), instance_id="a")
    return url


def nonstop(
    capsys: pytest.CaptureFixture[str], url: str, app_ref: str, *argv: str
) -> tuple[int, str, str]:
    code = main(["--store", url, "--app", app_ref, *argv])
    got = capsys.readouterr()
    return code, got.out, got.err


def test_versions_reports_pending_effects_and_a_missing_handler(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    from engine.runtime.handlers import default_handlers

    if default_handlers().get("Charge", 1) is None:
        code, out, err = nonstop(capsys, url, BARE, "versions", "--json")
        assert code == 1 and "without a handler: Charge@1" in err
        [row] = json.loads(out)
        assert (row["pending_effects"], row["pending_timers"]) == (1, 1)
        assert row["missing_handlers"] == ["Charge@1"]
    code, out, err = nonstop(capsys, url, HANDLED, "versions", "--json")
    assert code == 0, err
    [row] = json.loads(out)
    assert row["missing_handlers"] == [] and row["pending_effects"] == 1


def test_a_failing_effect_is_listed_retried_and_cancelled(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out, _ = nonstop(capsys, url, HANDLED, "run", "--once")
    assert code == 0 and "ran 1 effect(s), fired 0 timer(s)" in out
    code, out, _ = nonstop(
        capsys, url, HANDLED, "effects", "list", "--failed", "--json"
    )
    [failed] = json.loads(out)
    assert (failed["id"], failed["status"], failed["attempts"]) == (
        "a@2#1",
        "failed",
        app.ATTEMPTS,
    )
    assert "card declined for a@2#1" in failed["error"]
    code, out, _ = nonstop(capsys, url, HANDLED, "effects", "list")
    assert code == 0 and "a#timer:unpaid" in out and "cancelled" in out
    code, out, _ = nonstop(capsys, url, HANDLED, "effects", "retry", "a@2#1")
    assert code == 0 and "pending again" in out
    code, _, err = nonstop(capsys, url, HANDLED, "effects", "retry", "a@2#1")
    assert code == 1 and "it is pending" in err
    code, _, err = nonstop(capsys, url, HANDLED, "effects", "retry", "nope")
    assert code == 1 and "no such id" in err
    code, out, _ = nonstop(capsys, url, HANDLED, "effects", "cancel", "a@2#1")
    assert code == 0 and "cancelled a@2#1" in out
    code, out, _ = nonstop(capsys, url, HANDLED, "effects", "list", "--failed")
    assert code == 0 and "a@2#1" not in out
    code, _, err = nonstop(capsys, url, HANDLED, "effects", "cancel", "a@2#1")
    assert code == 1 and "it is cancelled" in err


def test_effects_list_creates_no_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    code, _, err = nonstop(capsys, url, BARE, "effects", "list")
    assert code == 2 and "no nonstop store" in err
    assert not (tmp_path / "none.db").exists()


def test_run_delivers_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'run.db'}"
    with SyncEngine(url, flows.registry()) as engine:
        engine.start("sales", flows.Remind(1), instance_id="r")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--store", url, "--app", BARE, "run"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        with SyncEngine(url, flows.registry()) as engine:
            while engine.get("r").state.notes == 0:
                assert time.monotonic() < deadline, "the timer never fired"
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: 0 effect(s) and 1 timer(s) delivered" in out
