"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks."""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import append, commit, replay
from bench.harness import BenchContext, Figure, machine, pg_schema
from bench.report import markdown, table, write_json

ROOT = Path(__file__).resolve().parent.parent

PLUGINS = {
    "workflow": "bench.workflow",
    "memory": "bench.memory",
    "upcast": "bench.upcast",
    "projection": "bench.projection",
    "kafka": "bench.kafka",
    "deploy": "bench.deploy",
    "rollout": "bench.rollout",
    "testing": "bench.testing_kit",
    "console": "bench.console",
    "config": "bench.config",
    "verify": "bench.verify",
    "scale": "bench.scale",
    "effects": "bench.effects",
    "scaleout": "bench.scaleout",
}
"""Scenario name -> module with ``DESCRIPTION`` (markdown) and
``run(ctx: BenchContext) -> list[Figure]``; each module picks its own sizes
from ``ctx.quick``."""

SCENARIOS = ("commit", "append", "replay", *PLUGINS)

# (full, quick) sizes
SIZES = {
    "reps": (3, 1),
    "commit_seconds": (3.0, 0.3),
    "append_total": (100_000, 2_000),
    "replay_instances": (20_000, 200),
    "replay_long": (200_000, 2_000),
}


def _description(name: str, *, strict: bool = True) -> str | None:
    """The scenario's ``DESCRIPTION``, or None if its module is not there yet.

    With ``strict=False`` a module that fails to import is reported and skipped
    too (for listing scenarios that were not run).
    """
    module_name = PLUGINS.get(name, f"bench.{name}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        if strict:
            raise
        print(f"{name}: not listed ({module_name} does not import: {exc})")
        return None
    except Exception as exc:
        if strict:
            raise
        print(f"{name}: not listed ({module_name} does not import: {exc!r})")
        return None
    return str(module.DESCRIPTION)


def _merge(
    path: Path, ran: list[str], new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The figures of ``path`` for scenarios not run now and the new ones, in order."""
    if not path.exists():
        return new
    old = json.loads(path.read_text())
    kept = [f for f in old.get("figures", []) if _bench(f) not in ran]
    return _in_order(kept + new)


def _bench(figure: dict[str, Any]) -> str:
    """The scenario a figure belongs to (results from before the tag: by prefix)."""
    return str(figure.get("bench", figure["scenario"].split("-")[0]))


def _in_order(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Figures grouped by scenario, in the order of ``SCENARIOS``."""
    rank = {name: n for n, name in enumerate(SCENARIOS)}
    return sorted(figures, key=lambda f: rank.get(_bench(f), len(rank)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, quick.json")
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    ap.add_argument(
        "--report",
        action="store_true",
        help="run nothing; rewrite docs/benchmarks.md from bench/results/latest.json",
    )
    args = ap.parse_args(argv)
    if args.report:
        _write_docs(ROOT / "bench" / "results" / "latest.json", [])
        return 0
    q = 1 if args.quick else 0
    size = {k: v[q] for k, v in SIZES.items()}
    reps = int(size["reps"])
    info = machine()
    figures: list[dict[str, Any]] = []
    ran: list[str] = []
    broken: list[str] = []

    def add(name: str, go: Callable[[], list[Figure]]) -> None:
        """Run one scenario; a failing one is reported, the others still run."""
        print(name)
        try:
            got = go()
        except Exception:
            traceback.print_exc()
            print(f"{name}: FAILED (its figures are left out)")
            broken.append(name)
            return
        figures.extend({**f.as_json(), "bench": name} for f in got)
        ran.append(name)

    t0 = time.perf_counter()
    with pg_schema() as schema, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        s = float(size["commit_seconds"])
        n = int(size["append_total"])
        kw = {
            "instances": int(size["replay_instances"]),
            "long_len": int(size["replay_long"]),
            "reps": reps,
        }
        if "commit" in args.only:
            add(
                "commit",
                lambda: (
                    commit.run_postgres(schema, seconds=s, reps=reps)
                    + commit.run_sqlite(work, seconds=s, reps=reps)
                ),
            )
        if "append" in args.only:
            add(
                "append",
                lambda: (
                    append.run_postgres(schema, total=n, reps=reps)
                    + append.run_sqlite(work, total=n, reps=reps)
                ),
            )
        if "replay" in args.only:
            add(
                "replay",
                lambda: (
                    replay.run_postgres(schema, **kw) + replay.run_sqlite(work, **kw)
                ),
            )
        ctx = BenchContext(schema=schema, work=work, quick=args.quick, reps=reps)
        for name, module_name in PLUGINS.items():
            if name not in args.only:
                continue
            try:
                present = _description(name) is not None
            except Exception as exc:  # the others' results are still written
                print(f"{name}: FAILED, {module_name} does not import: {exc!r}")
                broken.append(name)
                continue
            if not present:
                print(f"{name}: skipped ({module_name} is not there yet)")
                continue
            run = importlib.import_module(module_name).run
            add(name, functools.partial(run, ctx))
    info["seconds"] = round(time.perf_counter() - t0, 1)
    info["mode"] = "quick" if args.quick else "full"
    info["reps"] = reps
    print()
    print(table(figures))
    results = ROOT / "bench" / "results"
    if args.quick:
        write_json(results / "quick.json", info, figures)
        print(f"\nwrote {results / 'quick.json'}")
        return 1 if broken else 0
    # A partial run replaces its scenarios' figures and keeps the others'.
    latest = results / "latest.json"
    previous = json.loads(latest.read_text()) if latest.exists() else {}
    runs = dict(previous.get("machine", {}).get("runs", {}))
    runs.update({name: info["date"] for name in ran})
    info["runs"] = {name: runs[name] for name in SCENARIOS if name in runs}
    write_json(latest, info, _merge(latest, ran, figures))
    print(f"\nwrote {latest}")
    _write_docs(latest, ran)
    return 1 if broken else 0


def _write_docs(latest: Path, ran: list[str]) -> None:
    """Rewrite docs/benchmarks.md from the results file ``latest``."""
    data = json.loads(latest.read_text())
    data["figures"] = _in_order(data["figures"])
    descriptions = [
        d for name in SCENARIOS if (d := _description(name, strict=name in ran))
    ]
    docs = ROOT / "docs" / "benchmarks.md"
    docs.parent.mkdir(exist_ok=True)
    reps = int(data["machine"].get("reps", SIZES["reps"][0]))
    # Hand-written notes (re-measurements, caveats) kept below the table.
    notes_file = ROOT / "bench" / "notes.md"
    notes = notes_file.read_text() if notes_file.exists() else ""
    docs.write_text(markdown(data, reps, descriptions, notes))
    print(f"wrote {docs}")


if __name__ == "__main__":
    sys.exit(main())
