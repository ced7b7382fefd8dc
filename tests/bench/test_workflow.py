"""The workflow scenario's contenders really run the order workflow."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness import PG_URL, pg_schema, store_url
from bench.workflow import (
    DBOS,
    ES,
    RAW,
    Round,
    _Dbos,
    _EventSourcing,
    _figures,
    _Nonstop,
    _percentile,
    _RawCommit,
)
from engine import SyncEngine
from engine.demo import orders


@given(
    values=st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=50),
    q1=st.floats(min_value=0, max_value=1),
    q2=st.floats(min_value=0, max_value=1),
)
def test_percentile_is_a_sample_and_grows_with_q(
    values: list[float], q1: float, q2: float
) -> None:
    lo, hi = sorted((q1, q2))
    assert _percentile(values, lo) in [v * 1000 for v in values]
    assert _percentile(values, lo) <= _percentile(values, hi)
    assert _percentile(values, 1.0) == max(values) * 1000


def _round(rate: float, latency: float) -> Round:
    return Round(int(rate), 1.0, [latency] * 10, [latency / 3] * 30)


def test_figures_bound_throughput_by_dbos_and_latency_by_a_bare_commit() -> None:
    results = {
        ("nonstop", 1): [_round(100, 0.01)],
        (DBOS, 1): [_round(40, 0.03)],
        (ES, 1): [_round(50, 0.02)],
        ("nonstop", 64): [_round(2000, 0.03)],
        (DBOS, 64): [_round(40, 1.5)],
        (ES, 64): [_round(150, 0.4)],
        # The lone-transition rounds (longer, interleaved with the raw commit).
        ("nonstop", 0): [_round(100, 0.01), _round(100, 0.01)],
        (RAW, 0): [
            Round(1000, 1.0, [0.002] * 10, [0.002] * 10),
            Round(1000, 1.0, [0.004] * 10, [0.004] * 10),
        ],
    }
    figs = {f.scenario: f for f in _figures(results, 1.0, 10.0)}
    assert figs["workflow-c1"].ratios()[DBOS] == 2.5
    assert figs["workflow-c1"].passed is True  # >= 2x DBOS
    assert figs["workflow-c64"].ratios()[DBOS] == 50
    assert figs["workflow-c64"].passed is True  # >= 20x DBOS
    assert figs["workflow-p99-c64"].value == pytest.approx(30.0)
    p99 = figs["transition-p99"]
    assert p99.value == pytest.approx(10 / 3)
    assert p99.baseline_value(RAW) == pytest.approx(3.0)  # median of 2 and 4 ms
    assert p99.passed is True  # 1.1x a bare commit, at most 3x
    assert "ranged 2.00-4.00 ms over 2 rounds" in p99.what
    assert "rounds of 10 s" in p99.what
    assert figs["transition-p50"].passed is None


@pytest.fixture
def schema() -> Iterator[str]:
    with pg_schema("nonstop_test_bench") as name:
        yield name


@pytest.mark.postgres
def test_nonstop_rounds_complete_orders(schema: str) -> None:
    ours = _Nonstop(store_url(schema))
    try:
        got = ours(4, 0.2)
    finally:
        ours.close()
    assert got.workflows >= 4
    assert len(got.latencies) == got.workflows
    assert len(got.transitions) == 3 * got.workflows
    assert min(got.transitions) > 0
    with SyncEngine(store_url(schema), orders.registry()) as engine:
        done = engine.instances(workflow="orders", status="completed")
        assert len(done) == got.workflows
        assert {i.version for i in done} == {1}


@pytest.mark.postgres
def test_eventsourcing_and_raw_rounds_write_what_they_count(schema: str) -> None:
    es = _EventSourcing(schema)
    raw = _RawCommit(schema)
    try:
        got = es(2, 0.2)
        commits = raw(1, 0.1)
        with pytest.raises(ValueError, match="one caller, got 2"):
            raw(2, 0.1)
    finally:
        es.close()
        raw.close()
    assert got.workflows >= 2 and len(got.transitions) == 3 * got.workflows
    with psycopg.connect(PG_URL) as conn:
        events = conn.execute(f'SELECT count(*) FROM "{schema}".benchorders_events')
        row = events.fetchone()
        assert row is not None and row[0] == 3 * got.workflows
        rows = conn.execute(f'SELECT count(*) FROM "{schema}".raw_transitions')
        row = rows.fetchone()
        assert row is not None and row[0] == commits.workflows


def _databases() -> set[str]:
    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute("SELECT datname FROM pg_database").fetchall()
    return {r[0] for r in rows}


@pytest.mark.slow
@pytest.mark.postgres
def test_dbos_runs_in_a_child_and_its_database_is_dropped() -> None:
    dbos = _Dbos()
    name = dbos.dbname
    try:
        assert name in _databases()
        got = dbos(2, 0.3)
    finally:
        dbos.close()
    assert got.workflows >= 2
    assert len(got.latencies) == got.workflows and min(got.latencies) > 0
    assert name not in _databases()
    assert dbos.proc.returncode == 0
