"""The core, ``upcasters`` and ``import engine`` load no database driver."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DRIVERS = ("psycopg", "psycopg_pool", "eventsourcing", "sqlite3", "_sqlite3")

_PROBE = """
import json, sys
{imports}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {drivers!r})))
"""


def _loaded_drivers(imports: str) -> list[str]:
    code = _PROBE.format(imports=imports, drivers=DRIVERS)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize(
    "imports",
    [
        "import engine",
        "import engine.core",
        "import engine.core.errors, engine.core.events, engine.core.workflow",
        "import engine.core.replay",
        "import upcasters",
        "import engine.core, upcasters; engine.core.errors.NonstopError",
    ],
)
def test_import_loads_no_driver(imports: str) -> None:
    assert _loaded_drivers(imports) == []


def test_the_probe_sees_a_driver_when_one_is_loaded() -> None:
    # The same probe must notice a driver, or the test above proves nothing.
    assert "sqlite3" in _loaded_drivers("import engine; engine.open_store('memory://')")


def test_lazy_names_resolve_to_their_defining_modules() -> None:
    import engine
    from engine.core.errors import NonstopError
    from engine.runtime import Engine

    assert engine.Engine is Engine
    assert engine.NonstopError is NonstopError
    assert set(engine.__all__) <= set(dir(engine))
    with pytest.raises(AttributeError, match="no_such_name"):
        engine.no_such_name  # noqa: B018


def test_the_core_imports_only_msgspec_and_the_standard_library() -> None:
    code = (
        "import json, sys, msgspec\n"
        "before = set(sys.modules)\n"
        "import engine.core, engine.core.replay\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = json.loads(out.stdout)
    third_party = {
        m.split(".")[0]
        for m in loaded
        if m.split(".")[0] not in sys.stdlib_module_names
    }
    assert third_party == {"engine"}
    ours = {m for m in loaded if m.split(".")[0] == "engine"}
    assert all(m == "engine" or m.startswith("engine.core") for m in ours), ours
