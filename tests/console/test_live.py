"""Live pages: the fragment a page fetches shows a CLI change within 2 s."""

from __future__ import annotations

import time
import urllib.request

import pytest

from engine.cli import main
from tests.console.conftest import APP, Seeded, seed
from tests.console.test_serve import served


def _within(seconds: float, check: object) -> bool:
    """Whether ``check()`` holds before ``seconds`` have passed (a condition)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)  # polling the condition, not waiting for time
    return False


def test_the_fragment_is_the_live_part_of_the_page(seeded: Seeded) -> None:
    c = seeded.client()
    whole = c.get("/").text
    part = c.get("/", headers={"X-Nonstop-Fragment": "1"})
    assert part.headers["cache-control"] == "no-store"
    assert part.text.startswith("<h2 id=wf-tills>") and "<nav>" not in part.text
    assert f"<main id=live>{part.text}</main>" in whole
    rollout = c.get("/rollouts/tills", headers={"X-Nonstop-Fragment": "1"}).text
    assert rollout.startswith("<p>rollout #1") and "<svg" in rollout
    # pages that are not live ignore the header
    assert "<nav>" in c.get("/audit", headers={"X-Nonstop-Fragment": "1"}).text


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_cli_rollback_shows_in_the_live_pages_within_2_s(sqlite_url: str) -> None:
    seed(sqlite_url)
    with served(sqlite_url) as base:

        def fragment(path: str) -> str:
            req = urllib.request.Request(
                base + path, headers={"X-Nonstop-Fragment": "1"}
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                text: str = r.read().decode()
                return text

        assert "routing <b>v1: 50 %, v2: 50 %</b>" in fragment("/")
        assert "<b class=status>running</b>" in fragment("/rollouts/tills")
        cli = ["--store", sqlite_url, "--app", APP]
        assert main([*cli, "rollout", "abort", "tills", "--reason", "slow"]) == 0
        assert _within(2, lambda: "routing <b>v1: 100 %</b>" in fragment("/"))
        assert _within(
            2, lambda: "<b class=status>aborted</b>" in fragment("/rollouts/tills")
        )
        assert main([*cli, "promote", "tills", "2", "--percent", "30"]) == 0
        assert _within(2, lambda: "v1: 70 %, v2: 30 %" in fragment("/"))
        assert main([*cli, "rollback", "tills", "--reason", "bad"]) == 0
        assert _within(2, lambda: "routing <b>v1: 100 %</b>" in fragment("/"))
