"""Every snippet in README.md and docs/ runs against the current API.

Conventions in the Markdown files:

- ``<!-- file: NAME -->`` right before a fence: the block is written to ``NAME``
  (in a scratch directory) instead of being run;
- ``<!-- skip -->`` right before a fence: the block is not run;
- ``python`` blocks run in order in one namespace per document;
- ``console`` blocks: each ``$ `` line runs in a shell and must exit 0.

The Python of README.md and docs/tutorial.md must also pass ``mypy --strict``,
as a user's code written from them would be checked, and the README example
must run twice on the same store.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    p
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if p.name != "benchmarks.md"
]
FENCE = re.compile(
    r"(?:<!--\s*(?P<mark>file:\s*\S+|skip)\s*-->\s*\n)?"
    r"^```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)
DRIVER = r"""
import importlib, json, os, subprocess, sys
sys.path.insert(0, os.getcwd())
ns = {"__name__": "__main__"}
for kind, label, body in json.load(open(sys.argv[1])):
    if kind == "file":
        with open(label, "w") as f:
            f.write(body)
        sys.modules.pop(label.removesuffix(".py"), None)
        importlib.invalidate_caches()
    elif kind == "python":
        exec(compile(body, label, "exec"), ns)
    else:
        done = subprocess.run(body, shell=True, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{label}: {body!r} exited {done.returncode}\n"
                     f"{done.stdout}{done.stderr}")
"""


def steps(doc: Path) -> list[tuple[str, str, str]]:
    text = doc.read_text()
    out: list[tuple[str, str, str]] = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("body"))
        label = f"{doc.name}:{line}"
        mark, lang, body = m.group("mark") or "", m.group("lang"), m.group("body")
        if mark == "skip":
            continue
        if mark.startswith("file:"):
            out.append(("file", mark.removeprefix("file:").strip(), body))
        elif lang == "python":
            out.append(("python", label, body))
        elif lang == "console":
            for cmd in body.splitlines():
                if cmd.startswith("$ "):
                    out.append(("shell", label, cmd[2:]))
    return out


TYPED = [ROOT / "README.md", ROOT / "docs" / "tutorial.md"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NONSTOP_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # As a user runs them: from their own directory (outside the repository),
    # with nothing on PYTHONPATH; `nonstop` must find their modules by itself.
    env.pop("PYTHONPATH", None)
    return env


def _run_plan(plan: list[tuple[str, str, str]], where: Path) -> None:
    (where / "steps.json").write_text(json.dumps(plan))
    (where / "driver.py").write_text(DRIVER)
    done = subprocess.run(
        [sys.executable, "driver.py", "steps.json"],
        cwd=where,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def typecheck_batches(doc: Path) -> list[tuple[dict[str, str], dict[str, str]]]:
    """The doc's modules and snippets, grouped by the module versions they see.

    A ``file:`` block that replaces an earlier one starts a new group, so both
    versions of a module are checked, each with the snippets written for it.
    """
    batches: list[tuple[dict[str, str], dict[str, str]]] = []
    files: dict[str, str] = {}
    snippets: dict[str, str] = {}
    for kind, label, body in steps(doc):
        if kind == "file":
            if label in files:
                batches.append((dict(files), snippets))
                snippets = {}
            files[label] = body
        elif kind == "python":
            line = label.rpartition(":")[2]
            snippets[f"snippet_{doc.stem.lower()}_{line}.py"] = body
    batches.append((files, snippets))
    return batches


@pytest.mark.parametrize("doc", TYPED, ids=lambda p: p.name)
def test_snippets_pass_mypy_strict(doc: Path, tmp_path: Path):
    pytest.importorskip("mypy")
    for n, (files, snippets) in enumerate(typecheck_batches(doc)):
        where = tmp_path / str(n)
        where.mkdir()
        for name, body in {**files, **snippets}.items():
            (where / name).write_text(body)
        done = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
             "--cache-dir", str(tmp_path / ".mypy_cache"),
             *sorted({**files, **snippets})],
            cwd=where,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"{doc.name}:\n{done.stdout}{done.stderr}"


def test_the_readme_example_runs_twice(tmp_path: Path):
    plan = [s for s in steps(ROOT / "README.md") if s[0] in ("file", "python")]
    _run_plan(plan, tmp_path)
    _run_plan(plan, tmp_path)  # the same store: no InstanceExists


def test_the_docs_have_runnable_snippets():
    assert any(kind == "python" for doc in DOCS for kind, _, _ in steps(doc))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_snippets_run(doc: Path, tmp_path: Path):
    plan = steps(doc)
    if not plan:
        pytest.skip(f"{doc.name} has no runnable snippets")
    _run_plan(plan, tmp_path)
