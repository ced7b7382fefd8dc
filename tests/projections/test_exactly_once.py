"""Crashes between the handlers and the commit never apply an event twice."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.store import open_store
from projections import Database, Runner, Tx, open_database
from tests.conftest import _fresh_pg
from tests.projections.conftest import Log, read_totals, tally


class Crash(BaseException):
    """The process dies: nothing after this point runs."""


class CrashingDatabase(Database):
    """Dies right after the ``crash_at``-th transaction's body, before its commit."""

    def __init__(self, url: str, crash_at: int | None) -> None:
        inner = open_database(url)
        super().__init__(url, inner.dialect, inner._conn)
        self.crash_at = crash_at
        self.count = 0

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with super().transaction() as tx:
            yield tx
            self.count += 1
            if self.count == self.crash_at:
                raise Crash


def test_a_crash_before_every_commit_in_turn_applies_each_event_once(urls):
    store = open_store(urls[0])
    log = Log(store)
    for i in range(5):
        log.add(f"s{i}", 0, *range(1, 8))
    crash_at = 1
    crashes = 0
    while True:
        db = CrashingDatabase(urls[1], crash_at)
        runner = Runner(store, [tally()], db=db, batch_size=3)
        try:
            runner.catch_up()
        except Crash:
            crashes += 1
            crash_at += 1  # the restarted process gets one step further
            db.close()
            continue
        db.close()
        break
    assert crashes > 10  # every kind of transaction crashed at least once
    with open_database(urls[1]) as check:
        assert read_totals(check) == log.expected()
    store.close()


_append = st.tuples(
    st.just("append"),
    st.integers(0, 3),
    st.lists(st.integers(-5, 50), min_size=1, max_size=6),
)
_catch_up = st.tuples(
    st.just("catch_up"), st.none() | st.integers(1, 12), st.integers(1, 5)
)
_restart = st.tuples(st.just("restart"), st.none(), st.none())
_ops = st.lists(st.one_of(_append, _catch_up, _restart), max_size=25)


def _play(url: str, ops: list[tuple[object, object, object]]) -> None:
    store = open_store(url)
    log = Log(store)
    db = CrashingDatabase(url, None)
    runner = Runner(store, [tally()], db=db, batch_size=2)
    try:
        for kind, a, b in ops:
            if kind == "append":
                stream = f"s{a}"
                amounts = list(b)  # type: ignore[call-overload]
                if stream not in log.lengths:
                    amounts = [0, *amounts]  # position 1 is Started
                log.add(stream, *amounts)
            elif kind == "catch_up":
                runner.batch_size = int(b)  # type: ignore[call-overload]
                db.crash_at = None if a is None else db.count + int(a)  # type: ignore[call-overload]
                try:
                    runner.catch_up()
                except Crash:
                    kind = "restart"
                else:
                    db.crash_at = None
                    assert read_totals(db) == log.expected()
            if kind == "restart":
                db.close()
                db = CrashingDatabase(url, None)
                runner = Runner(store, [tally()], db=db, batch_size=2)
        db.crash_at = None
        runner.catch_up()
        if log.totals:
            assert read_totals(db) == log.expected()
    finally:
        db.close()
        store.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=_ops)
def test_any_interleaving_folds_the_whole_log_sqlite(ops):
    with tempfile.TemporaryDirectory() as d:
        _play(f"sqlite:///{d}/e.db", ops)


@pytest.mark.postgres
@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(ops=_ops)
def test_any_interleaving_folds_the_whole_log_postgres(ops):
    for url in _fresh_pg():
        _play(url, ops)
