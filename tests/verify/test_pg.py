"""``verify`` and ``export`` on PostgreSQL, with worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import SyncEngine, WorkflowRegistry
from engine.core.errors import ReplayDiverged
from engine.deploy.verify import verify_version
from engine.store import open_store
from engine.testing.histories import export_histories, replay_histories
from tests.verify import flows


@pytest.mark.postgres
def test_verify_in_processes_and_export_on_postgres(
    pg_url: str, tmp_path: Path
) -> None:
    with SyncEngine(pg_url, flows.registry()) as engine:
        for i in range(30):
            iid = f"p{i:02d}"
            engine.start("account", flows.Open(), instance_id=iid)
            engine.send(iid, flows.Deposit(50 if i % 10 else 150))
    for jobs in (1, 2):  # batches of 7 streams: two processes share five
        ok = verify_version(
            pg_url, flows.refactor, flows.registry(), jobs=jobs, batch=7
        )
        assert ok.ok and ok.instances == 30 and ok.digests == 60
        bad = verify_version(pg_url, flows.hotfix, flows.registry(), jobs=jobs, batch=7)
        got = [(d.instance_id, d.position) for d in bad.divergences]
        assert got == [("p00", 3), ("p10", 3), ("p20", 3)]
    out = tmp_path / "pg.jsonl"
    with open_store(pg_url) as store:
        assert export_histories(store, flows.registry(), out, "account", raw=True) == 30
    hot = WorkflowRegistry()
    hot.register(flows.hotfix)
    with pytest.raises(ReplayDiverged, match="'p00' diverges at position 3"):
        replay_histories(out, hot)
