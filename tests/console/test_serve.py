"""``nonstop console`` as a process, and the extra it needs."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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


def _get(url: str, token: str, host: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if host is not None:
        headers["Host"] = host
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextmanager
def served(url: str, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``nonstop console`` on a free port, until its overview answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "--store",
            url,
            "--app",
            APP,
            "console",
            "--port",
            str(port),
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the console did not answer in 60 s"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.05)  # polling the condition "the port answers"
        yield base
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert f"on http://127.0.0.1:{port}/" in out


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_nonstop_console_serves_the_overview(sqlite_url: str) -> None:
    seed(sqlite_url)
    with served(sqlite_url, env={"NONSTOP_CONSOLE_TOKEN": "t0ken"}) as base:
        status, body = _get(f"{base}/", "t0ken")
        assert status == 200, body[:500]
        assert "<h2 id=wf-tills>tills</h2>" in body
        assert _get(f"{base}/api/flags", "wrong")[0] == 401
        # a page of another site that rebinds its name to 127.0.0.1 is refused
        status, body = _get(f"{base}/api/flags", "t0ken", host="evil.example")
        assert status == 403 and "'evil.example' refused" in body
        assert _get(f"{base}/", "t0ken", host="localhost:1234")[0] == 200


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_headless_chromium_renders_the_overview_and_a_rollout(sqlite_url: str) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (make debs installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    seed(sqlite_url)
    with served(sqlite_url, "--read-only") as base:
        dom = {}
        for page in ("/", "/rollouts/tills"):
            done = subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--dump-dom",
                    base + page,
                ],
                capture_output=True,
                text=True,
                timeout=90,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            dom[page] = done.stdout
    overview = dom["/"]
    assert '<h2 id="wf-tills">tills</h2>' in overview
    assert "v1: 50 %, v2: 50 %" in overview and "<progress" in overview
    assert "(read-only)" in overview and "<form" not in overview
    rollout = dom["/rollouts/tills"]
    assert rollout.count("<svg") == 3 and "mean latency (ms)" in rollout


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


def test_a_bad_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["console", "--port", "99999"])
    assert exc.value.code == 2
    assert "'99999' is not a TCP port" in capsys.readouterr().err
