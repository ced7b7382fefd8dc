"""A failing handler stops its projection at the event, names it; others go on."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from engine.store import NewRecord
from projections import (
    ALL,
    Projection,
    ProjectionStateError,
    Runner,
    Tx,
    UnknownProjection,
    resume,
    skip,
    skips,
    status,
)
from tests.projections.conftest import Log, read_totals, tally


class Fragile:
    """A projection whose handler raises on ``by == 13`` while ``broken``."""

    def __init__(self, *, batch: bool = False) -> None:
        self.broken = True
        p = Projection("fragile", tables=["seen"])

        @p.setup
        def create(tx: Tx) -> None:
            tx.execute(f"CREATE TABLE {tx.table('seen')} (gp BIGINT PRIMARY KEY)")

        def one(tx: Tx, e) -> None:
            if self.broken and e.event.by == 13:
                raise RuntimeError("unlucky 13")
            tx.execute(
                f"INSERT INTO {tx.table('seen')} (gp) VALUES (?)", (e.global_position,)
            )

        if batch:

            @p.on_batch("test.proj.Added")
            def many(tx: Tx, events: Sequence) -> None:
                for e in events:
                    one(tx, e)
        else:
            p.on("test.proj.Added")(one)
        self.projection = p


def _seen(db) -> list[int]:
    # The build's own table: a build that never caught up has no view yet.
    return sorted(int(r[0]) for r in db.query("SELECT gp FROM fragile_v1_seen"))


def _by_name(db, store):
    return {s.name: s for s in status(db, store)}


@pytest.mark.parametrize("batch", [False, True], ids=["per-event", "batch"])
def test_failure_stops_only_that_projection_and_names_the_event(store, db, log, batch):
    log.add("a", 0, 1, 2)
    bad = log.add("b", 0, 3, 13)
    log.add("c", 0, 4)
    fragile = Fragile(batch=batch)
    with Runner(store, [fragile.projection, tally()], db=db, batch_size=50) as r:
        r.catch_up()
        now = _by_name(db, store)
        assert now["tally"].state == "serving" and now["tally"].lag_events == 0
        f = now["fragile"].failure
        assert now["fragile"].state == "failed" and f is not None
        assert (f.global_position, f.stream_id, f.stream_position, f.type) == (
            bad,
            "b",
            3,
            "test.proj.Added",
        )
        assert f.error == "RuntimeError: unlucky 13"
        assert "unlucky 13" in f.describe() and "'b'" in f.describe()
        # Everything before the failing event is applied, nothing after it.
        assert _seen(db) == [2, 3, 5]
        assert now["fragile"].position == 5
        log.add("a", 6)  # the failed projection stays put, the other follows
        r.catch_up()
        now = _by_name(db, store)
        assert now["fragile"].position == 5 and now["tally"].lag_events == 0
        # Resume with the handler still broken: it fails again, same event.
        assert [x.global_position for x in resume(db, "fragile")] == [bad]
        r.catch_up()
        assert _by_name(db, store)["fragile"].failure.global_position == bad
        fragile.broken = False
        resume(db, "fragile")
        r.catch_up()
    assert _seen(db) == [2, 3, 5, 6, 8, 9]
    assert _by_name(db, store)["fragile"].failure is None
    assert read_totals(db)["b"] == (16, 2)


def test_skip_is_recorded_and_moves_past_the_event(store, db, log: Log):
    log.add("a", 0, 13, 1)
    fragile = Fragile()
    with Runner(store, [fragile.projection], db=db) as r:
        r.catch_up()
        with pytest.raises(ProjectionStateError, match="needs a reason"):
            skip(db, "fragile", "  ")
        (skipped,) = skip(db, "fragile", "bad data from the import on Monday")
        assert skipped.global_position == 2
        r.catch_up()
    assert _seen(db) == [3]
    (row,) = skips(db, "fragile")
    assert row["reason"] == "bad data from the import on Monday"
    assert (row["global_position"], row["stream_id"], row["type"]) == (
        2,
        "a",
        "test.proj.Added",
    )
    assert "unlucky 13" in row["error"]
    with pytest.raises(ProjectionStateError, match="has not failed"):
        skip(db, "fragile", "again")
    with pytest.raises(UnknownProjection, match="'nope'"):
        resume(db, "nope")


def test_an_undecodable_event_fails_the_projection(store, db, log: Log):
    log.add("a", 0, 1)
    (gp,) = store.append([NewRecord("a", 3, "test.proj.Added", b"\xc1garbage")])
    log.add("z", 0, 2)
    every = Projection("every", tables=["n"])

    @every.setup
    def create(tx: Tx) -> None:
        tx.execute(f"CREATE TABLE {tx.table('n')} (type TEXT)")

    @every.on(ALL)
    def count(tx: Tx, e) -> None:
        tx.execute(f"INSERT INTO {tx.table('n')} (type) VALUES (?)", (e.type,))

    with Runner(store, [every], db=db) as r:
        r.catch_up()
    f = _by_name(db, store)["every"].failure
    assert f is not None and f.global_position == gp and f.stream_position == 3
    assert f.error.startswith("EventDecodeError: cannot decode event")
    assert len(db.query("SELECT * FROM every_v1_n")) == 2  # Started, Added before it
