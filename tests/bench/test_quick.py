"""``python -m bench --quick`` runs every scenario and writes its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
}


@pytest.mark.slow
@pytest.mark.postgres
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
    assert {f["scenario"] for f in data["figures"]} == EXPECTED
    for f in data["figures"]:
        assert f["value"] > 0, f
        assert f["baselines"], f
        for b in f["baselines"].values():
            assert b["value"] > 0, f
        assert set(f["ratios"]) == set(f["baselines"])
    # Quick mode never overwrites the full results.
    after = latest.read_bytes() if latest.exists() else None
    assert after == before
