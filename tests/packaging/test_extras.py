"""A feature whose driver is missing names the extra that installs it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from engine.core.errors import MissingExtra, NonstopError
from engine.core.extras import EXTRAS, require


def test_require_passes_for_an_installed_module() -> None:
    require("msgspec", "core", "anything")


def test_require_names_the_module_the_extra_and_the_feature() -> None:
    with pytest.raises(MissingExtra) as caught:
        require("no_such_driver_here", "postgres", "the event store postgresql://db")
    err = caught.value
    assert isinstance(err, NonstopError) and isinstance(err, ImportError)
    text = str(err)
    assert "the event store postgresql://db" in text
    assert "'no_such_driver_here'" in text
    assert "pip install 'nonstop[postgres]'" in text
    back = pickle.loads(pickle.dumps(err))
    assert (back.module, back.extra, back.feature, str(back)) == (
        err.module,
        err.extra,
        err.feature,
        text,
    )


def test_every_extra_names_installed_modules_here() -> None:
    # The development install has every extra: each named module is there.
    for extra, modules in EXTRAS.items():
        for module in modules:
            require(module, extra, f"the {extra} extra")


# Runs Python with some top-level modules made unimportable, as on a machine
# where the extra that installs them was not chosen.
_HIDE = textwrap.dedent(
    """
    import sys

    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    for name in list(sys.modules):
        if name.partition(".")[0] in HIDDEN:
            del sys.modules[name]
    sys.meta_path.insert(0, Hide())
    """
)


def _run_without(hidden: set[str], code: str) -> subprocess.CompletedProcess[str]:
    script = f"HIDDEN = {sorted(hidden)!r}\n{_HIDE}\n{textwrap.dedent(code)}"
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("NONSTOP_")},
    )


def test_upcasters_testing_without_hypothesis_names_the_testing_extra() -> None:
    done = _run_without(
        {"hypothesis"},
        """
        from engine.core.errors import MissingExtra
        try:
            import upcasters.testing
        except MissingExtra as exc:
            print(exc)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "upcasters.testing needs the Python package 'hypothesis'" in done.stdout
    assert "pip install 'nonstop[testing]'" in done.stdout


def test_kafka_demo_without_aiokafka_names_the_kafka_extra(tmp_path) -> None:
    done = _run_without(
        {"aiokafka"},
        f"""
        import sys
        from engine.cli import main
        sys.exit(main(["demo", "--kafka", "--store", "sqlite:///{tmp_path}/k.db"]))
        """,
    )
    assert done.returncode == 2, done.stderr
    assert "nonstop demo --kafka needs the Python package 'aiokafka'" in done.stderr
    assert "pip install 'nonstop[kafka]'" in done.stderr


def test_kafka_worker_without_aiokafka_names_the_kafka_extra(tmp_path) -> None:
    done = _run_without(
        {"aiokafka"},
        f"""
        import sys
        from engine.cli import main
        sys.exit(main(["--store", "sqlite:///{tmp_path}/k.db", "worker",
                       "--kafka", "127.0.0.1:1", "--topic", "t", "--group", "g",
                       "--mapping", "m:f"]))
        """,
    )
    assert done.returncode == 2, done.stderr
    assert "nonstop worker needs the Python package 'aiokafka'" in done.stderr


def test_engine_testing_without_hypothesis_names_the_testing_extra() -> None:
    done = _run_without(
        {"hypothesis"},
        """
        from engine.core.errors import MissingExtra
        import engine.testing.plugin  # the pytest plugin needs no hypothesis
        for name in ("given", "commands", "assert_replay_stable", "assert_upcasts"):
            try:
                exec(f"from engine.testing import {name}")
            except MissingExtra as exc:
                print(name, "|", exc)
        try:
            import engine.testing.strategies
        except MissingExtra as exc:
            print("strategies", "|", exc)
        """,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.partition(" | ")[0] for line in lines] == [
        "given",
        "commands",
        "assert_replay_stable",
        "assert_upcasts",
        "strategies",
    ]
    for line in lines:
        assert "engine.testing needs the Python package 'hypothesis'" in line
        assert "pip install 'nonstop[testing]'" in line


def test_pytest_runs_without_hypothesis_with_the_plugin_loaded(tmp_path) -> None:
    # nonstop_options comes from the nonstop plugin: it loaded
    (tmp_path / "test_plain.py").write_text(
        "def test_plain(nonstop_options):\n    assert nonstop_options == {}\n"
    )
    done = _run_without(
        {"hypothesis", "_hypothesis_pytestplugin", "_hypothesis_globals"},
        f"""
        import sys
        import pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider",
                              "-p", "no:hypothesispytest",
                              {str(tmp_path / "test_plain.py")!r}]))
        """,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_console_without_starlette_names_the_console_extra(tmp_path) -> None:
    done = _run_without(
        {"starlette", "uvicorn"},
        f"""
        import sys
        from engine.cli import main
        from engine.store import open_store
        open_store("sqlite:///{tmp_path}/c.db").close()
        sys.exit(main(["--store", "sqlite:///{tmp_path}/c.db", "console"]))
        """,
    )
    assert done.returncode == 2, done.stderr
    assert "nonstop console needs the Python package 'starlette'" in done.stderr
    assert "pip install 'nonstop[console]'" in done.stderr
