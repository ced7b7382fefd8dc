"""docs/testing.md is run as a user would run it (tests/cli/test_docs.py runs
every page's snippets in a subprocess, from a scratch directory, with only the
installed package); this checks the page keeps the parts that make that run
prove the kit: the user's files, and pytest run over their test module."""

from __future__ import annotations

from tests.cli.test_docs import DOCS, ROOT, steps

PAGE = ROOT / "docs" / "testing.md"


def test_the_testing_page_is_run_with_the_other_docs() -> None:
    assert PAGE in DOCS


def test_the_page_writes_a_suite_and_runs_pytest_over_it() -> None:
    plan = steps(PAGE)
    files = [label for kind, label, _ in plan if kind == "file"]
    assert files == ["shop.py", "conftest.py", "test_shop.py"]
    shell = [body for kind, _, body in plan if kind == "shell"]
    assert any(
        cmd.startswith("python -m pytest") and "test_shop.py" in cmd for cmd in shell
    )
    suite = dict((label, body) for kind, label, body in plan if kind == "file")
    for fixture in ("nonstop_sync_engine", "nonstop_sqlite_sync_engine"):
        assert fixture in suite["test_shop.py"]
    assert "assert_replay_stable" in suite["test_shop.py"]
    python = "\n".join(body for kind, _, body in plan if kind == "python")
    assert ".then(rejected(" in python and "new=" in python
