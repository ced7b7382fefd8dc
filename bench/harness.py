"""Interleaved measurement of a subject beside its baselines, and the results file."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import psycopg

__all__ = [
    "PG_URL",
    "Contender",
    "Figure",
    "Target",
    "machine",
    "measure",
    "pg_schema",
    "timed",
]

PG_URL = os.environ.get(
    "NONSTOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class Target:
    """What the subject must reach (``>=`` value in the figure's unit)."""

    value: float
    source: str = "issue"


@dataclass(frozen=True)
class Contender:
    """One way of doing the work: ``run()`` returns (items done, seconds)."""

    name: str
    run: Callable[[], tuple[int, float]]


@dataclass
class Figure:
    """A measured figure: the subject's median and its baselines' medians."""

    scenario: str
    name: str
    unit: str
    what: str
    subject: str
    samples: list[float]
    baselines: dict[str, list[float]] = field(default_factory=dict)
    target: Target | None = None

    @property
    def value(self) -> float:
        return statistics.median(self.samples)

    def baseline_value(self, name: str) -> float:
        return statistics.median(self.baselines[name])

    def ratios(self) -> dict[str, float]:
        return {
            b: (self.value / self.baseline_value(b)) if self.baseline_value(b) else 0.0
            for b in self.baselines
        }

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.value >= self.target.value

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "figure": self.name,
            "what": self.what,
            "subject": self.subject,
            "value": round(self.value, 1),
            "unit": self.unit,
            "samples": [round(s, 1) for s in self.samples],
            "baselines": {
                b: {
                    "value": round(self.baseline_value(b), 1),
                    "samples": [round(s, 1) for s in v],
                }
                for b, v in self.baselines.items()
            },
            "ratios": {b: round(r, 3) for b, r in self.ratios().items()},
            "target": None
            if self.target is None
            else {"op": ">=", "value": self.target.value, "source": self.target.source},
            "pass": self.passed,
        }


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    """Run ``fn`` (which returns how many items it did) and time it."""
    gc.collect()
    t0 = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0


def measure(
    scenario: str,
    name: str,
    *,
    unit: str,
    what: str,
    subject: Contender,
    baselines: list[Contender],
    reps: int,
    target: Target | None = None,
    log: Callable[[str], None] = print,
) -> Figure:
    """Run the subject and baselines interleaved (A B C A B C ...), ``reps`` times."""
    fig = Figure(scenario, name, unit, what, subject.name, [], target=target)
    for b in baselines:
        fig.baselines[b.name] = []
    for rep in range(reps):
        for c in [subject, *baselines]:
            n, secs = c.run()
            rate = n / secs if secs > 0 else 0.0
            if c is subject:
                fig.samples.append(rate)
            else:
                fig.baselines[c.name].append(rate)
            log(f"  [{rep + 1}/{reps}] {name}: {c.name:<44} {rate:>12,.0f} {unit}")
    return fig


@contextmanager
def pg_schema(prefix: str = "nonstop_bench") -> Iterator[str]:
    """A fresh PostgreSQL schema (its name), dropped at the end."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def store_url(schema: str) -> str:
    """The nonstop store URL for ``schema`` on the benchmark server."""
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


def machine() -> dict[str, Any]:
    """Where the numbers were taken."""
    versions = {}
    for pkg in ("nonstop", "eventsourcing", "psycopg", "psycopg-pool", "msgspec"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as c:
            row = c.execute("SHOW server_version").fetchone()
            versions["postgresql"] = row[0] if row else None
    except psycopg.Error:
        versions["postgresql"] = None
    import sqlite3

    versions["sqlite"] = sqlite3.sqlite_version
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "python": sys.version.split()[0],
        "packages": versions,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
