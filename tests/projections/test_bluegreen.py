"""A new version builds beside the serving one; reads never stop at the switch."""

from __future__ import annotations

import threading

import pytest

from projections import (
    ProjectionStateError,
    Runner,
    UnknownProjection,
    open_database,
    request_rebuild,
    status,
)
from tests.projections.conftest import Log, read_totals, tally


def _tables(db, prefix: str) -> set[str]:
    if db.dialect == "sqlite":
        rows = db.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?",
            (prefix + "%",),
        )
    else:
        rows = db.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
            "AND table_name LIKE ?",
            (prefix + "%",),
        )
    return {str(r[0]) for r in rows}


def test_reads_are_served_throughout_the_switch(urls, store, db, log: Log):
    for i in range(40):
        log.add(f"s{i}", 0, *range(1, 51))
    v1_sum = sum(t for t, _ in log.expected().values())
    with Runner(store, [tally(1)], db=db) as r1:
        r1.catch_up()
    seen: list[int] = []
    errors: list[str] = []
    first_read = threading.Event()
    done = threading.Event()

    def reader() -> None:
        with open_database(urls[1]) as rdb:
            while not done.is_set():
                try:
                    (total,) = rdb.query("SELECT SUM(total) FROM tally_totals")[0]
                    seen.append(int(total))
                except Exception as exc:
                    errors.append(repr(exc))
                first_read.set()

    t = threading.Thread(target=reader)
    t.start()
    try:
        assert first_read.wait(10)
        # Version 2 doubles every amount; built in many small transactions.
        with Runner(store, [tally(2, factor=2)], db=db, batch_size=100) as r2:
            r2.catch_up()
        after = len(seen)
        while len(seen) < after + 3 and not errors:
            pass  # the reader is running: a few reads after the switch
    finally:
        done.set()
        t.join()
    assert errors == []
    assert set(seen) == {v1_sum, 2 * v1_sum}  # only whole answers of one version
    first_v2 = seen.index(2 * v1_sum)
    assert all(x == v1_sum for x in seen[:first_v2])
    assert all(x == 2 * v1_sum for x in seen[first_v2:])  # never back
    assert _tables(db, "tally_v") == {"tally_v2_totals"}  # v1 dropped
    (s,) = status(db, store)
    assert (s.version, s.build, s.serving, s.lag_events) == (2, "tally_v2", True, 0)


def test_keep_leaves_the_old_tables(urls, store, db, log: Log):
    log.add("a", 0, 5)
    with Runner(store, [tally(1)], db=db) as r:
        r.catch_up()
    with Runner(store, [tally(2, factor=3, keep=True)], db=db) as r:
        r.catch_up()
    assert _tables(db, "tally_v") == {"tally_v1_totals", "tally_v2_totals"}
    assert read_totals(db) == {"a": (15, 1)}
    assert read_totals(db, "tally_v1_totals") == {"a": (5, 1)}


def test_older_code_refuses_to_run_against_a_newer_serving_version(store, db, log):
    log.add("a", 0, 1)
    with Runner(store, [tally(2)], db=db) as r:
        r.catch_up()
    with (
        Runner(store, [tally(1)], db=db) as r,
        pytest.raises(ProjectionStateError, match="version 2 serves reads"),
    ):
        r.catch_up()


def test_rebuild_builds_the_same_version_again_and_switches(urls, store, db, log):
    log.add("a", 0, 5, 6)
    with Runner(store, [tally(1)], db=db) as r:
        r.catch_up()
        # Damage the serving table: a rebuild restores it from the log.
        db_url_tx = r.db
        with db_url_tx.transaction() as tx:
            tx.execute("DELETE FROM tally_v1_totals")
        assert read_totals(db) == {}
        build = request_rebuild(db, "tally")
        assert build == "tally_v1_r1"
        with pytest.raises(ProjectionStateError, match="already being built"):
            request_rebuild(db, "tally")
        log.add("a", 1)
        r.catch_up()
    assert read_totals(db) == {"a": (12, 3)}
    (s,) = status(db, store)
    assert (s.build, s.state, s.serving) == ("tally_v1_r1", "serving", True)
    assert _tables(db, "tally_v") == {"tally_v1_r1_totals"}
    with pytest.raises(UnknownProjection, match="known: tally"):
        request_rebuild(db, "nope")


def test_rebuild_refuses_another_version_and_a_first_build(store, db, log):
    log.add("a", 0, 1)
    with Runner(store, [tally(1)], db=db) as r:
        r.catch_up()
    with pytest.raises(ProjectionStateError, match="the code has version 2"):
        request_rebuild(db, "tally", version=2)
    assert request_rebuild(db, "tally", version=1) == "tally_v1_r1"
    with Runner(store, [tally(1)], db=db) as r:
        r.catch_up()
    # A projection whose first build has not caught up cannot be rebuilt yet.
    from tests.projections.test_failures import Fragile

    log.add("b", 0, 13)
    with Runner(store, [Fragile().projection], db=db) as r:
        r.catch_up()
    with pytest.raises(
        ProjectionStateError, match=r"already being built \(fragile_v1\)"
    ):
        request_rebuild(db, "fragile")
