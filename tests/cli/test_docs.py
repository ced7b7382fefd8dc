"""Every snippet in README.md and docs/ runs against the current API.

Conventions in the Markdown files:

- ``<!-- file: NAME -->`` right before a fence: the block is written to ``NAME``
  (in a scratch directory) instead of being run;
- ``<!-- skip -->`` right before a fence: the block is not run;
- ``python`` blocks run in order in one namespace per document;
- ``console`` blocks: each ``$ `` line runs in a shell and must exit 0.
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


def test_the_docs_have_runnable_snippets():
    assert any(kind == "python" for doc in DOCS for kind, _, _ in steps(doc))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_snippets_run(doc: Path, tmp_path: Path):
    plan = steps(doc)
    if not plan:
        pytest.skip(f"{doc.name} has no runnable snippets")
    (tmp_path / "steps.json").write_text(json.dumps(plan))
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NONSTOP_")}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    # As a user runs them: from their own directory (outside the repository),
    # with nothing on PYTHONPATH; `nonstop` must find their modules by itself.
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "driver.py", "steps.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
