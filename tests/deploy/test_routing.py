"""Routing laws: sticky, monotonic in the canary share, uniform."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.deploy import BUCKETS, DeployError, DeployView, Routing, bucket
from engine.deploy.events import Deployed, Routed
from engine.deploy.routing import percent_to_bp

keys = st.text(min_size=1, max_size=40)
shares = st.integers(min_value=0, max_value=BUCKETS)


@given(workflow=keys, key=keys)
def test_a_key_always_lands_in_the_same_bucket(workflow: str, key: str) -> None:
    b = bucket(workflow, key)
    assert 0 <= b < BUCKETS
    assert bucket(workflow, key) == b


def test_the_hash_is_the_documented_one() -> None:
    import hashlib

    digest = hashlib.blake2b(b"orders/o-1", digest_size=8).digest()
    assert bucket("orders", "o-1") == int.from_bytes(digest, "big") % BUCKETS


@given(key=keys, low=shares, high=shares)
def test_raising_the_canary_share_never_moves_a_key_out(
    key: str, low: int, high: int
) -> None:
    low, high = sorted((low, high))
    b = bucket("orders", key)
    before = Routing(1, 2, low).version_for(b)
    after = Routing(1, 2, high).version_for(b)
    if before == 2:
        assert after == 2


@settings(max_examples=20, deadline=None)
@given(share=shares, salt=st.text(max_size=8))
def test_the_canary_gets_its_share_within_tolerance(share: int, salt: str) -> None:
    # 4,000 keys: the standard deviation of a share is at most 0.8 %; the
    # tolerance is 5 of them (4 points), so a false alarm is below 1e-6.
    n = 4000
    routing = Routing(1, 2, share)
    hits = sum(
        routing.version_for(bucket("orders", f"{salt}-{i}")) == 2 for i in range(n)
    )
    assert abs(hits / n - share / BUCKETS) <= 0.04


@given(key=keys)
def test_full_and_empty_canaries(key: str) -> None:
    b = bucket("w", key)
    assert Routing(1, 2, BUCKETS).version_for(b) == 2
    assert Routing(1, 2, 0).version_for(b) == 1
    assert Routing(1).version_for(b) == 1


@given(stable=st.integers(1, 9), canary=st.integers(10, 19), share=shares)
def test_shares_add_up(stable: int, canary: int, share: int) -> None:
    r = Routing(stable, canary, share)
    assert r.share_bp(stable) + r.share_bp(canary) == BUCKETS


@pytest.mark.parametrize("bad", [-1, 100.5, 12.345, float("nan")])
def test_bad_shares_are_refused(bad: float) -> None:
    with pytest.raises(DeployError, match="between 0 and 100"):
        percent_to_bp(bad)


def test_percent_to_basis_points() -> None:
    assert percent_to_bp(10) == 1000
    assert percent_to_bp(0.01) == 1
    assert percent_to_bp(100) == BUCKETS


def _apply(view: DeployView, *events: object) -> None:
    for i, e in enumerate(events, start=view.positions.get("s", 0) + 1):
        view.apply("nonstop.deploy:w", i, view.seen + 1, 0, e)


def test_the_view_routes_and_rolls_back_step_by_step() -> None:
    view = DeployView()
    _apply(
        view,
        Deployed("w", 1, "m:v1", "ann"),
        Routed("w", "deploy", 1, None, 0, "ann"),
        Deployed("w", 2, "m:v2", "ann"),
        Routed("w", "deploy", 1, 2, 1000, "ann"),
    )
    wd = view.workflow("w")
    assert wd.deployments[1].state == "active"
    assert wd.deployments[2].state == "active"
    assert wd.rollback_target() == Routing(1)
    _apply(view, Routed("w", "promote", 2, None, 0, "ann"))
    assert wd.deployments[1].state == "draining"
    assert wd.previous == [1]
    assert wd.rollback_target() == Routing(1)
    _apply(view, Routed("w", "rollback", 1, None, 0, "bob"))
    assert wd.previous == []
    assert wd.rollback_target() is None
    assert wd.deployments[2].state == "draining"
    assert [a.action for a in view.audit] == [
        "deploy",
        "deploy",
        "deploy",
        "deploy",
        "promote",
        "rollback",
    ]


# ------------------------------------------- boundaries and stickiness (11.8)


def _key_in_bucket(scope: str, wanted: int) -> str:
    """A key whose bucket in ``scope`` is ``wanted`` (found by counting up)."""
    for i in range(2_000_000):
        key = f"edge-{i}"
        if bucket(scope, key) == wanted:
            return key
    raise AssertionError(f"no key in bucket {wanted}")  # pragma: no cover


def _view_with_canary(bp: int) -> DeployView:
    view = DeployView()
    _apply(
        view,
        Deployed("w", 1, "m:v1", "ann"),
        Routed("w", "deploy", 1, None, 0, "ann"),
        Deployed("w", 2, "m:v2", "ann"),
        Routed("w", "deploy", 1, 2, bp, "ann"),
    )
    return view


def test_a_zero_canary_routes_no_bucket() -> None:
    view = _view_with_canary(percent_to_bp(0))
    routing = view.workflow("w").effective()
    assert routing == Routing(1, 2, 0)
    assert all(routing.version_for(b) == 1 for b in range(BUCKETS))
    assert {view.route("w", f"k{i}") for i in range(5000)} == {1}


@pytest.mark.parametrize("percent", [0.01, 10, 12.5, 50, 99.99])
def test_bucket_edges_hit_exactly(percent: float) -> None:
    edge = percent_to_bp(percent)
    view = _view_with_canary(edge)
    last_in = _key_in_bucket("w", edge - 1)
    first_out = _key_in_bucket("w", edge)
    assert view.route("w", last_in) == 2
    assert view.route("w", first_out) == 1
    # One basis point more takes exactly the next bucket, one less drops the last.
    assert _view_with_canary(edge + 1).route("w", first_out) == 2
    assert _view_with_canary(edge - 1).route("w", last_in) == 1
