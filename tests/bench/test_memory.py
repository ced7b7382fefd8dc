"""The memory scenario measures each replay in a child of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.harness import pg_schema
from bench.memory import _figures, _measure, _populate, _rss_mb


def test_peak_rss_sees_a_large_allocation() -> None:
    before = _rss_mb()
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    assert _rss_mb() - before >= 48
    del block


@pytest.fixture(scope="module")
def populated() -> Iterator[str]:
    with pg_schema("nonstop_test_bench") as schema:
        _populate(schema, long_len=600, many=30)
        yield schema


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("kind", "size", "events"),
    [
        ("nonstop-long", 600, 600),
        ("es-long", 600, 600),
        ("nonstop-many", 30, 300),
        ("es-many", 30, 300),
    ],
)
def test_each_child_replays_everything_and_reports_its_peak(
    populated: str, kind: str, size: int, events: int
) -> None:
    peak = _measure(kind, populated, size)
    assert peak.events == events
    assert 0 < peak.before_mb <= peak.peak_mb
    assert peak.above_mb == peak.peak_mb - peak.before_mb


@pytest.mark.postgres
def test_a_child_does_not_inherit_the_parents_peak(populated: str) -> None:
    block = bytearray(200 * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])
    assert _rss_mb() > 200
    peak = _measure("nonstop-long", populated, 600)
    del block
    assert peak.peak_mb < 150


@pytest.mark.postgres
def test_a_child_that_finds_the_wrong_data_fails_loudly(populated: str) -> None:
    with pytest.raises(RuntimeError, match="nonstop-long failed"):
        _measure("nonstop-long", populated, 601)


def test_figures_put_the_goal_on_the_long_stream() -> None:
    from bench.memory import ES, Peak

    peaks = {
        "nonstop-long": [Peak(40.0, 50.0, 10, 1.0)],
        "es-long": [Peak(40.0, 1000.0, 10, 1.0)],
        "nonstop-many": [Peak(40.0, 60.0, 10, 1.0)],
        "es-many": [Peak(40.0, 200.0, 10, 1.0)],
    }
    figs = {f.scenario: f for f in _figures(peaks, 10, 1)}
    assert figs["memory-long"].passed is True  # 50 MB <= 150 MB
    assert figs["memory-long"].baseline_value(ES) == 1000.0
    assert figs["memory-long-above-imports"].value == 10.0
    assert figs["memory-many"].passed is None
    peaks["nonstop-long"] = [Peak(40.0, 151.0, 10, 1.0)]
    assert {f.scenario: f for f in _figures(peaks, 10, 1)}[
        "memory-long"
    ].passed is False
