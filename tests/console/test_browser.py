"""Click-through tests of the console in a real headless Chromium (Selenium).

They need Debian's ``chromium`` and ``chromium-driver`` (``make debs``) and
skip without them, unless ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.deploy import Deployments
from engine.runtime import Engine
from tests.console.conftest import APP, seed
from tests.console.test_serve import served
from tests.health.flows import Open, registry

if importlib.util.find_spec("selenium") is None and not os.environ.get("CI"):
    pytest.skip("selenium is not installed", allow_module_level=True)

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
TOKENS = "op-token alice operator\nview-token bob viewer\n"
# The running instances of tills on the overview: the 4th cell of each row.
RUNNING = (
    "var n=0;for(const r of document.querySelector('#live table').rows)"
    "{if(r.cells[0].tagName==='TD')n+=+r.cells[3].textContent;}return n;"
)


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        if os.environ.get("CI"):
            pytest.fail("chromium or chromedriver missing (make debs installs them)")
        pytest.skip(
            "chromium or chromedriver missing (apt-get install chromium-driver)"
        )
    options = Options()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        d = webdriver.Chrome(options=options, service=Service(driver))
        try:
            d.set_page_load_timeout(30)
            yield d
        finally:
            d.quit()


@contextmanager
def console(url: str, tmp: Path) -> Iterator[str]:
    tokens = tmp / "tokens"
    tokens.write_text(TOKENS)
    with served(url, "--tokens-file", str(tokens)) as base:
        yield base


@contextmanager
def starting_instances(url: str) -> Iterator[None]:
    """Start tills instances in the background (routed) until the block ends."""
    stop = threading.Event()

    async def run() -> None:
        engine = Engine(url, registry())
        try:
            n = 0
            while not stop.is_set():
                await engine.start("tills", Open(), instance_id=f"live{n}")
                n += 1
                await asyncio.sleep(0.1)  # a steady trickle of new work
        finally:
            await engine.close()

    worker = threading.Thread(target=asyncio.run, args=(run(),))
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(timeout=30)


def _wait(d: Any, seconds: float, check: Any) -> None:
    WebDriverWait(d, seconds, poll_frequency=0.1).until(lambda _: check())


def _live(d: Any) -> str:
    text: str = d.find_element(By.ID, "live").text
    return text


def _routing(url: str) -> str:
    with Deployments(url) as reg:
        r = reg.refresh().workflow("tills").effective()
        return r.describe() if r else ""


def test_an_operator_watches_a_promote_and_clicks_rollback(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    d = browser
    seed(sqlite_url)
    with console(sqlite_url, tmp_path) as base, starting_instances(sqlite_url):
        d.get(f"{base}/login?token=op-token")  # sets the cookie, back to /
        assert "alice (operator)" in d.find_element(By.TAG_NAME, "nav").text
        assert "routing v1: 50 %, v2: 50 %" in _live(d)
        # instances start meanwhile: the counts grow without a reload
        d.execute_script("window.loadedOnce = true;")
        before = d.execute_script(RUNNING)
        _wait(d, 10, lambda: d.execute_script(RUNNING) > before)
        # a promote on the command line shows within 2 s, without a reload
        cli = ["--store", sqlite_url, "--app", APP]
        assert main([*cli, "promote", "tills", "2", "--percent", "80"]) == 0
        _wait(d, 2, lambda: "routing v1: 20 %, v2: 80 %" in _live(d))
        assert d.execute_script("return window.loadedOnce") is True
        # roll back with the page's own form: a reason, then the button
        for _ in range(5):
            try:
                f = d.find_element(
                    By.CSS_SELECTOR, "form[action='/api/workflows/tills/rollback']"
                )
                f.find_element(By.NAME, "reason").send_keys("canary too slow")
                f.find_element(By.TAG_NAME, "button").click()
                break
            except StaleElementReferenceException:
                continue  # swapped by the live refresh between two steps
        _wait(d, 10, lambda: _routing(sqlite_url) == "v1: 100 %")
        _wait(d, 5, lambda: "routing v1: 100 %" in _live(d))
    with Deployments(sqlite_url) as reg:
        last = [a for a in reg.refresh().audit if a.action == "rollback"][-1]
    assert (last.by, last.reason) == ("alice", "canary too slow")


def test_a_viewer_sees_no_action_button(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    d = browser
    seed(sqlite_url)
    with console(sqlite_url, tmp_path) as base:
        d.get(f"{base}/login?token=view-token")
        assert "bob (viewer)" in d.find_element(By.TAG_NAME, "nav").text
        for path in ("/", "/rollouts/tills", "/flags", "/deadletters", "/config"):
            d.get(base + path)
            assert d.find_element(By.TAG_NAME, "h1").text, path
            assert d.find_elements(By.TAG_NAME, "form") == [], path
            assert d.find_elements(By.TAG_NAME, "button") == [], path
        d.get(base + "/")
        assert "routing v1: 50 %, v2: 50 %" in _live(d)
        # a viewer's own request to act is refused too
        status = d.execute_script(
            "return fetch('/api/csrf').then(r=>r.json()).then(c=>fetch("
            "'/api/workflows/tills/rollback',{method:'POST',headers:{"
            "'X-CSRF-Token':c.csrf,'Content-Type':'application/json'},"
            "body:JSON.stringify({reason:'x'})})).then(r=>r.status);"
        )
        assert status == 403
    assert _routing(sqlite_url) == "v1: 50 %, v2: 50 %"
