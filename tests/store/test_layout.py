"""The store port imports no adapter and no driver."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "module", ["engine.store.port", "engine.store.urls", "engine.store.retry"]
)
def test_the_port_loads_no_driver(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "loaded = [m for m in ('psycopg', 'psycopg_pool', 'eventsourcing', "
        "'sqlite3', 'engine.store.memory', 'engine.store.sqlite', "
        "'engine.store.postgres', 'engine.store.recorders') if m in sys.modules]\n"
        "print(','.join(loaded))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
