"""Read-only commands never create a store; ``nonstop init`` does.

Run as a user runs them: the installed ``nonstop`` script, from a temporary
directory outside the repository.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from engine.core.errors import StoreNotFound
from engine.store import open_store

pytestmark = pytest.mark.timeout(300)

NONSTOP = str(Path(sys.executable).with_name("nonstop"))

READ_ONLY = [
    ["instances"],
    ["show", "x"],
    ["history", "x"],
    ["versions"],
    ["audit"],
    ["flags", "list"],
    ["projections", "status"],
    ["deadletters", "list"],
]


def _nonstop(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NONSTOP, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_on_a_missing_sqlite_file(
    tmp_path: Path, command: list[str]
) -> None:
    done = _nonstop(tmp_path, "--store", "sqlite:///typo.db", *command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(
        "nonstop: error: no nonstop store at sqlite:///typo.db"
    )
    assert done.stderr.count("\n") == 1
    assert "nonstop init" in done.stderr
    assert list(tmp_path.iterdir()) == []  # no file, no journal


def test_schema_check_without_a_store_creates_none(tmp_path: Path) -> None:
    lock = tmp_path / "schema.lock"
    done = _nonstop(tmp_path, "schema", "lock", "--output", str(lock))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schema.lock"]


def test_a_file_that_is_not_a_store_is_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "notes.db"
    other.write_bytes(b"")  # an empty file: sqlite reads it as an empty database
    done = _nonstop(tmp_path, "--store", "sqlite:///notes.db", "instances")
    assert done.returncode == 2
    assert "holds no nonstop tables" in done.stderr
    assert other.read_bytes() == b""


def test_init_then_read(tmp_path: Path) -> None:
    done = _nonstop(tmp_path, "--store", "sqlite:///app.db", "init")
    assert done.returncode == 0, done.stderr
    assert "created a nonstop store at sqlite:///app.db" in done.stdout
    done = _nonstop(tmp_path, "--store", "sqlite:///app.db", "instances")
    assert done.returncode == 0, done.stderr
    assert "0 instances" in done.stdout
    again = _nonstop(tmp_path, "--store", "sqlite:///app.db", "init")
    assert again.returncode == 0 and "exists" in again.stdout


def test_open_store_without_create(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(StoreNotFound, match=r"no nonstop store at sqlite:///"):
        open_store(url, create=False)
    assert not (tmp_path / "x.db").exists()
    open_store(url).close()
    open_store(url, create=False).close()


@pytest.mark.postgres
def test_postgres_read_only_command_leaves_a_fresh_schema_absent(
    pg_url: str, tmp_path: Path
) -> None:
    schema = pg_url.rpartition("schema=")[2]
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:pw@", 1)
    for command in (["instances"], ["versions"], ["deadletters", "list"]):
        done = _nonstop(tmp_path, "--store", url, *command)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "no nonstop store at postgresql://postgres:***@" in done.stderr
        assert f"schema '{schema}' holds no nonstop tables" in done.stderr
    with psycopg.connect(pg_url.rpartition("?")[0]) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]
        ).fetchone()
    assert found == (0,)
    with pytest.raises(StoreNotFound):
        open_store(pg_url, create=False)
    done = _nonstop(tmp_path, "--store", pg_url, "init")
    assert done.returncode == 0, done.stderr
    done = _nonstop(tmp_path, "--store", pg_url, "instances")
    assert done.returncode == 0 and "0 instances" in done.stdout
