"""A lower layer never imports a higher one (docs/architecture.md, "Layers").

Every module of the library is placed in a layer by the longest matching
prefix in ``LAYERS``; a module in no layer fails the test (add it to the table
and to the diagram). Every import counts, wherever it is written (module level,
inside a function, under ``TYPE_CHECKING``), except the ``engine`` package's own
``__init__``, the public entry point that lazily re-exports every layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "upcasters", "projections", "examples")

LAYERS: list[tuple[str, list[str]]] = [
    # (layer, module prefixes), lowest first
    (
        "core",
        [
            "engine.core",
            "upcasters",
            "engine.health.analysis",
            "engine.health.events",
            "engine.health.rollout",
            "engine.stats",
            # the upcaster helpers (upcasters.testing re-exports them)
            "engine.testing.upcasting",
        ],
    ),
    ("store", ["engine.store"]),
    (
        # The deployments registry: routing data in the store, read by engines.
        "routing",
        [
            "engine.deploy.registry",
            "engine.deploy.operations",
            "engine.deploy.writes",
            "engine.deploy.routing",
            "engine.deploy.flags",
            "engine.deploy.view",
            "engine.deploy.events",
            "engine.deploy.configview",
            "engine.deploy.configs",
            "engine.deploy.code",
            "engine.loading",
        ],
    ),
    (
        "runtime",
        [
            "engine.runtime",
            "engine.snapshots",
            "engine.sync",
            "engine.health",
        ],
    ),
    (
        "edges",
        [
            "engine.deploy",
            "engine.health.controller",
            "engine.health.audit",
            "engine.config",
            "engine.monitor",
            "engine.kafka",
            "engine.testing",
            "projections",
        ],
    ),
    (
        "commands",
        [
            "engine.commands",
            "engine.console",
            "engine.cli",
            "engine.demo",
            "engine.kafka.demo",
            "examples",
        ],
    ),
]
"""Mirrors the diagram in docs/architecture.md."""

_RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def _layer(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (
                best is None or len(p) > best[0]
            ):
                best = (len(p), name)
    return None if best is None else best[1]


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def violations(modules: dict[str, Path]) -> list[str]:
    """``module (layer) imports other (higher layer)`` for each bad import."""
    out: list[str] = []
    for module, path in modules.items():
        if module == "engine":
            continue
        mine = _layer(module)
        if mine is None:
            out.append(f"{module} is in no layer: add it to LAYERS")
            continue
        for line, name in _imports(path):
            theirs = _layer(name)
            if theirs is not None and _RANK[theirs] > _RANK[mine]:
                out.append(
                    f"{module} ({mine}) imports {name} ({theirs}) at line {line}"
                )
    return sorted(set(out))


def test_no_lower_layer_imports_a_higher_one() -> None:
    assert violations(_modules()) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "core_mod.py"
    bad.write_text("from engine.runtime import Engine\n")
    fine = tmp_path / "runtime_mod.py"
    fine.write_text("import engine.core.errors\n")
    found = violations({"engine.core.bad": bad, "engine.runtime.fine": fine})
    assert found == [
        "engine.core.bad (core) imports engine.runtime (runtime) at line 1",
        "engine.core.bad (core) imports engine.runtime.Engine (runtime) at line 1",
    ]
