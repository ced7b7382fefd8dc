"""Catch-up in batches, tracking in the read-model database, lag, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.store import open_store
from projections import Runner, open_database, status
from tests.conftest import _fresh_pg
from tests.projections.conftest import Log, read_totals, tally


def test_catch_up_folds_the_log_in_batches(urls, store, db, log: Log):
    for i in range(7):
        log.add(f"s{i}", 0, *range(1, 6))
    with Runner(store, [tally()], db=db, batch_size=4) as runner:
        applied = runner.catch_up()
        # Only the handled type is read: 7 streams x 5 Added.
        assert applied == 35
        assert read_totals(db) == log.expected()
        assert runner.catch_up() == 0
        head = log.add("s0", 10)
        assert runner.catch_up() == 1
        assert runner.positions["tally"] == head
    assert read_totals(db) == log.expected()


def test_a_new_runner_resumes_from_the_stored_position(urls, store, db, log: Log):
    log.add("a", 0, 1, 2)
    with Runner(store, [tally()], db=db) as runner:
        runner.catch_up()
    log.add("a", 3)
    log.add("b", 0, 4)
    with Runner(store, [tally()], db=db) as runner:
        assert runner.catch_up() == 2  # only the two new Added events
    assert read_totals(db) == {"a": (6, 3), "b": (4, 1)}


def test_status_reports_lag_in_events_and_seconds(urls, store, db, log: Log):
    log.add("a", 0, 1)
    with Runner(store, [tally()], db=db) as runner:
        runner.catch_up()
        (s,) = status(db, store)
        assert (s.name, s.version, s.state, s.serving) == ("tally", 1, "serving", True)
        assert s.position == store.last_global_position() and s.lag_events == 0
        assert s.lag_seconds == 0.0
        log.add("a", 2, 3)
        (s,) = status(db, store)
        assert s.lag_events == 2 and s.lag_seconds >= 0.0
        runner.catch_up()
        assert status(db, store)[0].lag_events == 0


def test_unhandled_types_advance_the_position(urls, store, db, log: Log):
    log.add("a", 0, 5)
    log.note("a", "hello")
    log.note("a", "again")
    with Runner(store, [tally()], db=db) as runner:
        runner.catch_up()
    (s,) = status(db, store)
    assert s.position == store.last_global_position() and s.lag_events == 0


@pytest.mark.postgres
def test_read_model_in_another_database_than_the_events(tmp_path: Path):
    sqlite_url = f"sqlite:///{tmp_path / 'e.db'}"
    for pg_url in _fresh_pg():
        for events_url, db_url in ((sqlite_url, pg_url), (pg_url, sqlite_url)):
            store = open_store(events_url)
            log = Log(store)
            log.add(f"from-{events_url[:6]}", 0, 2, 3)
            with Runner(store, [tally()], db=db_url) as runner:
                runner.catch_up()
                assert read_totals(runner.db)[f"from-{events_url[:6]}"] == (5, 2)
            store.close()


def test_two_runners_at_once_never_apply_an_event_twice(urls, store, db, log: Log):
    for i in range(20):
        log.add(f"s{i}", 0, *range(1, 11))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            # One store (thread-safe), a connection to the read model each.
            with Runner(store, [tally()], db=urls[1], batch_size=7) as r:
                r.catch_up()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [repr(e) for e in errors] == []
    assert read_totals(db) == log.expected()


def test_the_runner_can_own_the_store_and_database(urls, log: Log):
    log.add("x", 0, 9)
    with Runner(urls[0], [tally()]) as runner:
        runner.catch_up()
        assert read_totals(runner.db) == {"x": (9, 1)}


def test_db_is_needed_when_the_store_is_an_object(store):
    from projections import ProjectionDefinitionError

    with pytest.raises(ProjectionDefinitionError, match="pass db="):
        Runner(store, [tally()])


def test_open_database_rejects_unknown_schemes():
    from projections import ReadModelUnavailable

    with pytest.raises(ReadModelUnavailable, match="unknown scheme 'mongodb'"):
        open_database("mongodb://x")
    with pytest.raises(ReadModelUnavailable, match="no usable file path"):
        open_database("sqlite:///no/such/dir/x.db")
