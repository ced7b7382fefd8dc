"""``nonstop console`` as a process, and the extra it needs."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.errors import MissingExtra
from tests.console.conftest import APP, seed

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, token: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_nonstop_console_serves_the_overview(sqlite_url: str) -> None:
    seed(sqlite_url)
    port = _free_port()
    env = {**os.environ, "NONSTOP_CONSOLE_TOKEN": "t0ken"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "--store",
            sqlite_url,
            "--app",
            APP,
            "console",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        status, body = 0, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(f"{base}/", "t0ken")
                break
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.1)  # polling the condition "the port answers"
        assert status == 200, (status, body[:500])
        assert "<h2 id=wf-tills>tills</h2>" in body
        assert _get(f"{base}/api/flags", "wrong")[0] == 401
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert f"on http://127.0.0.1:{port}/" in out and "token required" in out


def test_console_refuses_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["--store", url, "--app", APP, "console", "--port", "1"]) == 2
    assert "no nonstop store" in capsys.readouterr().err.lower()
    assert not (tmp_path / "none.db").exists()


def test_importing_the_console_without_its_extra_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m.startswith("engine.console")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "starlette", None)
    with pytest.raises(MissingExtra) as err:
        importlib.import_module("engine.console")
    assert "pip install 'nonstop[console]'" in str(err.value)
    assert "starlette" in str(err.value)
