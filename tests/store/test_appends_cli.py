"""``nonstop store appends``: show and switch the append mode from the shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.store.postgres import PostgresStore

NONSTOP = str(Path(sys.executable).with_name("nonstop"))


def _nonstop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NONSTOP_STORE"}
    return subprocess.run(
        [NONSTOP, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.postgres
def test_show_and_switch_a_postgres_store(pg_url: str, tmp_path: Path) -> None:
    PostgresStore(pg_url).close()
    shown = _nonstop("--store", pg_url, "store", "appends", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().endswith("appends serial")
    switched = _nonstop(
        "--store", pg_url, "store", "appends", "concurrent", cwd=tmp_path
    )
    assert switched.returncode == 0, switched.stderr
    assert PostgresStore(pg_url).appends == "concurrent"
    again = _nonstop("--store", pg_url, "store", "appends", "concurrent", cwd=tmp_path)
    assert "already; nothing changed" in again.stdout
    shown = _nonstop("--store", pg_url, "store", "appends", cwd=tmp_path)
    assert "appends concurrent" in shown.stdout
    assert "readers see every committed position" in shown.stdout or (
        "committed position(s) wait behind" in shown.stdout
    )
    bad = _nonstop("--store", pg_url, "store", "appends", "fast", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'fast'" in bad.stderr


def test_a_sqlite_store_appends_serially_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    assert _nonstop("--store", url, "init", cwd=tmp_path).returncode == 0
    shown = _nonstop("--store", url, "store", "appends", cwd=tmp_path)
    assert shown.returncode == 0 and "appends serial" in shown.stdout
    refused = _nonstop("--store", url, "store", "appends", "concurrent", cwd=tmp_path)
    assert refused.returncode == 2
    assert "a PostgreSQL store's" in refused.stderr


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_demo_runs_on_a_concurrent_store_and_its_hints_paste(
    pg_url: str, tmp_path: Path
) -> None:
    url = f"{pg_url}&appends=concurrent"
    done = subprocess.run(
        [NONSTOP, "demo", "--store", url],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "NONSTOP_STORE"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo OK" in done.stdout
    assert PostgresStore(pg_url).appends == "concurrent"
    hint = next(
        line.strip()
        for line in done.stdout.splitlines()
        if line.strip().startswith("nonstop --store") and "instances" in line
    )
    assert f"'{url}'" in hint  # quoted: the URL holds '&'
    env = dict(os.environ)
    env["PATH"] = f"{Path(NONSTOP).parent}{os.pathsep}{env.get('PATH', '')}"
    pasted = subprocess.run(
        ["bash", "-c", hint],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pasted.returncode == 0, pasted.stderr
