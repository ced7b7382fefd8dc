"""The outbox port on every adapter: written with the events, claimed, finished."""

from __future__ import annotations

import pytest

from engine import ConcurrencyConflict, Engine, EventStore
from engine.core.effects import CancelTimers, OutboxItem
from engine.runtime.handlers import ManualClock
from engine.store import NewRecord

from . import flows

HOUR = 3_600_000_000


def _item(i: str, kind: str = "effect", due: int = 0) -> OutboxItem:
    return OutboxItem(i, kind, "s", "sales@1", "Charge", 1, b"\x90", due)  # type: ignore[arg-type]


async def test_requests_are_written_with_the_events(engine: Engine) -> None:
    await engine.start("sales", flows.Buy(5), instance_id="a")
    rows = {e.id: e for e in engine.store.outbox().entries()}
    assert set(rows) == {"a@2#1", "a#timer:unpaid"}
    effect, timer = rows["a@2#1"], rows["a#timer:unpaid"]
    assert (effect.item.kind, effect.item.name, effect.item.version) == (
        "effect",
        "Charge",
        1,
    )
    assert effect.item.workflow == "sales@1" and effect.status == "pending"
    assert timer.item.kind == "timer" and timer.item.name.endswith(":Expire")
    started = engine.store.read_stream("a")[-1]
    assert timer.item.due_at - effect.item.due_at >= HOUR - 10_000_000
    assert started.position == 2


def test_a_conflicting_append_writes_no_outbox_row(store: EventStore) -> None:
    store.append([NewRecord("s", 1, "t", b"x")])
    with pytest.raises(ConcurrencyConflict):
        store.append([NewRecord("s", 1, "t", b"y", (_item("s@1#1"),))])
    assert store.outbox().entries() == []


def test_claim_leases_until_the_lease_runs_out(store: EventStore) -> None:
    clock = ManualClock()
    now = clock.now()
    store.append([NewRecord("s", 1, "t", b"x", (_item("e1", due=now),))])
    box = store.outbox()
    assert [e.id for e in box.claim("effect", now=now, lease=HOUR, limit=10)] == ["e1"]
    assert box.claim("effect", now=now, lease=HOUR, limit=10) == []
    assert box.claim("timer", now=now + 2 * HOUR, lease=HOUR, limit=10) == []
    again = box.claim("effect", now=now + HOUR, lease=HOUR, limit=10)
    assert [e.id for e in again] == ["e1"]
    assert box.finish([("e1", "done", 1, None)], now) == 1
    assert box.finish([("e1", "done", 1, None)], now) == 0  # finished once
    assert box.claim("effect", now=now + 9 * HOUR, lease=HOUR, limit=10) == []
    got = box.get("e1")
    assert got is not None and got.status == "done" and got.attempts == 1


def test_timers_are_not_due_early_and_cancel_by_id_or_stream(
    store: EventStore,
) -> None:
    now = ManualClock().now()
    items = (_item("t1", "timer", now + HOUR), _item("t2", "timer", now + HOUR))
    store.append([NewRecord("s", 1, "t", b"x", items)])
    box = store.outbox()
    assert box.claim("timer", now=now, lease=HOUR, limit=10) == []
    store.append([NewRecord("s", 2, "t", b"x", (CancelTimers("s", ("t1",)),))])
    due = box.claim("timer", now=now + HOUR, lease=HOUR, limit=10)
    assert [e.id for e in due] == ["t2"]
    store.append([NewRecord("s", 3, "t", b"x", (_item("t3", "timer", now),))])
    # The instance ends: its pending timers are cancelled, but not t2, which a
    # runner holds (being delivered: its outcome is recorded).
    store.append([NewRecord("s", 4, "t", b"x", (CancelTimers("s"),))])
    statuses = {e.id: e.status for e in box.entries(kind="timer")}
    assert statuses == {"t1": "cancelled", "t2": "pending", "t3": "cancelled"}
    # A cancel by id takes a held timer too; its delivery is still recorded.
    store.append([NewRecord("s", 5, "t", b"x", (CancelTimers("s", ("t2",)),))])
    assert box.get("t2").status == "cancelled"  # type: ignore[union-attr]
    assert box.finish([("t2", "done", 1, None), ("t1", "done", 1, None)], now) == 1
    statuses = {e.id: e.status for e in box.entries()}
    assert statuses == {"t1": "cancelled", "t2": "done", "t3": "cancelled"}


def test_failed_rows_retry_or_cancel_and_count_as_pending(store: EventStore) -> None:
    now = ManualClock().now()
    rows = (_item("e1", due=now), _item("e2", due=now), _item("e3", due=now))
    store.append([NewRecord("s", 1, "t", b"x", rows)])
    box = store.outbox()
    box.claim("effect", now=now, lease=HOUR, limit=10)
    box.finish([("e1", "failed", 3, "boom"), ("e2", "failed", 3, "boom")], now)
    assert [e.id for e in box.entries(status="failed")] == ["e1", "e2"]
    [p] = box.pending()
    assert (p.workflow, p.kind, p.name, p.version, p.count) == (
        "sales@1",
        "effect",
        "Charge",
        1,
        3,
    )
    assert box.retry("e1", now) and not box.retry("e1", now)
    assert not box.retry("nope", now)
    assert box.cancel("e2", now) and not box.cancel("e2", now)
    e1 = box.get("e1")
    assert e1 is not None and (e1.status, e1.attempts, e1.error) == ("pending", 0, None)
    assert [e.id for e in box.claim("effect", now=now, lease=HOUR, limit=10)] == ["e1"]


async def test_setting_a_keyed_timer_again_rearms_it(engine: Engine) -> None:
    await engine.start("sales", flows.Buy(5), instance_id="a")
    box = engine.store.outbox()
    await engine.send("a", flows.Drop())
    dropped = box.get("a#timer:unpaid")
    assert dropped is not None and dropped.status == "cancelled"
    assert box.claim("timer", now=dropped.item.due_at, lease=HOUR, limit=5) == []
    await engine.send("a", flows.Buy(7))
    again = box.get("a#timer:unpaid")
    assert again is not None and again.status == "pending"
    assert again.item.due_at >= dropped.item.due_at
    due = box.claim("timer", now=again.item.due_at, lease=HOUR, limit=5)
    assert [e.id for e in due] == ["a#timer:unpaid"]
    assert len(box.entries(kind="effect")) == 2


def test_open_work_is_counted_through_an_index(sqlite_url: str) -> None:
    """Counting what is pending reads the open rows, not the table's history."""
    import sqlite3

    from engine import open_store
    from engine.store.outbox import TABLE

    open_store(sqlite_url).close()  # creates the tables and indexes
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN SELECT workflow, kind, name, version, count(*) "
            f"FROM {TABLE} WHERE status IN ('pending', 'failed') "
            "GROUP BY workflow, kind, name, version"
        ).fetchall()
    text = " ".join(str(row[3]) for row in plan)
    assert f"USING COVERING INDEX {TABLE}_open" in text or (
        f"USING INDEX {TABLE}_open" in text
    ), text
