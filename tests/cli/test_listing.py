"""``nonstop instances`` pages (--limit, --after), streams (--all) and --json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine import SyncEngine
from engine.commands.listing import DEFAULT_LIMIT
from engine.demo import orders
from tests.cli.test_cli import run

N = 7


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A SQLite store with N running orders, started in id order."""
    url = f"sqlite:///{tmp_path / 'list.db'}"
    with SyncEngine(url, orders.registry()) as engine:
        for i in range(N):
            engine.start(
                "orders",
                orders.PlaceOrder(f"o-{i}", 10 + i, "ada"),
                instance_id=f"o-{i}",
            )
    return url


def _ids(out: str) -> list[str]:
    return re.findall(r"\bo-\d+\b(?=\s*[│\t])", out)


def _next(out: str) -> int | None:
    found = re.search(r"nonstop instances --after (\d+)", out)
    return None if found is None else int(found.group(1))


def test_pages_follow_the_cursor_to_the_end(capsys, store):
    seen: list[str] = []
    argv = ["--store", store, "instances", "--limit", "3"]
    after: int | None = 0
    pages = 0
    while after is not None:
        code, out, err = run(capsys, *argv, "--after", str(after))
        assert code == 0, err
        ids = _ids(out)
        assert 1 <= len(ids) <= 3
        assert f"{len(ids)} instance" in out
        seen.extend(ids)
        after = _next(out)
        pages += 1
    assert seen == [f"o-{i}" for i in range(N)]
    assert pages == 3


def test_the_default_is_one_page(capsys, store):
    code, out, _ = run(capsys, "--store", store, "instances")
    assert code == 0
    assert _ids(out) == [f"o-{i}" for i in range(N)] and N < DEFAULT_LIMIT
    assert _next(out) is None
    assert f"{N} instances ({N} running)" in out


def test_all_streams_one_line_per_instance(capsys, store):
    code, out, _ = run(capsys, "--store", store, "instances", "--all")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split("\t")[:3] == ["instance id", "workflow", "status"]
    rows = [line.split("\t") for line in lines[1 : N + 1]]
    assert [r[0] for r in rows] == [f"o-{i}" for i in range(N)]
    assert all(r[2] == "running" and r[1].startswith("orders@") for r in rows)
    assert "│" not in out  # no table
    assert f"{N} instances ({N} running)" in out
    # The cursor column resumes the stream after any row.
    code, out, _ = run(
        capsys, "--store", store, "instances", "--all", "--after", rows[3][5]
    )
    assert [line.split("\t")[0] for line in out.splitlines()[1:-1]] == [
        f"o-{i}" for i in range(4, N)
    ]


def test_json_is_one_array_of_the_page_or_of_all(capsys, store):
    argv = ["--store", store, "instances", "--json"]
    code, out, err = run(capsys, *argv, "--limit", "2")
    assert code == 0
    assert [i["instance_id"] for i in json.loads(out)] == ["o-0", "o-1"]
    assert re.search(r"more: --after \d+", err)
    code, out, err = run(capsys, *argv, "--all")
    assert code == 0 and err == ""
    listed = json.loads(out)
    assert [i["instance_id"] for i in listed] == [f"o-{i}" for i in range(N)]
    assert {i["status"] for i in listed} == {"running"}


def test_json_of_an_empty_listing_is_an_empty_array(capsys, store):
    code, out, _ = run(
        capsys, "--store", store, "instances", "--json", "--workflow", "x"
    )
    assert code == 0 and json.loads(out) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit", "0"], "must be 1 or more, got 0"),
        (["--limit", "many"], "expected a whole number, got 'many'"),
        (["--after", "-2"], "a cursor is 0 or more, got -2"),
        (["--after", "x"], "a cursor is a whole number"),
        (["--limit", "3", "--all"], "not allowed with argument"),
    ],
)
def test_bad_paging_options_are_usage_errors(capsys, store, argv, message):
    with pytest.raises(SystemExit) as exc:
        run(capsys, "--store", store, "instances", *argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
