"""``MODULE:ATTR`` names resolve from the user's directory, as uvicorn's do.

Each test runs the installed ``nonstop`` script from a scratch directory
outside the repository, with nothing on ``PYTHONPATH``, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.loading import import_dirs, user_import_path

NONSTOP = str(Path(sys.executable).with_name("nonstop"))

APP = textwrap.dedent(
    """
    import msgspec

    from engine import Context, Status, Workflow, WorkflowRegistry, event


    @event("NoteWritten")
    class NoteWritten(msgspec.Struct, frozen=True):
        text: str


    class Write(msgspec.Struct, frozen=True):
        text: str


    class Note(msgspec.Struct, frozen=True):
        text: str = ""


    def evolve(state: Note, e: object) -> Note:
        return Note(e.text) if isinstance(e, NoteWritten) else state


    def decide(state: Note, cmd: object, ctx: Context) -> list[object]:
        assert isinstance(cmd, Write)
        return [NoteWritten(cmd.text)]


    def status(state: Note) -> Status:
        return "completed" if state.text else "running"


    def version(n: int) -> Workflow[Note]:
        return Workflow(
            name="notes", version=n, state_type=Note, initial=Note,
            decide=decide, evolve=evolve, status=status,
        )


    v1, v2 = version(1), version(2)


    def registry() -> WorkflowRegistry:
        reg = WorkflowRegistry()
        reg.register(v1)
        return reg


    def keep(state: Note) -> Note:
        return state
    """
)

PROJECTIONS = textwrap.dedent(
    """
    from projections import Projection, Tx

    notes = Projection("mynotes", version=1, tables=["seen"])


    @notes.setup
    def create(tx: Tx) -> None:
        tx.execute(f"CREATE TABLE {tx.table('seen')} (id TEXT PRIMARY KEY)")


    @notes.on("NoteWritten")
    def written(tx: Tx, e: object) -> None:
        tx.execute(f"INSERT INTO {tx.table('seen')} VALUES (?)", (e.stream_id,))
    """
)


def nonstop(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NONSTOP_") and k != "PYTHONPATH"
    }
    return subprocess.run(
        [NONSTOP, *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A user's project directory holding ``mynotes.py`` and a store with a note."""
    (tmp_path / "mynotes.py").write_text(APP)
    seed = textwrap.dedent(
        """
        from engine import SyncEngine
        from mynotes import Write, registry

        with SyncEngine("sqlite:///notes.db", registry()) as engine:
            engine.start("notes", Write("hello"), instance_id="n-1")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", seed],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return tmp_path


def test_app_is_found_in_the_current_directory(user_dir: Path) -> None:
    done = nonstop(
        user_dir, "--app", "mynotes:registry", "--store", "sqlite:///notes.db",
        "show", "n-1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "NoteWritten" in done.stdout and "hello" in done.stdout


def test_app_dir_flag_names_another_directory(user_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = nonstop(
        elsewhere, "--app-dir", str(user_dir), "--app", "mynotes:registry",
        "--store", f"sqlite:///{user_dir / 'notes.db'}", "instances",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "n-1" in done.stdout


def test_app_dir_from_the_environment(user_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = nonstop(
        elsewhere, "--app", "mynotes:registry",
        "--store", f"sqlite:///{user_dir / 'notes.db'}", "instances",
        NONSTOP_APP_DIR=str(user_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "n-1" in done.stdout


def test_a_missing_app_dir_is_exit_2(user_dir: Path) -> None:
    done = nonstop(user_dir, "--app-dir", "no-such-dir", "instances")
    assert done.returncode == 2
    assert "--app-dir 'no-such-dir' is not a directory" in done.stderr


def test_a_module_not_found_says_where_it_looked(tmp_path: Path) -> None:
    assert nonstop(tmp_path, "init").returncode == 0
    done = nonstop(tmp_path, "--app", "absent:registry", "instances")
    assert done.returncode == 2
    assert "No module named 'absent'" in done.stderr
    assert "--app-dir" in done.stderr


def test_deploy_source_and_migrate_mapper_resolve_from_the_directory(
    user_dir: Path,
) -> None:
    store = ("--app", "mynotes:registry", "--store", "sqlite:///notes.db")
    done = nonstop(user_dir, *store, "deploy", "notes", "1", "--source", "mynotes:v1")
    assert done.returncode == 0, done.stderr
    done = nonstop(user_dir, *store, "deploy", "notes", "2", "--source", "mynotes:v2")
    assert done.returncode == 0, done.stderr
    done = nonstop(
        user_dir, *store, "migrate", "notes", "--from", "1", "--to", "2",
        "--mapper", "mynotes:keep", "--dry-run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_projections_resolve_from_the_directory(user_dir: Path) -> None:
    (user_dir / "myprojections.py").write_text(PROJECTIONS)
    done = nonstop(
        user_dir, "--app", "mynotes:registry", "--store", "sqlite:///notes.db",
        "projections", "run", "--once", "--projections", "myprojections:notes",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    done = nonstop(user_dir, "--store", "sqlite:///notes.db", "projections", "status")
    assert done.returncode == 0, done.stderr
    assert "mynotes" in done.stdout


def test_user_import_path_puts_the_directories_first_and_restores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NONSTOP_APP_DIR", raising=False)
    app = tmp_path / "app"
    app.mkdir()
    before = list(sys.path)
    with user_import_path("app") as dirs:
        assert dirs == [str(app), str(tmp_path)]
        assert sys.path[:2] == dirs
    assert sys.path == before
    assert import_dirs() == [str(tmp_path)]
    monkeypatch.setenv("NONSTOP_APP_DIR", str(app))
    assert import_dirs() == [str(app), str(tmp_path)]
    assert import_dirs(str(tmp_path)) == [str(tmp_path)]
