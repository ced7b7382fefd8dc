"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks."""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, quick.json")
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    args = ap.parse_args(argv)
    q = 1 if args.quick else 0
    size = {k: v[q] for k, v in SIZES.items()}
    reps = int(size["reps"])
    info = machine()
    figures: list[Figure] = []
    descriptions: list[str] = []
    t0 = time.perf_counter()
    with pg_schema() as schema, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "commit" in args.only:
            print("commit: 64 concurrent callers")
            s = float(size["commit_seconds"])
            figures += commit.run_postgres(schema, seconds=s, reps=reps)
            figures += commit.run_sqlite(work, seconds=s, reps=reps)
        if "append" in args.only:
            print("append: bulk")
            n = int(size["append_total"])
            figures += append.run_postgres(schema, total=n, reps=reps)
            figures += append.run_sqlite(work, total=n, reps=reps)
        if "replay" in args.only:
            print("replay")
            kw = {
                "instances": int(size["replay_instances"]),
                "long_len": int(size["replay_long"]),
                "reps": reps,
            }
            figures += replay.run_postgres(schema, **kw)
            figures += replay.run_sqlite(work, **kw)
        ctx = BenchContext(schema=schema, work=work, quick=args.quick, reps=reps)
        for name, module_name in PLUGINS.items():
            if name in args.only:
                module = importlib.import_module(module_name)
                print(f"{name}")
                figures += module.run(ctx)
                descriptions.append(module.DESCRIPTION)
    data = {"machine": info, "figures": [f.as_json() for f in figures]}
    data["machine"]["seconds"] = round(time.perf_counter() - t0, 1)
    data["machine"]["mode"] = "quick" if args.quick else "full"
    print()
    print(table(data["figures"]))
    results = ROOT / "bench" / "results"
    if args.quick:
        write_json(results / "quick.json", data["machine"], data["figures"])
        print(f"\nwrote {results / 'quick.json'}")
    else:
        write_json(results / "latest.json", data["machine"], data["figures"])
        if set(args.only) == set(SCENARIOS):
            docs = ROOT / "docs" / "benchmarks.md"
            docs.parent.mkdir(exist_ok=True)
            docs.write_text(markdown(data, reps, descriptions))
            print(f"\nwrote {results / 'latest.json'} and {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
