"""The pages render what the store holds; read-only pages show no form."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from engine.cli import load_app
from engine.console import Settings, create_app
from tests.console.conftest import APP, Seeded, seed


def test_overview_shows_versions_shares_counts_and_drain(seeded: Seeded) -> None:
    html = seeded.client().get("/").text
    assert "X-Nonstop-Fragment" in html and "},1000);" in html  # live
    assert "<main id=live><h2 id=wf-tills>" in html
    assert "<h2 id=wf-tills>tills</h2>" in html
    assert "routing <b>v1: 50 %, v2: 50 %</b>" in html
    assert 'href="/rollouts/tills">rollout #1</a>: running, step 2/3' in html
    v1 = re.search(r"<tr><td>v1</td>(.*?)</tr>", html)
    assert v1 is not None
    cells = re.findall(r"<td>(.*?)</td>", v1.group(1))
    assert cells[0] == "active" and "50 %" in cells[1]
    assert cells[2:6] == ["9", "2", "1", "0"]  # running, completed, failed, cancelled
    v4 = re.search(r"<tr><td>v4</td>(.*?)</tr>", html)
    assert v4 is not None and "<progress" in v4.group(1) and "1 to go" in v4.group(1)
    assert 'action="/api/workflows/tills/rollback"' in html


def test_rollout_page_has_charts_and_every_decision(seeded: Seeded) -> None:
    html = seeded.client().get("/rollouts/tills").text
    assert "tills@2 against v1" in html and "<b class=status>running</b>" in html
    titles = re.findall(r"<svg[^>]*><title>(.*?)</title>", html)
    assert titles == ["candidate share (%)", "error rate", "mean latency (ms)"]
    latency = html[html.index("<title>mean latency (ms)") :]
    assert latency.count('class="series"') == 2  # candidate and baseline
    assert "candidate" in latency and "baseline" in latency
    rows = re.findall(r"<tr><td>1970-01-12[^<]*</td>(.*?)</tr>", html)
    assert len(rows) == 2
    assert "<td>pass</td><td>advance</td>" in rows[0]
    assert "<td>fail</td><td>hold</td>" in rows[1] and "<td>5.00</td>" in rows[1]
    for action in ("pause", "abort"):
        assert f'action="/api/rollouts/tills/{action}"' in html
    assert 'action="/api/rollouts/tills/resume"' not in html  # not paused


def test_instance_search_pages_and_instance_page(seeded: Seeded) -> None:
    c = seeded.client()
    html = c.get("/instances?status=running&limit=4").text
    ids = re.findall(r'href="/instances/([^"]+)"', html)
    assert ids == ["t03", "t04", "t05", "t06"]
    nxt = re.search(r'rel=next href="([^"]+)"', html)
    assert nxt is not None and "status=running" in nxt.group(1)
    rest = c.get(nxt.group(1).replace("&amp;", "&")).text
    assert re.findall(r'href="/instances/([^"]+)"', rest)[0] == "t07"
    page = c.get("/instances/flagged").text
    assert "tills@4" in page and "healthtest.Worked" in page
    assert "<td>turbo</td><td>True</td>" in page  # flags read
    assert "nonstop.Started" in page
    bad = c.get("/instances?status=lost")
    assert bad.status_code == 400 and "status &#x27;lost&#x27;" in bad.text


def test_audit_flags_deadletters_projections_pages(seeded: Seeded) -> None:
    c = seeded.client()
    audit = c.get("/audit").text
    assert "rollout start" in audit and "<td>ops</td><td>go</td>" in audit
    flags = c.get("/flags").text
    assert "<td>turbo</td><td>boolean</td><td>on</td>" in flags
    assert 'action="/api/flags/turbo/kill"' in flags
    letters = c.get("/deadletters").text
    assert "orders/0/7" in letters and "bad json" in letters
    assert "start with --kafka" in letters
    c.get("/instances")
    projections = c.get("/projections").text
    assert "nonstop_instances" in projections and "(serving)" in projections


def test_read_only_pages_show_no_action(seeded: Seeded) -> None:
    c = seeded.client(read_only=True)
    for path in ("/", "/rollouts/tills", "/flags", "/deadletters"):
        html = c.get(path).text
        assert "<form class=act" not in html and "(read-only)" in html, path


def test_values_are_escaped(seeded: Seeded) -> None:
    c = seeded.client()
    html = c.get("/audit?subject=<script>").text
    assert "<script>" not in html
    r = c.get("/rollouts/<b>x")
    assert r.status_code == 404 and "<b>x" not in r.text


@pytest.mark.postgres
def test_the_store_password_is_never_shown(pg_url: str) -> None:
    url = pg_url.replace("postgres@", "postgres:hunter2@", 1)
    assert "hunter2" in url
    seed(url)
    settings = Settings(store_url=url, load_app=lambda: load_app(APP))
    try:
        c = TestClient(create_app(settings), base_url="http://console.test")
        for path in ("/", "/projections", "/rollouts/nope", "/api/rollouts/nope"):
            text = c.get(path).text
            assert "hunter2" not in text, path
        assert "postgres:***@" in c.get("/").text
    finally:
        settings.close()


def test_the_instance_page_shows_an_upcast_event(sqlite_url: str) -> None:
    from tests.golden.test_golden import _load, _records

    _load(sqlite_url)  # release 1 histories: OrderPlaced stored at schema 1
    iid = next(r["stream"] for r in _records() if r["type"] == "OrderPlaced")
    demo = "engine.demo.orders:registry"
    settings = Settings(store_url=sqlite_url, load_app=lambda: load_app(demo))
    try:
        c = TestClient(create_app(settings), base_url="http://console.test")
        html = c.get(f"/instances/{iid}").text
        row = re.search(r"<td>OrderPlaced</td><td>(.*?)</td>", html)
        assert row is not None and row.group(1) == "1 &rarr; 2 (upcast)"
        assert "&quot;currency&quot;: &quot;EUR&quot;" in html  # the upcaster's field
    finally:
        settings.close()
