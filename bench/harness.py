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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = [
    "PG_URL",
    "BenchContext",
    "Contender",
    "Figure",
    "Target",
    "create_database",
    "drop_database",
    "machine",
    "measure",
    "pg_schema",
    "timed",
]

PG_URL = os.environ.get(
    "NONSTOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class BenchContext:
    """What every scenario module's ``run`` gets.

    Attributes:
        schema: a fresh PostgreSQL schema for this run (``store_url(schema)``
            gives the nonstop store URL; create other schemas beside it with
            the same prefix and drop them yourself).
        work: a temporary directory for SQLite files and the like.
        quick: tiny sizes (``make bench QUICK=1``): check that it works only.
        reps: interleaved repetitions (3 full, 1 quick).
    """

    schema: str
    work: Path
    quick: bool
    reps: int


@dataclass(frozen=True)
class Target:
    """What the subject must reach.

    Attributes:
        value: the bound.
        op: ``">="`` (at least) or ``"<="`` (at most).
        source: where the goal comes from (``"issue"``).
        against: when set, the bound applies to the ratio subject / this
            baseline (``Target(1.25, "<=", against="no upcasting")``); else to
            the subject's own value in the figure's unit.
    """

    value: float
    op: str = ">="
    source: str = "issue"
    against: str | None = None

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"Target.op must be '>=' or '<=', got {self.op!r}")

    def describe(self) -> str:
        """The goal in words, e.g. ``<= x1.25 of no upcasting`` or ``>= 100,000``."""
        if self.against is not None:
            return f"{self.op} x{self.value:g} {self.against}"
        if self.value >= 1000:
            return f"{self.op} {self.value:,.0f}"
        return f"{self.op} {self.value:g}"


@dataclass(frozen=True)
class Contender:
    """One way of doing the work: ``run()`` returns (items done, seconds)."""

    name: str
    run: Callable[[], tuple[int, float]]


@dataclass
class Figure:
    """A measured figure: the subject's median and its baselines' medians.

    A figure has any number of goals: ``target`` (the common single one) and
    ``targets`` (more); it passes when every goal holds.
    """

    scenario: str
    name: str
    unit: str
    what: str
    subject: str
    samples: list[float]
    baselines: dict[str, list[float]] = field(default_factory=dict)
    target: Target | None = None
    targets: list[Target] = field(default_factory=list)

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
    def goals(self) -> list[Target]:
        """Every goal of the figure, ``target`` first."""
        return [*([self.target] if self.target is not None else []), *self.targets]

    def holds(self, t: Target) -> bool:
        """Whether goal ``t`` holds for the medians."""
        got = self.value if t.against is None else self.ratios()[t.against]
        return got >= t.value if t.op == ">=" else got <= t.value

    @property
    def passed(self) -> bool | None:
        goals = self.goals
        if not goals:
            return None
        return all(self.holds(t) for t in goals)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "figure": self.name,
            "what": self.what,
            "subject": self.subject,
            "value": _round(self.value),
            "unit": self.unit,
            "samples": [_round(s) for s in self.samples],
            "baselines": {
                b: {
                    "value": _round(self.baseline_value(b)),
                    "samples": [_round(s) for s in v],
                }
                for b, v in self.baselines.items()
            },
            "ratios": {b: round(r, 3) for b, r in self.ratios().items()},
            "targets": [
                {
                    "op": t.op,
                    "value": t.value,
                    "source": t.source,
                    "against": t.against,
                    "text": t.describe(),
                    "pass": self.holds(t),
                }
                for t in self.goals
            ],
            "pass": self.passed,
        }


def _round(v: float) -> float:
    """One decimal for large values, three significant digits for small ones."""
    return round(v, 1) if abs(v) >= 100 else float(f"{v:.3g}")


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
    targets: list[Target] | None = None,
    log: Callable[[str], None] = print,
) -> Figure:
    """Run the subject and baselines interleaved (A B C A B C ...), ``reps`` times."""
    fig = Figure(
        scenario,
        name,
        unit,
        what,
        subject.name,
        [],
        target=target,
        targets=list(targets or []),
    )
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


def create_database(prefix: str) -> tuple[str, str]:
    """A fresh database on the benchmark server: ``(name, URL)``.

    For baselines that want a database of their own (DBOS); drop it with
    :func:`drop_database`.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    u = urlsplit(PG_URL)
    return name, urlunsplit((u.scheme, u.netloc, f"/{name}", u.query, u.fragment))


def drop_database(name: str) -> None:
    """Drop a database made by :func:`create_database` (its sessions ended)."""
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )


def store_url(schema: str) -> str:
    """The nonstop store URL for ``schema`` on the benchmark server."""
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


def machine() -> dict[str, Any]:
    """Where the numbers were taken."""
    versions: dict[str, str | None] = {}
    packages = (
        "nonstop",
        "eventsourcing",
        "psycopg",
        "psycopg-pool",
        "msgspec",
        "dbos",
    )
    for pkg in packages:
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
