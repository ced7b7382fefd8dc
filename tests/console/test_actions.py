"""Actions change the store and write the audit; token, read-only and CSRF refuse."""

from __future__ import annotations

from engine.deploy import Deployments
from engine.health.controller import Rollouts
from engine.store import open_store
from tests.console.conftest import Seeded, csrf


def _rollout_status(url: str) -> str:
    store = open_store(url)
    try:
        return Rollouts(store).status("tills").status
    finally:
        store.close()


def _last_audit(client: object, action: str) -> dict[str, str]:
    audit = client.get("/api/audit").json()  # type: ignore[attr-defined]
    return next(a for a in reversed(audit) if a["action"] == action)


def test_pause_resume_abort_a_rollout(seeded: Seeded) -> None:
    c = seeded.client()
    h = csrf(c)
    r = c.post("/api/rollouts/tills/pause", json={"reason": "look"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "paused"
    assert _rollout_status(seeded.url) == "paused"
    pause = _last_audit(c, "rollout pause")
    assert (pause["by"], pause["reason"]) == ("ann", "look")
    r = c.post("/api/rollouts/tills/pause", json={"reason": "again"}, headers=h)
    assert r.status_code == 409 and "no rollout running" in r.json()["error"]
    r = c.post("/api/rollouts/tills/resume", json={"reason": "fine"}, headers=h)
    assert r.json()["status"] == "running"
    r = c.post("/api/rollouts/tills/abort", json={"reason": "slow"}, headers=h)
    assert r.json()["status"] == "aborted"
    routing = Deployments(seeded.url).refresh().workflow("tills").routing
    assert routing is not None and (routing.stable, routing.canary) == (1, None)
    assert _last_audit(c, "rollout abort")["reason"] == "slow"
    r = c.post("/api/rollouts/tills/explode", json={"reason": "x"}, headers=h)
    assert r.status_code == 404 and "pause, resume, abort" in r.json()["error"]


def test_promote_and_roll_back(seeded: Seeded) -> None:
    c = seeded.client()
    h = csrf(c)
    r = c.post(
        "/api/workflows/tills/promote",
        json={"version": "2", "percent": "100", "reason": "good"},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["routing"] == "v2: 100 %"
    assert Deployments(seeded.url).refresh().workflow("tills").routing.stable == 2  # type: ignore[union-attr]
    assert _last_audit(c, "promote")["by"] == "ann"
    r = c.post("/api/workflows/tills/rollback", json={"reason": "bad"}, headers=h)
    assert r.status_code == 200 and r.json()["routing"] == "v1: 100 %"
    assert _last_audit(c, "rollback")["reason"] == "bad"
    r = c.post(
        "/api/workflows/tills/promote",
        json={"version": "two", "reason": "x"},
        headers=h,
    )
    assert r.status_code == 400 and "version 'two'" in r.json()["error"]
    r = c.post(
        "/api/workflows/tills/promote",
        json={"version": "9", "reason": "x"},
        headers=h,
    )
    assert r.status_code == 409 and "9" in r.json()["error"]


def test_kill_and_revive_a_flag_from_a_page_form(seeded: Seeded) -> None:
    c = seeded.client()
    token = csrf(c)["X-CSRF-Token"]
    r = c.post(
        "/api/flags/turbo/kill",
        data={"reason": "crashes", "csrf": token, "next": "/flags"},
        headers={"Origin": "http://console.test"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/flags"
    assert Deployments(seeded.url).refresh().flags["turbo"].killed
    kill = _last_audit(c, "kill")
    assert (kill["subject"], kill["by"], kill["reason"]) == (
        "flag:turbo",
        "console-default",
        "crashes",
    )
    r = c.post("/api/flags/turbo/revive", json={"reason": "fixed"}, headers=csrf(c))
    assert r.json()["killed"] is False
    assert not Deployments(seeded.url).refresh().flags["turbo"].killed
    r = c.post("/api/flags/nope/kill", json={"reason": "x"}, headers=csrf(c))
    assert r.status_code == 409 and "nope" in r.json()["error"]


def test_an_action_needs_a_reason(seeded: Seeded) -> None:
    c = seeded.client()
    r = c.post("/api/rollouts/tills/pause", json={}, headers=csrf(c))
    assert r.status_code == 400 and "needs a reason" in r.json()["error"]
    assert _rollout_status(seeded.url) == "running"


def test_replaying_a_dead_letter_needs_a_broker(seeded: Seeded) -> None:
    c = seeded.client()
    r = c.post("/api/deadletters/1/replay", json={"reason": "x"}, headers=csrf(c))
    assert r.status_code == 409 and "--kafka HOST:PORT" in r.json()["error"]
    r = c.post("/api/deadletters/one/replay", json={"reason": "x"}, headers=csrf(c))
    assert r.status_code == 400 and "'one'" in r.json()["error"]


def test_the_token_is_required_for_every_request(seeded: Seeded) -> None:
    c = seeded.client(token="s3cret")
    for path in ("/", "/api/workflows", "/api/openapi.json", "/instances"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert "needs its token" in c.get("/api/flags").json()["error"]
    assert (
        c.get("/api/flags", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    ok = c.get("/api/flags", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()[0]["flag"] == "turbo"
    r = c.post("/api/rollouts/tills/pause", json={"reason": "x"})
    assert r.status_code == 401 and _rollout_status(seeded.url) == "running"
    # a browser logs in once; the cookie then carries the token
    assert c.get("/login?token=nope").status_code == 401
    r = c.get("/login?token=s3cret", follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert c.get("/").status_code == 200


def test_read_only_refuses_every_action(seeded: Seeded) -> None:
    c = seeded.client(read_only=True)
    for path in (
        "/api/rollouts/tills/pause",
        "/api/workflows/tills/rollback",
        "/api/flags/turbo/kill",
        "/api/deadletters/1/replay",
    ):
        r = c.post(path, json={"reason": "x"}, headers=csrf(c))
        assert r.status_code == 403 and "--read-only" in r.json()["error"], path
    assert _rollout_status(seeded.url) == "running"
    assert not Deployments(seeded.url).refresh().flags["turbo"].killed
    assert c.get("/api/workflows").status_code == 200


def test_csrf_token_and_same_origin_are_checked(seeded: Seeded) -> None:
    c = seeded.client()
    good = csrf(c)
    r = c.post("/api/rollouts/tills/pause", json={"reason": "x"})
    assert r.status_code == 403 and "CSRF token" in r.json()["error"]
    r = c.post(
        "/api/rollouts/tills/pause",
        json={"reason": "x"},
        headers={"X-CSRF-Token": "0" * 64},
    )
    assert r.status_code == 403 and "CSRF token" in r.json()["error"]
    r = c.post(
        "/api/rollouts/tills/pause",
        data={"reason": "x", "csrf": good["X-CSRF-Token"]},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    r = c.post(
        "/api/rollouts/tills/pause",
        json={"reason": "x"},
        headers={**good, "Referer": "http://evil.example/page"},
    )
    assert r.status_code == 403 and "evil.example" in r.json()["error"]
    assert _rollout_status(seeded.url) == "running"
    # another console process has another secret, so another token
    other = seeded.client()
    r = other.post("/api/rollouts/tills/pause", json={"reason": "x"}, headers=good)
    assert r.status_code == 403
    assert _rollout_status(seeded.url) == "running"


def test_requests_for_another_host_name_are_refused(seeded: Seeded) -> None:
    c = seeded.client(hosts=("127.0.0.1", "localhost"))
    r = c.get("/api/flags")  # addressed to console.test
    assert r.status_code == 403
    assert "host 'console.test' refused" in r.json()["error"]
    assert "--allow-host" in r.json()["error"]
    ok = c.get("/api/flags", headers={"Host": "localhost:8080"})
    assert ok.status_code == 200
