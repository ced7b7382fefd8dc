"""Snapshot state evolution and ``nonstop snapshots migrate``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine import Engine, SnapshotMigrationError, WorkflowRegistry, open_store
from engine.snapshots import (
    MigrationProgress,
    classify,
    migrate_snapshots,
    migration_name,
    parse_key,
)
from engine.store import EventStore, Snapshot
from tests.upcasters import tally
from upcasters import UpcastChainError, UpcasterRegistry, default_upcasters

ROOT = Path(__file__).resolve().parents[2]
REF = f"{tally.NAME}@1"


def _engine_a(store: EventStore | str) -> Engine:
    # Release A has no state upcasters (the process-wide one is release B's).
    return _engine(store, tally.release_a(), UpcasterRegistry())


def _engine(
    store: EventStore | str, registry: WorkflowRegistry, steps: UpcasterRegistry
) -> Engine:
    return Engine(store, registry, codec=tally.codec(), upcasters=steps)


async def _fill(url: str, ids: list[str], adds: int) -> None:
    """Start each instance and add ``adds`` numbers under release A."""
    async with _engine_a(url) as eng:
        for iid in ids:
            await eng.start(tally.NAME, 1, instance_id=iid)
            for n in range(2, adds + 2):
                await eng.send(iid, n)


def _snapshot(url: str, iid: str) -> Snapshot:
    with open_store(url) as store:
        snap = store.load_snapshot(iid)
    assert snap is not None
    return snap


async def test_old_snapshot_is_upcast_by_the_state_chain(durable_url: str) -> None:
    await _fill(durable_url, ["t"], adds=3)  # positions 1..4: snapshot at 4
    old = _snapshot(durable_url, "t")
    assert (old.position, parse_key(old.key)[2]) == (4, 1)
    async with Engine(durable_url, tally.release_b()) as eng:
        info = await eng.get("t")
        assert info.state == tally.Tally2(amount=1 + 2 + 3 + 4, label="upcast")
        info = await eng.send("t", 10)  # position 5: no snapshot yet
        info = await eng.send("t", 20)  # position 6: a snapshot at schema 2
    assert info.state.amount == 40
    new = _snapshot(durable_url, "t")
    assert new.position == 6 and new.key == tally.workflow_b().state_key


async def test_without_a_state_chain_the_snapshot_is_rebuilt_from_events(
    sqlite_url: str,
) -> None:
    await _fill(sqlite_url, ["t"], adds=3)
    async with _engine(sqlite_url, tally.release_b(), UpcasterRegistry()) as eng:
        info = await eng.get("t")
    assert info.state == tally.Tally2(amount=10, label="")


async def test_a_failing_state_upcaster_falls_back_to_events(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _fill(sqlite_url, ["t"], adds=3)
    broken = UpcasterRegistry()
    broken.add_state(REF, 1, lambda s: {"amount": s["nope"]})
    async with _engine(sqlite_url, tally.release_b(), broken) as eng:
        info = await eng.get("t")
    assert info.state == tally.Tally2(amount=10, label="")
    assert "state upcaster failed on the snapshot of t" in caplog.text


async def test_a_key_without_a_state_schema_reads_as_schema_1(
    sqlite_url: str,
) -> None:
    await _fill(sqlite_url, ["t"], adds=1)  # positions 1..3: snapshot at 2
    wf = tally.workflow_a()
    ref, digest, schema = parse_key(wf.state_key)
    assert (ref, schema) == (REF, 1)
    legacy = f"{ref}#{digest}"  # how keys looked before state schemas
    assert classify(wf, legacy, UpcasterRegistry()) == "current"
    state = msgspec.Raw(msgspec.msgpack.encode(tally.Tally(500)))
    body = msgspec.msgpack.encode([state, {}])  # [state, command ids]
    with open_store(sqlite_url) as store:
        store.save_snapshot(Snapshot("t", 3, legacy, body))
    async with _engine_a(sqlite_url) as eng:
        assert (await eng.get("t")).state.total == 500  # from the legacy snapshot


def test_classify_refuses_other_versions_newer_schemas_and_changed_shapes() -> None:
    wf = tally.workflow_b()
    steps = default_upcasters()
    a_key = tally.workflow_a().state_key
    assert classify(wf, a_key, steps) == "upcast"
    assert classify(wf, a_key, UpcasterRegistry()) == "stale"
    assert classify(wf, wf.state_key.replace(REF, f"{tally.NAME}@9"), steps) == "stale"
    ref, digest, _ = parse_key(wf.state_key)
    assert classify(wf, f"{ref}#{digest}#3", steps) == "stale"  # from a newer release
    assert classify(wf, f"{ref}#0000000000000000#2", steps) == "stale"


def test_engine_refuses_inconsistent_state_chains(sqlite_url: str) -> None:
    past = UpcasterRegistry()
    past.add_state(REF, 2, lambda s: s)
    with pytest.raises(UpcastChainError, match=rf"state of '{REF}'.*reads schema 2"):
        _engine(sqlite_url, tally.release_b(), past)
    with pytest.raises(UpcastChainError, match="name@version"):
        UpcasterRegistry().add_state(tally.NAME, 1, lambda s: s)


# ------------------------------------------------------------- migration


async def _migrate(url: str, **options: Any) -> MigrationProgress:
    async with Engine(url, tally.release_b()) as eng:
        return await migrate_snapshots(eng, **options)


async def test_migrate_resnapshots_every_instance(durable_url: str) -> None:
    moved = [f"m{i:02d}" for i in range(12)]
    still = [f"s{i:02d}" for i in range(3)]
    await _fill(durable_url, moved, adds=3)  # position 5, snapshot at 4
    await _fill(durable_url, still, adds=4)  # position 6, snapshot at 6
    seen: list[MigrationProgress] = []
    done = await _migrate(durable_url, batch=5, on_progress=seen.append)
    assert (done.scanned, done.written, done.failed) == (15, 15, 0)
    assert done.done and done.fraction == 1.0
    assert [p.scanned for p in seen] == [5, 10, 15, 15]
    current = tally.workflow_b().state_key
    for iid in moved:
        snap = _snapshot(durable_url, iid)
        assert (snap.position, snap.key) == (5, current)
    for iid in still:  # no event since the old snapshot: replaced in place
        snap = _snapshot(durable_url, iid)
        assert (snap.position, snap.key) == (6, current)
    again = await _migrate(durable_url, batch=5)
    assert again.scanned == 0  # everything was covered: the tracking says so


async def test_migrate_resumes_after_a_crash(sqlite_url: str) -> None:
    ids = [f"c{i:02d}" for i in range(10)]
    await _fill(sqlite_url, ids, adds=3)

    def crash(p: MigrationProgress) -> None:
        if p.scanned >= 4:
            raise KeyboardInterrupt  # what a stopped process looks like

    with pytest.raises(KeyboardInterrupt):
        await _migrate(sqlite_url, batch=4, on_progress=crash)
    with open_store(sqlite_url) as store:
        assert store.tracking_position(migration_name(tally.release_b())) is not None
    rest = await _migrate(sqlite_url, batch=4)
    assert rest.resumed_from > 0 and (rest.scanned, rest.written) == (6, 6)
    key = tally.workflow_b().state_key
    assert all(_snapshot(sqlite_url, i).key == key for i in ids)


async def test_migrate_never_blocks_traffic(sqlite_url: str) -> None:
    ids = [f"r{i:02d}" for i in range(20)]
    await _fill(sqlite_url, ids, adds=3)
    first_batch = asyncio.Event()
    served: list[tuple[str, bool]] = []  # (instance, migration still running)

    async with Engine(sqlite_url, tally.release_b()) as eng:

        def progress(p: MigrationProgress) -> None:
            first_batch.set()

        migration = asyncio.create_task(
            migrate_snapshots(eng, batch=2, rate=40, on_progress=progress)
        )
        await first_batch.wait()
        for iid in ids:
            info = await eng.send(iid, 100)
            served.append((iid, not migration.done()))
            assert info.state.amount == 1 + 2 + 3 + 4 + 100
        done = await migration
    assert done.scanned == 20 and done.failed == 0
    assert sum(running for _, running in served) >= 10


async def test_migrate_refuses_bad_settings(sqlite_url: str) -> None:
    with pytest.raises(SnapshotMigrationError, match="batch=0"):
        await _migrate(sqlite_url, batch=0)
    with pytest.raises(SnapshotMigrationError, match="rate=-1"):
        await _migrate(sqlite_url, rate=-1)


async def test_migrate_command_prints_progress(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    await _fill(url, [f"x{i}" for i in range(6)], adds=3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "engine.cli", "--store", url]
    args += ["--app", "tests.upcasters.tally:release_b", "snapshots", "migrate"]
    done = subprocess.run(
        [*args, "--batch", "4", "--rate", "1000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(
        line.strip().startswith("66.") or "4 instances" in line for line in lines
    )
    assert "6 instances looked at, 6 re-snapshotted" in done.stdout
    bad = subprocess.run(
        [*args, "--batch", "0"], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert bad.returncode == 2 and "batch=0 must be >= 1" in bad.stderr


def test_release_b_registry_is_an_app() -> None:
    assert isinstance(tally.release_b(), WorkflowRegistry)
