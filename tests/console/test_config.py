"""The config panel: documents, history and engines; rollback as the CLI does it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from engine.cli import main
from engine.console import Settings, create_app
from engine.console.auth import Principal
from engine.deploy import Deployments
from engine.deploy.configadmin import set_config
from tests.console.conftest import csrf
from tests.deploy import configflows as cf

APP = "tests.deploy.configflows:registry"


@pytest.fixture
def gate(durable_url: str) -> Iterator[tuple[str, TestClient]]:
    """gate's config: v1 by ann, v2 by bob; a console over it."""
    with Deployments(durable_url) as reg:
        set_config(
            reg,
            "gate",
            {"threshold": 10},
            by="ann",
            reason="tighter",
            registry=cf.registry(),
        )
        set_config(
            reg,
            "gate",
            {"threshold": 20},
            by="bob",
            reason="looser",
            registry=cf.registry(),
        )
    settings = Settings(store_url=durable_url, load_app=cf.registry, operator="cy")
    with TestClient(create_app(settings), base_url="http://console.test") as c:
        yield durable_url, c
    settings.close()


def _current(url: str) -> int:
    with Deployments(url) as reg:
        return reg.refresh().configs["gate"].current


def test_api_config_shows_document_versions_and_history(
    gate: tuple[str, TestClient],
) -> None:
    _, c = gate
    r = c.get("/api/config")
    assert r.status_code == 200
    (g,) = [w for w in r.json() if w["workflow"] == "gate"]
    assert (g["current"], g["canary"], g["routing"]) == (2, None, "v2")
    assert g["document"] == {"threshold": 20}
    assert [(v["version"], v["by"]) for v in g["versions"]] == [(1, "ann"), (2, "bob")]
    assert g["rollback_to"] == 1
    first, second = g["history"]
    assert (first["by"], first["reason"], first["action"]) == ("ann", "tighter", "set")
    assert first["summary"] == "set: v0 -> v1 (adds v1)"
    assert first["diff"] == ["threshold: (unset) -> 10"]
    assert second["diff"] == ["threshold: 10 -> 20"]
    assert second["at"].endswith("Z")


def test_the_config_page_shows_history_and_a_rollback(
    gate: tuple[str, TestClient],
) -> None:
    _, c = gate
    html = c.get("/config").text
    assert "<h2 id=cfg-gate>gate</h2>" in html
    assert "threshold: 10 -&gt; 20" in html and "looser" in html
    assert "roll config back to v1" in html
    assert html.index("looser") < html.index("tighter")  # newest first


def test_a_viewer_sees_the_config_but_cannot_roll_it_back(
    gate: tuple[str, TestClient],
) -> None:
    url, _ = gate
    settings = Settings(
        store_url=url,
        load_app=cf.registry,
        tokens={"v": Principal("bob", "viewer")},
    )
    with TestClient(create_app(settings), base_url="http://console.test") as c:
        c.headers["Authorization"] = "Bearer v"
        html = c.get("/config").text
        assert "threshold: 10 -&gt; 20" in html and "<form" not in html
        token = c.get("/api/config").status_code
        r = c.post(
            "/api/config/gate/rollback",
            json={"reason": "x"},
            headers={"X-CSRF-Token": c.get("/api/csrf").json()["csrf"]},
        )
    settings.close()
    assert token == 200 and r.status_code == 403 and _current(url) == 2


def test_rollback_from_the_console_is_audited_like_the_cli(
    gate: tuple[str, TestClient],
) -> None:
    url, c = gate
    h = csrf(c)
    r = c.post("/api/config/gate/rollback", json={"reason": "too loose"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["current"] == 1 and _current(url) == 1
    last = c.get("/api/audit?subject=config:gate").json()[-1]
    assert (last["by"], last["reason"]) == ("ann", "too loose")
    # to a named version; and the CLI sees the same history
    r = c.post(
        "/api/config/gate/rollback", json={"reason": "again", "to": "2"}, headers=h
    )
    assert r.status_code == 200 and _current(url) == 2
    history = c.get("/api/config").json()
    g = next(w for w in history if w["workflow"] == "gate")
    assert [x["action"] for x in g["history"]] == ["set", "set", "rollback", "rollback"]
    args = ["--store", url, "--app", APP, "config", "rollback", "gate"]
    assert main([*args, "--to", "1", "--by", "dee", "--reason", "cli"]) == 0
    g = next(w for w in c.get("/api/config").json() if w["workflow"] == "gate")
    assert g["current"] == 1 and g["history"][-1]["by"] == "dee"


def test_a_config_rollback_is_refused_precisely(gate: tuple[str, TestClient]) -> None:
    url, c = gate
    h = csrf(c)
    r = c.post(
        "/api/config/gate/rollback", json={"reason": "x", "to": "two"}, headers=h
    )
    assert r.status_code == 400 and "'two' must be a whole number" in r.json()["error"]
    r = c.post("/api/config/gate/rollback", json={"reason": "x", "to": "9"}, headers=h)
    assert r.status_code == 409 and "no config v9" in r.json()["error"]
    r = c.post("/api/config/gate/rollback", json={"reason": ""}, headers=h)
    assert r.status_code == 400 and "reason" in r.json()["error"]
    r = c.post("/api/config/gate/rollback", json={"reason": "x"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert _current(url) == 2
