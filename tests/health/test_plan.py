"""Rollout plans read from files and checked before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.errors import RolloutError
from engine.health.events import MetricCheck
from engine.health.rollout import RolloutPlan

QUERY = 'sum(nonstop_commands_total{workflow="$workflow",outcome="rejected"})'


def test_a_plan_file_with_metric_checks(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(
        'steps = [10, 100]\ninterval = "30s"\n'
        'prometheus = "http://127.0.0.1:9090"\n'
        f"[[metrics]]\nname = \"rejections\"\nquery = '{QUERY}'\nmax = 3\n"
        "[[metrics]]\nname = \"traffic\"\nquery = 'sum(up)'\nmin = 1\n"
    )
    plan = RolloutPlan.from_file(plan_file, workflow="orders", version=2)
    assert plan.interval == 30 and plan.steps == (10.0, 100.0)
    assert plan.metrics == (
        MetricCheck("rejections", QUERY, max=3.0),
        MetricCheck("traffic", "sum(up)", min=1.0),
    )
    assert [m.bounds for m in plan.metrics] == ["max 3", "min 1"]


@pytest.mark.parametrize(
    ("metrics", "prometheus", "message"),
    [
        ([{"name": "m", "query": "up"}], "http://p:9090", "'m' needs a bound"),
        ([{"name": "m", "query": "", "max": 1}], "http://p:9090", "name and a query"),
        (
            [{"name": "m", "query": "up", "max": 1}] * 2,
            "http://p:9090",
            "'m' is named twice",
        ),
        (
            [{"name": "m", "query": "up", "max": 1, "min": 2}],
            "http://p:9090",
            "min 2 above max 1",
        ),
        ([{"name": "m", "query": "up", "max": 1}], "", "need the Prometheus"),
        ([{"name": "m", "query": "up", "max": "high"}], "http://p", "does not fit"),
        ([{"name": "m", "query": "up", "limit": 1}], "http://p", "does not fit"),
    ],
)
def test_bad_metric_checks_are_refused_by_name(
    metrics: list[dict[str, object]], prometheus: str, message: str
) -> None:
    with pytest.raises(RolloutError, match=message):
        RolloutPlan.from_dict(
            {
                "workflow": "orders",
                "version": 2,
                "metrics": metrics,
                "prometheus": prometheus,
            }
        )
