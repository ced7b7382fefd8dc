"""The wheel, installed into a fresh virtual environment, runs the demo.

Built from a copy of the source tree, installed with no extra (the embedded
SQLite user's install: no psycopg, aiokafka or hypothesis), and run from a
directory that is not the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SKIP = shutil.ignore_patterns(
    ".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache",
    ".hypothesis", "*.db", "*.db-*", "results",
)  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(*cmd: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NONSTOP_", "VIRTUAL_ENV")) and k != "PYTHONPATH"
    }
    done = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this tree, core only."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_SKIP)
    dist = base / "dist"
    done = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, src, cwd=base
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dist.glob("nonstop-*.whl")
    env = base / "venv"
    done = _run(sys.executable, "-m", "venv", env, cwd=base)
    assert done.returncode == 0, done.stderr
    spec = f"nonstop @ {wheel.as_uri()}"
    done = _run(env / "bin" / "python", "-m", "pip", "install", spec, cwd=base)
    assert done.returncode == 0, done.stdout + done.stderr
    return env


def test_the_demo_runs_from_another_directory(venv: Path, tmp_path: Path) -> None:
    done = _run(venv / "bin" / "nonstop", "demo", "--instances", "30", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo OK" in done.stdout
    assert (tmp_path / "nonstop-demo.db").exists()


def test_the_three_packages_import_and_the_example_ships_its_lock(
    venv: Path, tmp_path: Path
) -> None:
    code = (
        "import importlib.resources, importlib.util, engine, upcasters, projections\n"
        "lock = importlib.resources.files('engine.demo.orders') / 'schema.lock'\n"
        "assert lock.is_file(), lock\n"
        "assert importlib.util.find_spec('examples') is None\n"
        "print(engine.__file__)\n"
    )
    done = _run(venv / "bin" / "python", "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert str(venv) in done.stdout  # the installed copy, not the repository


def test_the_core_install_has_no_driver_and_reads_its_store(
    venv: Path, tmp_path: Path
) -> None:
    code = (
        "import importlib.util\n"
        "for m in ('psycopg', 'aiokafka', 'hypothesis'):\n"
        "    assert importlib.util.find_spec(m) is None, m\n"
        # the pytest plugin is registered; the kit names its extra
        "import importlib.metadata as md\n"
        "eps = [e.value for e in md.entry_points(group='pytest11')]\n"
        "assert eps == ['engine.testing.plugin'], eps\n"
        "from engine.core.errors import MissingExtra\n"
        "try:\n"
        "    from engine.testing import given\n"
        "except MissingExtra as exc:\n"
        "    print(exc)\n"
    )
    done = _run(venv / "bin" / "python", "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "engine.testing needs the Python package 'hypothesis'" in done.stdout
    demo = _run(venv / "bin" / "nonstop", "demo", "--instances", "10", cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    for args in (("instances",), ("versions",), ("projections", "status")):
        done = _run(
            venv / "bin" / "nonstop", "--store", "sqlite:///nonstop-demo.db", *args,
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    done = _run(
        venv / "bin" / "nonstop", "--store", "postgresql://u@127.0.0.1/db", "init",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'nonstop[postgres]'" in done.stderr


def test_upcasters_testing_names_the_testing_extra(venv: Path, tmp_path: Path) -> None:
    done = _run(venv / "bin" / "python", "-c", "import upcasters.testing", cwd=tmp_path)
    assert done.returncode != 0
    assert "pip install 'nonstop[testing]'" in done.stderr


def test_kafka_demo_names_the_kafka_extra(venv: Path, tmp_path: Path) -> None:
    done = _run(venv / "bin" / "nonstop", "demo", "--kafka", cwd=tmp_path)
    assert done.returncode == 2
    assert "pip install 'nonstop[kafka]'" in done.stderr
