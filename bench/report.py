"""The results file, the printed table and docs/benchmarks.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["markdown", "table", "write_json"]

COMMAND = "make bench  # runs: .venv/bin/python -m bench"


def write_json(
    path: Path, machine: dict[str, Any], figures: list[dict[str, Any]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"machine": machine, "command": COMMAND, "figures": figures}
    path.write_text(json.dumps(body, indent=2) + "\n")


def _fmt(v: float) -> str:
    return f"{v:,.0f}"


def _verdict(f: dict[str, Any]) -> str:
    if f["target"] is None:
        return "-"
    t = f["target"]
    text = t.get("text") or f">= {_fmt(t['value'])}"
    return ("PASS" if f["pass"] else "MISS") + f" ({text})"


def table(figures: list[dict[str, Any]]) -> str:
    """A plain-text table: each figure, then its baselines with ratios."""
    lines = []
    for f in figures:
        lines.append(f"{f['figure']}")
        lines.append(
            f"  {f['subject']:<58} {_fmt(f['value']):>12} {f['unit']}  {_verdict(f)}"
        )
        for b, v in f["baselines"].items():
            ratio = f["ratios"][b]
            lines.append(f"    vs {b:<55} {_fmt(v['value']):>12}  x{ratio:.2f}")
    return "\n".join(lines)


_INTRO = """# Benchmarks

Every scenario runs nonstop beside its baselines in the same process, interleaved
(subject, baseline 1, baseline 2, ..., then again), {reps} repetitions; the figures
are medians. Machines (and these shared 2-core ones in particular) are noisy, so
read the **ratios** against the baselines measured in the same run: they are what
carries from one machine to another. PostgreSQL runs in a fresh schema per run,
dropped at the end; SQLite files live in a temporary directory.

Reproduce with:

```
{command}
```

(`make bench QUICK=1` runs every scenario tiny, in seconds, and writes
`bench/results/quick.json` only; it checks that the benchmarks work, not speed.)

## Machine

{machine}

## Scenarios

- **commit**: 64 concurrent callers (asyncio tasks on one `Engine`), each sending
  `Increment` commands to its own counter instance (`bench/counter.py`), one
  `Engine.send` per transition, for a fixed time; the figure is committed
  transitions per second. The engine's group commit writes whatever queued up
  while the previous transaction was in flight in one transaction. Baselines write
  one row per transaction from 64 threads: the `eventsourcing` recorder (on
  PostgreSQL it takes `LOCK TABLE ... IN EXCLUSIVE MODE` and sends `NOTIFY` in every
  transaction) and the raw driver (`INSERT` + `COMMIT`).
- **append**: bulk `EventStore.append` of batches of 1,000 records (one
  transaction each) against the raw driver's `executemany` and the `eventsourcing`
  recorder's `insert_events` on the same batches.
- **replay**: a fresh `Engine` (empty cache) rebuilds the state of many short
  instances: read each stream, decode every event (typed msgpack), fold it with
  the reducer. *Batched* calls the engine's load path for 1,000 instances per query
  (`Engine._load_many_sync`); *one by one* calls the load path of a cold
  `Engine.get` (`Engine._load_sync`, one query per instance) in a loop on one
  thread, and shows the async API (`Engine.get` from 64 tasks, which adds a thread
  hop per call) beside it. The raw baselines only fetch the rows (all columns, no
  decoding), so they bound what any replay could reach. The *long stream* figure
  rebuilds one instance with many events (read in pages of 10,000).
{more}
## Results

| figure | nonstop | target | baselines (ratio = nonstop / baseline) |
|---|---|---|---|
{rows}

Raw samples, package versions and the date are in `bench/results/latest.json`.
"""


def markdown(
    data: dict[str, Any], reps: int, descriptions: list[str] | None = None
) -> str:
    """``docs/benchmarks.md`` from the results."""
    m = data["machine"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    machine = (
        f"{m['cpu_count']} CPUs ({m['processor']}), {m['platform']}, "
        f"Python {m['python']}; {pk}; measured {m['date']}."
    )
    rows = []
    for f in data["figures"]:
        base = "<br>".join(
            f"{b}: {_fmt(v['value'])} (x{f['ratios'][b]:.2f})"
            for b, v in f["baselines"].items()
        )
        rows.append(
            f"| {f['figure']}<br><sub>{f['what']}</sub> | "
            f"**{_fmt(f['value'])}** {f['unit']}<br><sub>{f['subject']}</sub> | "
            f"{_verdict(f)} | {base} |"
        )
    more = "".join(d.rstrip() + "\n" for d in descriptions or [])
    return _INTRO.format(
        reps=reps,
        command=COMMAND,
        machine=machine,
        rows="\n".join(rows),
        more=more,
    )
