"""Figures with several goals, their JSON and report, and merging partial runs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.__main__ import _merge
from bench.harness import Figure, Target
from bench.report import markdown, table

samples = st.lists(
    st.floats(min_value=0.01, max_value=1e6, allow_nan=False), min_size=1, max_size=5
)
bounds = st.floats(min_value=0.01, max_value=100, allow_nan=False)


def _figure(**kw: object) -> Figure:
    fig = Figure(
        "s-pg",
        "a figure",
        "events/s",
        "what it measures",
        "nonstop",
        [10.0, 30.0, 20.0],
        {"raw": [40.0, 40.0, 40.0], "lib": [5.0, 4.0, 6.0]},
    )
    for k, v in kw.items():
        setattr(fig, k, v)
    return fig


@given(ours=samples, theirs=samples, bound=bounds, op=st.sampled_from([">=", "<="]))
def test_a_ratio_goal_bounds_the_ratio_of_medians(
    ours: list[float], theirs: list[float], bound: float, op: str
) -> None:
    fig = Figure("s", "f", "u", "w", "us", ours, {"them": theirs})
    goal = Target(bound, op, against="them")
    ratio = statistics.median(ours) / statistics.median(theirs)
    assert fig.holds(goal) is (ratio >= bound if op == ">=" else ratio <= bound)


@given(ours=samples, goals=st.lists(bounds, min_size=1, max_size=4))
def test_a_figure_passes_only_when_every_goal_holds(
    ours: list[float], goals: list[float]
) -> None:
    targets = [Target(g) for g in goals]
    fig = Figure("s", "f", "u", "w", "us", ours, targets=targets)
    assert fig.passed is all(statistics.median(ours) >= g for g in goals)
    data = fig.as_json()
    assert [t["pass"] for t in data["targets"]] == [fig.holds(t) for t in targets]


def test_target_and_targets_are_both_goals() -> None:
    fig = _figure(
        target=Target(0.8, ">=", against="raw"),
        targets=[Target(3.0, ">=", against="lib")],
    )
    assert fig.value == 20.0
    assert fig.ratios() == {"raw": 0.5, "lib": 4.0}
    assert [fig.holds(t) for t in fig.goals] == [False, True]
    assert fig.passed is False
    data = fig.as_json()
    assert [t["text"] for t in data["targets"]] == [">= x0.8 raw", ">= x3 lib"]
    assert data["pass"] is False
    json.dumps(data)  # the results file must stay plain JSON


def test_a_figure_without_goals_has_no_verdict() -> None:
    fig = _figure()
    assert fig.passed is None
    assert fig.as_json()["targets"] == []
    assert "MISS" not in table([fig.as_json()])


def test_small_values_keep_their_digits() -> None:
    fig = Figure("s", "latency", "ms", "w", "us", [0.0123, 0.5], {"raw": [0.25]})
    data = fig.as_json()
    assert data["value"] == pytest.approx(0.256, rel=1e-2)
    assert data["baselines"]["raw"]["value"] == 0.25
    assert "0.256 ms" in table([data])


def test_target_rejects_an_unknown_operator() -> None:
    with pytest.raises(ValueError, match="'>'"):
        Target(1.0, ">")


def test_report_shows_every_goal_and_the_command() -> None:
    fig = _figure(
        target=Target(0.8, ">=", against="raw"),
        targets=[Target(3.0, ">=", against="lib")],
    )
    data = {
        "machine": {
            "cpu_count": 2,
            "processor": "x86_64",
            "platform": "Linux",
            "python": "3.11",
            "packages": {"dbos": "3.4.0"},
            "date": "2026-01-01T00:00:00+00:00",
        },
        "figures": [{**fig.as_json(), "bench": "replay"}],
    }
    page = markdown(data, 3, ["- **replay** (`python -m bench --only replay`): x"])
    assert "MISS (>= x0.8 raw)<br>PASS (>= x3 lib)" in page
    assert "`python -m bench --only replay`" in page
    assert "dbos 3.4.0" in page


def test_a_partial_run_keeps_the_other_scenarios(tmp_path: Path) -> None:
    old = [
        {"scenario": "commit-postgres", "figure": "c"},  # from before the tag
        {"scenario": "replay-psycopg", "figure": "r", "bench": "replay"},
        {"scenario": "workflow-c1", "figure": "w-old", "bench": "workflow"},
    ]
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"figures": old}))
    new = [{"scenario": "workflow-c1", "figure": "w-new", "bench": "workflow"}]
    merged = _merge(path, ["workflow"], new)
    assert [f["figure"] for f in merged] == ["c", "r", "w-new"]
    assert _merge(tmp_path / "missing.json", ["workflow"], new) == new
