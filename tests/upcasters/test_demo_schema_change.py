"""``nonstop demo`` runs release 1, then release 2 with the OrderPlaced upcaster."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from engine.demo.local import run_demo
from engine.store import open_store


def test_demo_upcasts_release_1_events_and_finishes_every_v1_order(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    out = io.StringIO()
    code = run_demo(url, instances=12, seed=7, out=Console(file=out, width=200))
    text = out.getvalue()
    assert code == 0, text
    assert "phase 1 (release 1): started 6 orders on orders@1" in text
    found = re.search(
        r"schema change: (\d+) events stored by release 1 .* were upcast to schema 2 "
        r"on read; (\d+) of (\d+) orders@1 orders started on release 1 finished",
        text,
    )
    assert found is not None, text
    upcast, done, v1 = map(int, found.groups())
    assert upcast == v1 == done == 6  # one OrderPlaced each, all finished
    with open_store(url) as store:
        placed = list(store.iter_all(types=["OrderPlaced"]))
    schemas = sorted(r.data[1] for r in placed)  # the envelope's schema byte
    assert schemas.count(1) == 6 and schemas.count(2) >= 6
