"""Every endpoint's JSON, against real SQLite and PostgreSQL stores."""

from __future__ import annotations

import pytest
from starlette.routing import Route

from engine.console import api
from engine.console.openapi import openapi
from tests.console.conftest import Seeded


def test_workflows_and_versions(seeded: Seeded) -> None:
    c = seeded.client()
    [w] = c.get("/api/workflows").json()
    assert w["workflow"] == "tills" and w["routing"] == "v1: 50 %, v2: 50 %"
    assert w["rollout"]["status"] == "running" and w["rollout"]["share"] == 50.0
    by_version = {v["version"]: v for v in w["versions"]}
    v1 = by_version[1]
    assert (v1["running"], v1["completed"], v1["failed"]) == (9, 2, 1)
    assert v1["share_percent"] == 50.0 and v1["drain"] is None
    assert by_version[4]["running"] == 1 and by_version[4]["share_percent"] == 0
    # v4 gets no new instance and still runs one: it drains, nothing finished
    assert by_version[4]["drain"] == 0.0
    assert c.get("/api/workflows/tills/versions").json() == w["versions"]


def test_rollouts_with_guard_decisions_and_health(seeded: Seeded) -> None:
    c = seeded.client()
    [r] = c.get("/api/rollouts").json()
    assert (r["workflow"], r["version"], r["baseline"]) == ("tills", 2, 1)
    assert [d["action"] for d in r["decisions"]] == ["advance", "hold"]
    one = c.get("/api/rollouts/tills").json()
    first, second = one["decisions"]
    assert first["verdict"] == "pass" and second["verdict"] == "fail"
    assert second["samples"] == 10 and second["baseline_samples"] == 10
    assert second["latency_ratio"] == pytest.approx(5.0)
    # both sides' latency over the decision's own window, from the health buckets
    assert second["latency_ms"] == pytest.approx(20.0)
    assert second["baseline_latency_ms"] == pytest.approx(4.0)
    assert first["latency_ms"] == pytest.approx(4.0)


def test_instances_are_paged_in_start_order(seeded: Seeded) -> None:
    c = seeded.client()
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = c.get(f"/api/instances?limit=5&cursor={cursor}").json()
        seen += [i["instance_id"] for i in page["instances"]]
        pages += 1
        if page["next"] is None:
            break
        cursor = page["next"]
    assert seen == [f"t{i:02}" for i in range(12)] + ["flagged"]
    assert pages == 3
    failed = c.get("/api/instances?status=failed").json()
    assert [i["instance_id"] for i in failed["instances"]] == ["t02"]
    assert failed["instances"][0]["state"] == {"worked": 0, "ended": "failed"}
    done = c.get("/api/instances?status=completed&workflow=tills&limit=1").json()
    assert [i["instance_id"] for i in done["instances"]] == ["t00"]
    rest = c.get(f"/api/instances?status=completed&cursor={done['next']}").json()
    assert [i["instance_id"] for i in rest["instances"]] == ["t01"]
    assert rest["next"] is None


def test_an_instance_with_history_and_the_flags_it_read(seeded: Seeded) -> None:
    c = seeded.client()
    i = c.get("/api/instances/flagged").json()
    assert (i["workflow"], i["version"], i["status"]) == ("tills", 4, "running")
    assert i["flags_read"] == {"turbo": True}
    assert [e["type"] for e in i["history"]] == ["nonstop.Started", "healthtest.Worked"]
    assert all(e["schema"] == e["stored_schema"] == 1 for e in i["history"])
    assert c.get("/api/instances/t00").json()["flags_read"] == {}


def test_audit_flags_deadletters_projections(seeded: Seeded) -> None:
    c = seeded.client()
    audit = c.get("/api/audit").json()
    actions = [a["action"] for a in audit]
    assert "rollout start" in actions and "rollout advance" in actions
    start = next(a for a in audit if a["action"] == "rollout start")
    assert (start["by"], start["reason"]) == ("ops", "go")
    flags = c.get("/api/audit?subject=flag:turbo").json()
    assert flags and all(a["subject"] == "flag:turbo" for a in flags)
    [f] = c.get("/api/flags").json()
    assert (f["flag"], f["kind"], f["enabled"], f["killed"]) == (
        "turbo",
        "boolean",
        True,
        False,
    )
    [d] = c.get("/api/deadletters").json()
    assert (d["topic"], d["offset"], d["reason"], d["replayed_to"]) == (
        "orders",
        7,
        "bad json",
        None,
    )
    assert c.get("/api/projections").json() == []  # nothing has read it yet
    c.get("/api/instances")  # brings the instances read model up to date
    projections = c.get("/api/projections").json()
    inst = next(p for p in projections if p["name"] == "nonstop_instances")
    assert inst["serving"] and inst["lag_events"] == 0


def test_config_lists_workflows_without_documents(seeded: Seeded) -> None:
    r = seeded.client().get("/api/config")
    tills = next(w for w in r.json() if w["workflow"] == "tills")
    assert (tills["current"], tills["history"], tills["document"]) == (0, [], {})
    assert tills["routing"] == "defaults (v0)" and tills["rollback_to"] is None
    hooked = seeded.client(config=lambda s: {"documents": [], "store": "x"})
    assert hooked.get("/api/config").json() == {"documents": [], "store": "x"}


def test_openapi_describes_every_api_route(seeded: Seeded) -> None:
    doc = seeded.client().get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.") and doc == openapi()
    routed = {
        (r.path.replace(":path", ""), m.lower())
        for r in api.routes()
        if isinstance(r, Route)
        for m in r.methods or ()
        if m != "HEAD"
    }
    described = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post")
    }
    assert routed == described


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/api/workflows/nope/versions", 404, "unknown workflow 'nope'; known"),
        ("/api/instances?workflow=nope", 404, "unknown workflow 'nope'"),
        ("/api/rollouts/nope", 404, "'nope' has no rollout"),
        ("/api/instances?status=lost", 400, "status 'lost' is not one of running"),
        ("/api/instances?cursor=abc", 400, "cursor 'abc' is not a cursor"),
        ("/api/instances?cursor=-1", 400, "cursor '-1' is not a cursor"),
        ("/api/instances?limit=0", 400, "limit '0' must be a whole number"),
        ("/api/instances?limit=5000", 400, "from 1 to 1000"),
        ("/api/instances?state=x", 400, "unknown query parameter(s) state"),
        ("/api/instances/nobody", 404, "nobody"),
    ],
)
def test_bad_input_is_refused_with_a_precise_message(
    seeded: Seeded, path: str, status: int, words: str
) -> None:
    r = seeded.client().get(path)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
