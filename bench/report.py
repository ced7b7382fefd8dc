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
    """Thousands separators for large values, significant digits for small ones."""
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _ratio(r: float) -> str:
    return f"x{r:,.0f}" if r >= 100 else f"x{r:.3g}"


def _verdict(f: dict[str, Any], sep: str = "; ") -> str:
    """``PASS (>= x2 DBOS)`` for each goal of a figure, ``-`` when it has none."""
    goals = f.get("targets") or []
    if not goals:
        return "-"
    return sep.join(
        ("PASS" if t["pass"] else "MISS") + f" ({t['text']})" for t in goals
    )


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
            lines.append(f"    vs {b:<55} {_fmt(v['value']):>12}  {_ratio(ratio)}")
    return "\n".join(lines)


_INTRO = """# Benchmarks

Every scenario runs nonstop beside its baselines in the same invocation,
interleaved (subject, baseline 1, baseline 2, ..., then again), {reps}
repetitions; the figures are medians. Machines (and these shared 2-core ones in
particular) are noisy, so read the **ratios** against the baselines measured in
the same run: they are what carries from one machine to another. PostgreSQL runs
in a fresh schema per run (DBOS in a fresh database), dropped at the end; SQLite
files live in a temporary directory.

Reproduce everything with:

```
{command}
```

and one scenario with `.venv/bin/python -m bench --only NAME` (its figures then
replace that scenario's in `bench/results/latest.json` and on this page; each
figure below names its command). `make bench QUICK=1` runs every scenario tiny, in
seconds, and writes `bench/results/quick.json` only; it checks that the
benchmarks work, not speed.

## Machine

{machine}

## Scenarios

{more}
## Results

| figure | nonstop | target | baselines (ratio = nonstop / baseline) |
|---|---|---|---|
{rows}

Raw samples, package versions and the dates are in `bench/results/latest.json`.
{notes}"""


def markdown(
    data: dict[str, Any],
    reps: int,
    descriptions: list[str] | None = None,
    notes: str = "",
) -> str:
    """``docs/benchmarks.md`` from the results, then ``notes`` (hand-written)."""
    m = data["machine"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    runs = m.get("runs") or {}
    dates = (
        "; measured " + ", ".join(f"{k} {v}" for k, v in runs.items())
        if runs
        else f"; measured {m['date']}"
    )
    machine = (
        f"{m['cpu_count']} CPUs ({m['processor']}), {m['platform']}, "
        f"Python {m['python']}; {pk}{dates}."
    )
    rows = []
    for f in data["figures"]:
        base = "<br>".join(
            f"{b}: {_fmt(v['value'])} ({_ratio(f['ratios'][b])})"
            for b, v in f["baselines"].items()
        )
        how = f" · `python -m bench --only {f['bench']}`" if f.get("bench") else ""
        rows.append(
            f"| {f['figure']}<br><sub>{f['what']}{how}</sub> | "
            f"**{_fmt(f['value'])}** {f['unit']}<br><sub>{f['subject']}</sub> | "
            f"{_verdict(f, '<br>')} | {base} |"
        )
    more = "".join(d.rstrip() + "\n" for d in descriptions or [])
    return _INTRO.format(
        reps=reps,
        command=COMMAND,
        machine=machine,
        rows="\n".join(rows),
        more=more,
        notes="\n" + notes.strip() + "\n" if notes.strip() else "",
    )
