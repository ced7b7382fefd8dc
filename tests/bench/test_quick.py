"""``python -m bench --quick`` runs every scenario and writes its results."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import PLUGINS

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "bench" / "results" / "quick.json"
EXPECTED = {
    "commit-postgres",
    "commit-sqlite",
    "append-postgres",
    "append-sqlite",
    "replay-psycopg",
    "replay-each-psycopg",
    "replay-long-psycopg",
    "replay-sqlite3",
    "replay-each-sqlite3",
    "replay-long-sqlite3",
    "workflow-c1",
    "workflow-p50-c1",
    "workflow-p99-c1",
    "workflow-c64",
    "workflow-p50-c64",
    "workflow-p99-c64",
    "transition-p50",
    "transition-p99",
    "memory-long",
    "memory-long-above-imports",
    "memory-many",
    "memory-many-above-imports",
    "scale-open",
    "scale-first-start",
    "scale-get-p50",
    "scale-get-p99",
    "scale-page",
    "scale-cli-page",
    "scale-show",
    "scale-show-10M-estimate",
}
"""Figures of the built-in scenarios and of workflow, memory and scale; other
plug-in scenarios add theirs."""


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)  # runs every benchmark scenario once
def test_quick_bench_produces_every_scenario() -> None:
    latest = ROOT / "bench" / "results" / "latest.json"
    before = latest.read_bytes() if latest.exists() else None
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(QUICK.read_text())
    assert data["machine"]["mode"] == "quick"
    assert data["machine"]["cpu_count"]
    assert {f["scenario"] for f in data["figures"]} >= EXPECTED
    ran = {f["bench"] for f in data["figures"]}
    for name, module in PLUGINS.items():
        if importlib.util.find_spec(module) is not None:
            assert name in ran, f"{module} exists but produced no figure"
    for f in data["figures"]:
        # A rate of zero means nothing ran; other figures (memory added by a
        # tiny replay, errors counted) may be zero.
        least = 1e-9 if f["unit"].endswith("/s") else 0
        assert f["value"] >= least, f
        assert f["baselines"], f
        for b in f["baselines"].values():
            assert b["value"] >= least, f
        assert set(f["ratios"]) == set(f["baselines"])
        assert all("pass" in t for t in f["targets"])
    # Quick mode never overwrites the full results.
    after = latest.read_bytes() if latest.exists() else None
    assert after == before
