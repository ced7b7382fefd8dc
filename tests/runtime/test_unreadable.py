"""Bad stored data isolates itself: listings mark the instance and go on.

Each case writes a sound instance ``ok`` and a hand-corrupted one ``bad`` on
SQLite and PostgreSQL, then lists them with the engine, the built-in read
model and the ``nonstop`` script run from a scratch directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine, EventStore, SyncEngine, open_store
from engine.core.codec import EventCodec
from engine.core.events import Metadata, Started
from engine.store import NewRecord
from projections.instances import InstancesReadModel
from tests.conftest import PG_URL
from tests.runtime import counter
from tests.runtime.counter import Increment, Incremented, registry

NONSTOP = str(Path(sys.executable).with_name("nonstop"))
INCREMENTED = "tests.counter.Incremented"
_codec = EventCodec()

CASES = {
    # kind: (error type, what the message says, position of the bad event)
    "garbage": ("EventDecodeError", "not a nonstop envelope", 3),
    "gap": ("CorruptStream", "5 follows 3", 5),
    "no-start": ("CorruptStream", "does not begin with nonstop.Started", 1),
    "newer": ("EventFromNewerCode", "newer", 3),
}


def _data(e: object, position: int) -> bytes:
    _, data = _codec.encode(e, Metadata("counter@1"), recorded_at=position)  # type: ignore[arg-type]
    return data


def _record(sid: str, position: int, e: object) -> NewRecord:
    name, data = _codec.encode(e, Metadata("counter@1"), recorded_at=position)  # type: ignore[arg-type]
    return NewRecord(sid, position, name, data)


def _started() -> Started:
    return Started("counter", 1, "Begin", msgspec.msgpack.encode(None))


def _sound(sid: str, n: int) -> list[NewRecord]:
    return [_record(sid, 1, _started())] + [
        _record(sid, p, Incremented(1)) for p in range(2, n + 1)
    ]


def corrupt(store: EventStore, kind: str) -> None:
    """Write ``ok`` (sound, n=1) and ``bad``, corrupt as ``kind`` says."""
    store.append(_sound("ok", 2))
    if kind == "garbage":  # garbage bytes under a known type
        store.append(_sound("bad", 2))
        store.append([NewRecord("bad", 3, INCREMENTED, b"\xc1\xc1 not msgpack")])
    elif kind == "gap":
        store.append(_sound("bad", 3))
        store.append([_record("bad", 5, Incremented(1))])
    elif kind == "no-start":
        store.append([_record("bad", 1, Incremented(1))])
    else:  # an event of a schema newer than the code knows (schema 9)
        store.append(_sound("bad", 2))
        data = _data(Incremented(1), 3)
        assert data[1] == 1  # the schema, second in the envelope array
        store.append([NewRecord("bad", 3, INCREMENTED, data[:1] + b"\x09" + data[2:])])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def store(url: str) -> Iterator[EventStore]:
    s = open_store(url)
    yield s
    s.close()


@pytest.fixture(params=sorted(CASES))
def kind(request: pytest.FixtureRequest, store: EventStore) -> str:
    corrupt(store, request.param)
    return str(request.param)


def _repair(url: str, sid: str, position: int, data: bytes) -> None:
    """Overwrite one stored event's bytes by hand, as an operator would."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        with conn:
            conn.execute(
                "UPDATE nonstop_events SET state = ? "
                "WHERE originator_id = ? AND originator_version = ?",
                (data, sid, position),
            )
        conn.close()
        return
    schema = parse_qs(urlsplit(url).query)["schema"][0]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        done = conn.execute(
            f'UPDATE "{schema}".nonstop_events SET state = %s '
            "WHERE originator_id = %s AND originator_version = %s",
            (data, sid, position),
        )
        assert done.rowcount == 1


# ------------------------------------------------------------------ listing


async def test_the_listing_marks_the_bad_instance_and_goes_on(
    store: EventStore, kind: str
) -> None:
    error, says, position = CASES[kind]
    engine = Engine(store, registry())
    try:
        found = {i.instance_id: i for i in await engine.instances()}
        assert found["ok"].status == "running" and found["ok"].state.n == 1
        assert found["ok"].error is None
        assert (await engine.get("ok")).state.n == 1  # get is unaffected
        if kind == "no-start":
            # The engine lists instances by their start: this stream has none.
            assert "bad" not in found
            return
        bad = found["bad"]
        assert (bad.status, bad.position, bad.state) == ("unreadable", position, None)
        assert (bad.workflow, bad.version) == ("counter", 1)
        assert bad.error is not None and bad.error.startswith(f"{error}: ")
        assert says in bad.error and f"position {position}" in bad.error
        only = await engine.instances(status="unreadable")
        assert [i.instance_id for i in only] == ["bad"]
        assert [i.instance_id for i in await engine.instances(status="running")] == [
            "ok"
        ]
    finally:
        await engine.close()


def test_the_sync_listing_marks_it_too(store: EventStore, kind: str) -> None:
    with SyncEngine(store, registry()) as engine:
        statuses = {i.instance_id: i.status for i in engine.instances()}
    assert statuses["ok"] == "running"
    assert statuses.get("bad", "unreadable") == "unreadable"


def test_the_read_model_marks_it_and_does_not_count_it_running(
    store: EventStore, url: str, kind: str
) -> None:
    error, says, position = CASES[kind]
    with InstancesReadModel(store, registry(), db=url) as model:
        found = {i.instance_id: i for i in model.instances()}
        assert found["ok"].status == "running" and found["ok"].state.n == 1
        bad = found["bad"]
        assert (bad.status, bad.position, bad.state) == ("unreadable", position, None)
        assert bad.error is not None and bad.error.startswith(f"{error}: ")
        assert says in bad.error
        assert [i.instance_id for i in model.instances(status="unreadable")] == ["bad"]
        stats = {(s.workflow, s.version): s for s in model.version_stats()}
        assert stats[("counter", 1)].running == 1  # ok only
        unreadable = sum(s.unreadable for s in stats.values())
        assert unreadable == 1
        if kind != "no-start":
            assert stats[("counter", 1)].unreadable == 1


def test_user_projections_still_stop_at_the_bad_event(
    store: EventStore, url: str
) -> None:
    from projections import Projection, Runner, Tx, status

    corrupt(store, "garbage")
    p = Projection("seen", version=1, tables=["ids"])

    @p.setup
    def create(tx: Tx) -> None:
        tx.execute(f"CREATE TABLE {tx.table('ids')} (id TEXT, pos INTEGER)")

    @p.on(INCREMENTED)
    def seen(tx: Tx, e: object) -> None:
        tx.execute(f"INSERT INTO {tx.table('ids')} VALUES (?, ?)", ("x", 1))

    with Runner(store, [p], db=url) as runner:
        runner.catch_up()
        (s,) = [s for s in status(runner.db, runner.store) if s.name == "seen"]
    assert s.failure is not None and "EventDecodeError" in s.failure.error


# ----------------------------------------------------------------- recovery


async def test_a_repaired_stream_is_readable_again(store: EventStore, url: str) -> None:
    corrupt(store, "garbage")
    with InstancesReadModel(store, registry(), db=url) as model:
        assert {i.instance_id: i.status for i in model.instances()}["bad"] == (
            "unreadable"
        )
        _repair(url, "bad", 3, _data(Incremented(5), 3))
        engine = Engine(url, registry())
        try:
            # The engine re-reads on every listing: readable at once.
            found = {i.instance_id: i for i in await engine.instances()}
            assert (found["bad"].status, found["bad"].state.n) == ("running", 6)
            # The read model re-reads it when a new event arrives for it.
            await engine.send("bad", Increment(10))
        finally:
            await engine.close()
        bad = {i.instance_id: i for i in model.instances()}["bad"]
        assert (bad.status, bad.state.n, bad.position, bad.error) == (
            "running",
            16,
            4,
            None,
        )
        # ... and folds the events after it as usual.
        store.append([_record("bad", 5, Incremented(100))])
        bad = {i.instance_id: i for i in model.instances()}["bad"]
        assert (bad.state.n, bad.position) == (116, 5)


def test_a_repaired_stream_is_readable_on_the_next_listing(
    store: EventStore, url: str
) -> None:
    corrupt(store, "newer")
    with InstancesReadModel(store, registry(), db=url) as model:
        bad = {i.instance_id: i for i in model.instances()}["bad"]
        assert bad.status == "unreadable"
        assert model.version_stats()[0].unreadable == 1
        _repair(url, "bad", 3, _data(Incremented(7), 3))  # no new event
        bad = {i.instance_id: i for i in model.instances()}["bad"]
        assert (bad.status, bad.state.n, bad.position, bad.error) == (
            "running",
            8,
            3,
            None,
        )
        (stats,) = model.version_stats()
        assert (stats.running, stats.unreadable) == (2, 0)
        # The events after it are folded as usual.
        store.append([_record("bad", 4, Incremented(100))])
        bad = {i.instance_id: i for i in model.instances()}["bad"]
        assert (bad.state.n, bad.position) == (108, 4)


def test_an_unreadable_instance_stays_so_while_new_events_are_bad(
    store: EventStore, url: str
) -> None:
    corrupt(store, "gap")
    with InstancesReadModel(store, registry(), db=url) as model:
        model.instances()
        store.append([_record("bad", 6, Incremented(1))])
        bad = {i.instance_id: i for i in model.instances()}["bad"]
        assert bad.status == "unreadable" and bad.error is not None
        assert "5 follows 3" in bad.error


# ---------------------------------------------------------------------- CLI


def _nonstop(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NONSTOP_") and k != "PYTHONPATH"
    }
    return subprocess.run(
        [NONSTOP, "--app", "counterapp:registry", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("bad", ["garbage", "newer"])
def test_the_cli_lists_unreadable_instances(
    url: str, store: EventStore, tmp_path: Path, bad: str
) -> None:
    corrupt(store, bad)
    error, says, position = CASES[bad]
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(counter.__file__, user / "counterapp.py")
    done = _nonstop(user, "--store", url, "instances", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["instance_id"]: r for r in json.loads(done.stdout)}
    assert rows["ok"]["status"] == "running" and "error" not in rows["ok"]
    assert rows["bad"]["status"] == "unreadable"
    assert rows["bad"]["position"] == position
    assert (
        rows["bad"]["error"].startswith(f"{error}: ") and says in rows["bad"]["error"]
    )
    done = _nonstop(user, "--store", url, "instances", "--status", "unreadable")
    assert done.returncode == 0, done.stderr
    assert "bad" in done.stdout and error in done.stdout
    assert "1 instance (1 unreadable)" in done.stdout
    assert " ok " not in done.stdout
    done = _nonstop(user, "--store", url, "instances")
    assert done.returncode == 0, done.stderr
    assert "2 instances (1 running, 1 unreadable)" in done.stdout


@pytest.mark.timeout(180)
def test_projections_run_goes_past_bad_data_and_re_reads_it(
    url: str, store: EventStore, tmp_path: Path
) -> None:
    corrupt(store, "garbage")
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(counter.__file__, user / "counterapp.py")
    done = _nonstop(user, "--store", url, "projections", "run", "--once")
    assert done.returncode == 0, done.stderr
    done = _nonstop(user, "--store", url, "projections", "status")
    assert done.returncode == 0, done.stdout + done.stderr  # 1 if it had stopped
    _repair(url, "bad", 3, _data(Incremented(5), 3))
    store.append([_record("bad", 4, Incremented(10))])
    done = _nonstop(user, "--store", url, "projections", "run", "--once")
    assert done.returncode == 0, done.stderr
    with InstancesReadModel(store, registry(), db=url, fresh=False) as model:
        bad = {i.instance_id: i for i in model.instances()}["bad"]
    assert (bad.status, bad.state.n, bad.position) == ("running", 16, 4)


# ------------------------------------------------------------------ the law


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    broken=st.integers(0, 3),
    how=st.sampled_from(["garbage", "gap", "newer"]),
)
def test_engine_and_read_model_agree_on_every_instance(
    tmp_path_factory: pytest.TempPathFactory,
    lengths: list[int],
    broken: int,
    how: str,
) -> None:
    """Whatever breaks one stream, both listings say the same of every instance."""
    url = f"sqlite:///{tmp_path_factory.mktemp('law') / 'events.db'}"
    store = open_store(url)
    try:
        for i, n in enumerate(lengths):
            store.append(_sound(f"i{i}", n))
        victim = f"i{broken % len(lengths)}"
        at = len(store.read_stream(victim)) + 1
        if how == "garbage":
            store.append([NewRecord(victim, at, INCREMENTED, b"\xc1")])
        elif how == "gap":
            store.append([_record(victim, at + 1, Incremented(1))])
        else:
            data = _data(Incremented(1), at)
            store.append(
                [NewRecord(victim, at, INCREMENTED, data[:1] + b"\x09" + data[2:])]
            )
        with SyncEngine(url, registry()) as engine:
            listed = engine.instances()
        with InstancesReadModel(store, registry(), db=url) as model:
            modelled = model.instances()
        assert listed == modelled
        assert [i.instance_id for i in listed if i.status == "unreadable"] == [victim]
        for i in listed:
            if i.instance_id != victim:
                assert i.state.n == lengths[int(i.instance_id[1:])] - 1
    finally:
        store.close()
