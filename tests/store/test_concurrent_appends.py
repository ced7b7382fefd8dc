"""PostgreSQL's concurrent append mode: appends in flight at once, no reader skips.

The guarantee under test: a reader that tails the global order
(``read_all(after=last)``, the way projections and the publisher do) sees
every committed position exactly once, in order, and never passes a position
that an append still in flight commits later.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from engine import AppendModeMismatch, StoreUnavailable
from engine.store import NewRecord
from engine.store.postgres import EVENTS_TABLE, PostgresStore
from engine.store.urls import parse_postgres_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def concurrent(pg_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_url, appends="concurrent")
    yield store
    store.close()


def _raw(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(**parse_postgres_url(url).conninfo, autocommit=True)


def _all_ids(url: str) -> list[int]:
    schema = parse_postgres_url(url).schema
    with _raw(url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT notification_id FROM {} ORDER BY 1").format(
                sql.Identifier(schema, EVENTS_TABLE)
            )
        ).fetchall()
    return [int(r[0]) for r in rows]


def _until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for ``check`` (another test's transaction may hold readers back)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _call_append(conn: psycopg.Connection[object], schema: str, stream: str) -> int:
    """One event appended through the store's own function; its position."""
    row = conn.execute(
        sql.SQL("SELECT * FROM {}(%s, %s, %s, %s)").format(
            sql.Identifier(schema, f"{EVENTS_TABLE}_append")
        ),
        [[stream], [1], ["T"], [b"x"]],
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def _held_append(url: str, stream: str) -> tuple[psycopg.Connection[object], int]:
    """An append through the store's own function, left uncommitted."""
    schema = parse_postgres_url(url).schema
    conn = _raw(url)
    conn.execute("BEGIN")
    return conn, _call_append(conn, schema, stream)


def test_the_mode_is_recorded_in_the_store_and_followed(pg_url: str) -> None:
    first = PostgresStore(pg_url, appends="concurrent")
    try:
        assert (first.appends, first.writers) == ("concurrent", 4)
        follower = PostgresStore(pg_url)  # no option: the recorded mode
        assert (follower.appends, follower.writers) == ("concurrent", 4)
        follower.close()
        with pytest.raises(AppendModeMismatch, match="nonstop store appends serial"):
            PostgresStore(pg_url, appends="serial")
        narrow = PostgresStore(f"{pg_url}&writers=1")
        assert narrow.writers == 1
        narrow.close()
        other = pg_url.replace("schema=", "schema=s")
        serial_store = PostgresStore(f"{other}&writers=4")
        assert serial_store.writers == 1  # one append in flight when serial
        serial_store.drop()
        serial_store.close()
    finally:
        first.close()


def test_a_new_store_appends_serially_with_one_writer(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        assert (store.appends, store.writers) == ("serial", 1)
    finally:
        store.close()


@pytest.mark.parametrize("bad", ["appends=parallel", "writers=0", "writers=1.5"])
def test_bad_options_name_the_value(pg_url: str, bad: str) -> None:
    with pytest.raises(StoreUnavailable, match=bad.split("=")[0]):
        PostgresStore(f"{pg_url}&{bad}")


def test_a_reader_stops_below_an_append_in_flight(
    concurrent: PostgresStore, pg_url: str
) -> None:
    concurrent.append([NewRecord("before", 1, "T", b"a")])
    held, held_id = _held_append(pg_url, "held")
    try:
        # A later append commits while the first is still in flight.
        (later_id,) = concurrent.append([NewRecord("later", 1, "T", b"b")])
        assert later_id > held_id
        assert held_id not in _all_ids(pg_url)  # the teeth: out of order
        assert later_id in _all_ids(pg_url)
        seen = [r.global_position for r in concurrent.read_all()]
        assert seen == [held_id - 1] or all(p < held_id for p in seen)
        assert later_id not in seen
        assert concurrent.last_global_position() < held_id
        waiting = concurrent.held_back()  # what an operator is shown
        assert waiting.readable < held_id <= later_id <= waiting.last
        assert waiting.positions >= 1
        held.execute("COMMIT")
        _until(lambda: concurrent.last_global_position() == later_id)
        _until(lambda: concurrent.held_back().positions == 0)
        rows = concurrent.read_all()
        assert [r.global_position for r in rows][-2:] == [held_id, later_id]
    finally:
        held.close()


def test_an_append_in_flight_does_not_block_another(
    concurrent: PostgresStore, pg_url: str
) -> None:
    held, _ = _held_append(pg_url, "held")
    try:
        done = threading.Event()

        def other() -> None:
            concurrent.append([NewRecord("other", 1, "T", b"x")])
            done.set()

        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        # Serially, this append would wait for the table lock the held one has.
        assert done.wait(10)
    finally:
        held.execute("ROLLBACK")
        held.close()


def test_a_rolled_back_append_leaves_a_gap_readers_pass(
    concurrent: PostgresStore, pg_url: str
) -> None:
    held, held_id = _held_append(pg_url, "held")
    (later_id,) = concurrent.append([NewRecord("later", 1, "T", b"b")])
    held.execute("ROLLBACK")
    held.close()
    _until(lambda: concurrent.last_global_position() == later_id)
    assert [r.global_position for r in concurrent.read_all()] == [later_id]
    assert held_id < later_id


def _write(url: str, prefix: str, appends: int, per: int) -> None:
    """Append ``appends`` times ``per`` events to streams of its own."""
    store = PostgresStore(url)
    try:
        for i in range(appends):
            store.append(
                [NewRecord(f"{prefix}-{i}-{j}", 1, "T", b"x") for j in range(per)]
            )
    finally:
        store.close()


class _Tail(threading.Thread):
    """Tails the global order the way projections do, up to a final position."""

    def __init__(self, store: PostgresStore) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.seen: list[int] = []
        self.last: int | None = None  # set once every writer is done
        self.done = threading.Event()

    def run(self) -> None:
        after = 0
        while self.last is None or after < self.last:
            rows = self.store.read_all(after=after, limit=50)
            self.seen.extend(r.global_position for r in rows)
            if rows:
                after = rows[-1].global_position
            else:
                time.sleep(0.005)
        self.done.set()

    def finish(self, committed: list[int]) -> list[int]:
        self.last = committed[-1]
        assert self.done.wait(60), "the reader never reached the last position"
        return self.seen


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_many_writers_threads_and_processes_one_reader_sees_each_once(
    concurrent: PostgresStore, pg_url: str
) -> None:
    reader_store = PostgresStore(pg_url)
    reader = _Tail(reader_store)
    reader.start()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_write, args=(pg_url, f"p{n}", 150, 3)) for n in range(3)
    ]
    for p in procs:
        p.start()
    threads = [
        threading.Thread(target=_write, args=(pg_url, f"t{n}", 150, 2))
        for n in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    committed = _all_ids(pg_url)
    assert len(committed) == 3 * 150 * 3 + 6 * 150 * 2
    assert reader.finish(committed) == committed  # each once, in order
    reader_store.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_switching_modes_live_loses_nothing(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    reader = _Tail(store)
    reader.start()
    threads = [
        threading.Thread(target=_write, args=(pg_url, f"w{n}", 200, 2))
        for n in range(4)
    ]
    for t in threads:
        t.start()
    assert store.set_appends("concurrent")
    assert store.set_appends("serial")
    assert store.set_appends("concurrent")
    assert not store.set_appends("concurrent")
    for t in threads:
        t.join(120)
    committed = _all_ids(pg_url)
    try:
        assert reader.finish(committed) == committed
        assert len(committed) == 4 * 200 * 2
        assert PostgresStore(pg_url).appends == "concurrent"
    finally:
        store.close()
    with pytest.raises(ValueError, match="'fast'"):
        store.set_appends("fast")


def test_a_store_from_before_the_modes_opens_read_only_and_serial(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    (gp,) = store.append([NewRecord("old", 1, "T", b"x")])
    store.close()
    schema = parse_postgres_url(pg_url).schema
    with _raw(pg_url) as conn:  # as an earlier release left it
        conn.execute(
            sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "nonstop_settings"))
        )
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP COLUMN tx").format(
                sql.Identifier(schema, EVENTS_TABLE)
            )
        )
    reader = PostgresStore(pg_url, create=False)
    try:
        assert reader.appends == "serial"
        assert [r.global_position for r in reader.read_all()] == [gp]
        assert reader.last_global_position() == gp
    finally:
        reader.close()
    writer = PostgresStore(pg_url)  # a writer upgrades it, rows left as they are
    try:
        (later,) = writer.append([NewRecord("new", 1, "T", b"y")])
        assert [r.global_position for r in writer.read_all()] == [gp, later]
    finally:
        writer.close()


def _advisory_locks(conn: psycopg.Connection[object], pid: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
        [pid],
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_a_failed_section_never_keeps_its_lock(
    concurrent: PostgresStore, pg_url: str
) -> None:
    schema = parse_postgres_url(pg_url).schema
    sequence = sql.Identifier(schema, f"{EVENTS_TABLE}_notification_id_seq")
    ids = concurrent.append([NewRecord(f"first{i}", 1, "T", b"x") for i in (1, 2)])
    assert ids == [1, 2]
    with _raw(pg_url) as admin, _raw(pg_url) as writer:
        pid = writer.info.backend_pid
        # The sequence runs out inside the section: nextval raises there.
        admin.execute(
            sql.SQL("ALTER SEQUENCE {} MAXVALUE 2").format(sequence)  # used up
        )
        with pytest.raises(psycopg.errors.SequenceGeneratorLimitExceeded):
            _call_append(writer, schema, "s")
        assert _advisory_locks(admin, pid) == 0
        admin.execute(sql.SQL("ALTER SEQUENCE {} NO MAXVALUE").format(sequence))
        # A statement timeout while waiting for the section: cancelled, no lock.
        admin.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", [0x6E6F6E73, schema])
        writer.execute("SET statement_timeout = 200")
        with pytest.raises(psycopg.errors.QueryCanceled):
            _call_append(writer, schema, "s")
        assert _advisory_locks(admin, pid) == 0
        admin.execute("SELECT pg_advisory_unlock_all()")
        writer.execute("SET statement_timeout = 0")
        _call_append(writer, schema, "s")
        assert _advisory_locks(admin, pid) == 0
    (gp,) = concurrent.append([NewRecord("after", 1, "T", b"x")])
    _until(lambda: concurrent.last_global_position() == gp)


def test_an_ending_append_takes_its_transaction_id_in_the_section(
    concurrent: PostgresStore, pg_url: str
) -> None:
    # An instance that ends cancels its pending timers in the same statement.
    # That write must not take the transaction id before the positions: else
    # an append that took lower positions meanwhile, still in flight, is
    # passed by readers once this one commits.
    schema = parse_postgres_url(pg_url).schema
    events = sql.Identifier(schema, EVENTS_TABLE)
    with _raw(pg_url) as admin, _raw(pg_url) as ender, _raw(pg_url) as other:
        admin.execute(
            sql.SQL(
                "INSERT INTO {} VALUES ('t1', 'timer', 'ends', 'w', 'n', 1, "
                "'\\x00', 0, 'pending', 0, NULL, 0, 0, 0)"
            ).format(sql.Identifier(schema, "nonstop_outbox"))
        )
        admin.execute("BEGIN")
        admin.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(events))

        def end() -> None:
            ender.execute(
                sql.SQL("SELECT * FROM {}(%s, %s, %s, %s, %s, %s)").format(
                    sql.Identifier(schema, f"{EVENTS_TABLE}_append_ending")
                ),
                [["ends"], [1], ["T"], [b"x"], ["ends"], 1],
            )

        thread = threading.Thread(target=end, daemon=True)
        thread.start()
        _until(  # the ending append waits for the table
            lambda: bool(
                admin.execute(
                    "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted",
                    [ender.info.backend_pid],
                ).fetchone()
                == (1,)
            )
        )
        # Another append takes its positions (and id) meanwhile, and stays open.
        other.execute("BEGIN")
        row = other.execute(
            sql.SQL("SELECT {}(1)").format(
                sql.Identifier(schema, f"{EVENTS_TABLE}_ids")
            )
        ).fetchone()
        assert row is not None
        (low,) = row[0]
        admin.execute("COMMIT")
        thread.join(30)
        assert not thread.is_alive()
        ended = max(_all_ids(pg_url))
        assert ended > low  # committed, above the one still in flight
        assert concurrent.last_global_position() < low
        assert all(r.global_position < low for r in concurrent.read_all())
        other.execute(
            sql.SQL(
                "INSERT INTO {} (notification_id, originator_id, "
                "originator_version, topic, state) VALUES (%s, 'low', 1, 'T', 'x')"
            ).format(events),
            [low],
        )
        other.execute("COMMIT")
    _until(lambda: concurrent.last_global_position() == ended)
    assert [r.global_position for r in concurrent.read_all()][-2:] == [low, ended]
