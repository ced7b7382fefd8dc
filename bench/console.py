"""The operations console: server time of its pages on a small and a large store.

Two SQLite stores of counter instances, ten events each: a small one and one
ten times larger (full run: 10,000 and 100,000 instances, 100,000 and
1,000,000 events). Each is filled by appending encoded records, its instances
read model brought up to date once, then the console app (in process, through
Starlette's test client, so the time is the server's) is asked, interleaved:

1. ``GET /api/instances?status=running&limit=100`` (a page, after a cursor in
   the middle of the store): the large store against the small one, which
   shows whether a page costs the same whatever the store's size;
2. ``GET /`` (the overview: routing, per-version counts from the read model,
   the rollout): its rate on the large store, against the issue's 300 ms;
3. the live overview's poll (``GET /`` with ``X-Nonstop-Fragment: 1`` and a
   viewer's bearer token among 100 people's tokens) against the whole
   overview page without tokens, on the large store: what the token check
   and the live part cost over a plain page.
"""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from bench.counter import encoded_stream
from bench.harness import BenchContext, Contender, Figure, Target, measure
from engine.cli import load_app
from engine.console import Settings, create_app
from engine.console.auth import Principal
from engine.deploy import Deployments
from engine.store import open_store

__all__ = ["DESCRIPTION", "run"]

DESCRIPTION = (
    "- **console**: server time of the console's pages (in process) on SQLite "
    "stores of counter instances with ten events each: an instances page "
    "(100 rows after a cursor) on a store ten times larger against the small "
    "one, and the overview on the large store (100,000 instances, 1,000,000 "
    "events in the full run)."
)

_APP = "bench.counter:registry"
_EVENTS = 10


def _fill(path: Path, instances: int) -> str:
    """A SQLite store of ``instances`` running counters of ten events each."""
    url = f"sqlite:///{path}"
    store = open_store(url)
    try:
        Deployments(store).deploy(
            "bench-counter", 1, "bench.counter:workflow", by="bench"
        )
        batch = []
        for i in range(instances):
            batch += encoded_stream(f"c{i:07}", _EVENTS)
            if len(batch) >= 20_000:
                store.append(batch)
                batch = []
        if batch:
            store.append(batch)
    finally:
        store.close()
    return url


def _client(url: str, tokens: dict[str, Principal] | None = None) -> TestClient:
    settings = Settings(
        store_url=url, load_app=lambda: load_app(_APP), tokens=tokens or {}
    )
    return TestClient(create_app(settings))


def _requests(
    client: TestClient,
    path: str,
    count: int,
    headers: dict[str, str] | None = None,
) -> Contender:
    def go() -> tuple[int, float]:
        t0 = time.perf_counter()
        for _ in range(count):
            r = client.get(path, headers=headers)
            assert r.status_code == 200, r.text[:300]
        return count, time.perf_counter() - t0

    return Contender(path, go)


def run(ctx: BenchContext) -> list[Figure]:
    small_n = 1_000 if ctx.quick else 10_000
    large_n = small_n * 10
    small_url = _fill(ctx.work / "console-small.db", small_n)
    large_url = _fill(ctx.work / "console-large.db", large_n)
    tokens = {
        f"token-{i:03}": Principal(f"person{i}", "viewer" if i % 2 else "operator")
        for i in range(100)
    }
    small, large = _client(small_url), _client(large_url)
    live = _client(large_url, tokens)
    try:
        for c in (small, large):  # the one catch-up of the read model
            assert c.get("/api/instances?limit=1").status_code == 200
        pages = 10 if ctx.quick else 50

        def page(client: TestClient, url: str, n: int, name: str) -> Contender:
            store = open_store(url)  # the cursor of the middle instance's start
            try:
                mid = store.read_stream(f"c{n // 2:07}")[0].global_position
            finally:
                store.close()
            path = f"/api/instances?status=running&limit=100&cursor={mid}"
            inner = _requests(client, path, pages)
            return Contender(name, inner.run)

        large_name = f"{large_n:,} instances, {large_n * _EVENTS:,} events"
        small_name = f"{small_n:,} instances, {small_n * _EVENTS:,} events"
        overview_large = _requests(large, "/", 3 if ctx.quick else 10)
        overview_small = _requests(small, "/", 3 if ctx.quick else 10)
        poll = _requests(
            live,
            "/",
            3 if ctx.quick else 10,
            {"X-Nonstop-Fragment": "1", "Authorization": "Bearer token-099"},
        )
        return [
            measure(
                "console-page",
                "console: an instances page (100 running, after a cursor)",
                unit="pages/s",
                what="GET /api/instances?status=running&limit=100&cursor=C, "
                "server time in process",
                subject=page(large, large_url, large_n, large_name),
                baselines=[page(small, small_url, small_n, small_name)],
                reps=ctx.reps,
                target=Target(0.67, ">=", against=small_name),
            ),
            measure(
                "console-overview",
                "console: the overview page",
                unit="pages/s",
                what="GET /, server time in process (>= 3.33 pages/s is <= 300 ms)",
                subject=Contender(large_name, overview_large.run),
                baselines=[Contender(small_name, overview_small.run)],
                reps=ctx.reps,
                target=Target(3.33, ">="),
            ),
            measure(
                "console-live",
                "console: the live overview's poll (fragment, token of 100)",
                unit="pages/s",
                what="GET / with X-Nonstop-Fragment and a bearer token among "
                f"100, against GET / without tokens, {large_name}",
                subject=Contender("live poll", poll.run),
                baselines=[Contender("whole page, no token", overview_large.run)],
                reps=ctx.reps,
                target=Target(
                    0.9, ">=", source="design", against="whole page, no token"
                ),
            ),
        ]
    finally:
        small.close()
        large.close()
        live.close()
