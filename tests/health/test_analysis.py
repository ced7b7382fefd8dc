"""The pure analysis: two windows of counts in, a verdict and an action out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.health.analysis import (
    LATENCY_BOUNDS,
    Check,
    Counts,
    Progress,
    Thresholds,
    analyze,
    decide,
    latency_bucket,
    with_checks,
)

N = len(LATENCY_BOUNDS) + 1


@st.composite
def counts(draw: st.DrawFn, max_n: int = 5_000) -> Counts:
    accepted = draw(st.integers(0, max_n))
    hist = [0] * N
    for _ in range(min(accepted, 5)):
        hist[draw(st.integers(0, N - 1))] += 1
    hist[0] += accepted - sum(hist)
    return Counts(
        accepted=accepted,
        rejected=draw(st.integers(0, max_n)),
        crashed=draw(st.integers(0, max_n)),
        started=draw(st.integers(0, accepted)),
        completed=0,
        failed=draw(st.integers(0, accepted)),
        latency=tuple(hist),
        latency_sum=draw(st.floats(0.0, 10.0)) * accepted,
    )


thresholds = st.builds(
    Thresholds,
    min_sample=st.integers(1, 500),
    max_error_rate=st.floats(0.0, 1.0),
    max_latency_ratio=st.floats(1.0, 5.0),
)
steps = st.lists(st.floats(0.01, 99.0), min_size=1, max_size=5).map(
    lambda xs: (*sorted(xs), 100.0)
)


@settings(max_examples=300, deadline=None)
@given(counts(), counts(), thresholds)
def test_never_passes_below_min_sample(c: Counts, b: Counts, t: Thresholds) -> None:
    a = analyze(c, b, t)
    if c.samples < t.min_sample:
        assert a.verdict == "inconclusive"
        d = decide(a, Progress(0, 0), steps=(5.0, 100.0), failure_limit=2)
        assert d.action == "hold" and d.progress.step == 0


@settings(max_examples=300, deadline=None)
@given(counts(), thresholds, st.integers(0, 10), st.integers(1, 5))
def test_a_candidate_equal_to_the_baseline_is_never_rolled_back(
    c: Counts, t: Thresholds, failures: int, limit: int
) -> None:
    a = analyze(c, c, t)
    assert a.verdict != "fail"
    d = decide(
        a, Progress(0, failures % limit), steps=(5.0, 100.0), failure_limit=limit
    )
    assert d.action != "rollback"


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 5),
    st.floats(0.0, 0.5),
    st.integers(100, 10_000),
    steps,
    st.data(),
)
def test_error_rate_above_threshold_rolls_back_after_failure_limit(
    limit: int, max_rate: float, n: int, plan: tuple[float, ...], data: st.DataObject
) -> None:
    t = Thresholds(min_sample=100, max_error_rate=max_rate, max_latency_ratio=1.5)
    bad = data.draw(st.integers(int(n * max_rate) + 1, n))
    candidate = Counts(accepted=n - bad, rejected=bad)
    baseline = Counts(accepted=n, rejected=data.draw(st.integers(0, int(n * max_rate))))
    progress = Progress(data.draw(st.integers(0, len(plan) - 2)), 0)
    for i in range(1, limit + 1):
        a = analyze(candidate, baseline, t)
        assert a.verdict == "fail"
        d = decide(a, progress, steps=plan, failure_limit=limit)
        if i < limit:
            assert d.action == "hold"
            assert d.progress.step == progress.step
        else:
            assert d.action == "rollback"
            assert "error rate" in d.reason
        progress = d.progress


def test_a_healthy_candidate_advances_step_by_step_to_complete() -> None:
    t = Thresholds(min_sample=10)
    good = Counts(accepted=100, latency=(100,), latency_sum=0.1)
    plan = (5.0, 25.0, 50.0, 100.0)
    p = Progress()
    actions = []
    while True:
        d = decide(analyze(good, good, t), p, steps=plan, failure_limit=2)
        actions.append((d.action, plan[d.progress.step]))
        p = d.progress
        if d.action == "complete":
            break
    assert actions == [("advance", 25.0), ("advance", 50.0), ("complete", 100.0)]


def test_slow_candidate_fails_on_latency_ratio() -> None:
    t = Thresholds(min_sample=10, max_latency_ratio=1.5)
    base = Counts(accepted=100, latency=(100,), latency_sum=1.0)
    slow = Counts(accepted=100, latency=(100,), latency_sum=2.0)
    a = analyze(slow, base, t)
    assert a.verdict == "fail" and a.latency_ratio == 2.0
    assert "latency ratio 2.00" in a.reason


def test_overdue_rolls_back_unless_complete() -> None:
    a = analyze(Counts(), Counts(), Thresholds(min_sample=1))
    d = decide(a, Progress(), steps=(5.0, 100.0), failure_limit=3, overdue=True)
    assert d.action == "rollback" and "deadline" in d.reason


@given(st.floats(0, 100, allow_nan=False))
def test_latency_bucket_is_the_first_bound_not_below(x: float) -> None:
    i = latency_bucket(x)
    assert i == N - 1 or x <= LATENCY_BOUNDS[i]
    assert i == 0 or x > LATENCY_BOUNDS[i - 1]


@given(counts(), counts(), counts())
def test_counts_add_like_numbers(a: Counts, b: Counts, c: Counts) -> None:
    assert (a + b) + c == a + (b + c) or abs(
        ((a + b) + c).latency_sum - (a + (b + c)).latency_sum
    ) < 1e-6
    assert (a + b).samples == a.samples + b.samples
    assert a + Counts() == a


extra_checks = st.lists(
    st.builds(
        Check, st.just("metric m"), st.sampled_from([True, False, None]), st.text()
    ),
    max_size=4,
)


@given(counts(), counts(), thresholds, extra_checks)
def test_metric_checks_only_make_a_window_stricter(
    c: Counts, b: Counts, t: Thresholds, extra: list[Check]
) -> None:
    """Extra checks never pass a window the counts failed or could not judge."""
    alone = analyze(c, b, t)
    both = with_checks(alone, extra)
    assert both.checks == alone.checks + tuple(extra)
    if alone.verdict != "pass":
        assert both.verdict == alone.verdict
    elif any(x.ok is False for x in extra):
        assert both.verdict == "fail"
    elif any(x.ok is None for x in extra):
        assert both.verdict == "inconclusive"
    else:
        assert both.verdict == "pass"
    # A metric that cannot be judged never rolls a rollout back by itself.
    if all(x.ok is not False for x in extra):
        assert (both.verdict == "fail") == (alone.verdict == "fail")
