"""Commits in doubt end to end: an engine on PostgreSQL whose replies are lost.

The engine's connections go through :class:`tests.proxy.Proxy`. For a chosen
append the proxy lets the server commit, then resets the client's connection
before the reply arrives. Every entry point must tell its caller the truth
(``applied=True`` at the real position, never ``InstanceExists`` for its own
start), store exactly one copy of each command's events, and keep positions
contiguous.

Each test injects ``NONSTOP_TRIALS`` lost replies (10 by default; the issue's
target run is ``NONSTOP_TRIALS=100``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from engine import (
    Context,
    Engine,
    EventStore,
    InstanceInfo,
    Send,
    Start,
    Status,
    Tracking,
    Workflow,
    WorkflowRegistry,
    event,
    open_store,
)
from engine.kafka.publisher import EVENT_ID, Publisher
from engine.kafka.worker import Message, Worker
from engine.store.postgres import PostgresStore
from projections import Projection, Runner, Tx, open_database
from tests.kafka import conftest as kafka_conftest
from tests.kafka.conftest import (
    FAST_GROUP,
    Produced,
    create_topic,
    produce,
    tracked,
    wait_until,
)
from tests.proxy import Proxy

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

TRIALS = int(os.environ.get("NONSTOP_TRIALS", "10"))
"""Lost replies injected per entry point."""


# ----------------------------------------------------------- a tagged workflow
# Every command carries a tag that ends up in its event's bytes: a marker the
# proxy finds in the append, and in no read.


class Open(msgspec.Struct, frozen=True):
    tag: str


class Add(msgspec.Struct, frozen=True):
    tag: str


@event("tests.indoubt.Opened")
class Opened(msgspec.Struct, frozen=True):
    tag: str


@event("tests.indoubt.Added")
class Added(msgspec.Struct, frozen=True):
    tag: str


class Tags(msgspec.Struct, frozen=True):
    tags: tuple[str, ...] = ()


def _evolve(state: Tags, e: Any) -> Tags:
    if isinstance(e, Opened | Added):
        return Tags((*state.tags, e.tag))
    return state


def _decide(state: Tags, cmd: Any, ctx: Context) -> list[Any]:
    if isinstance(cmd, Open):
        return [Opened(cmd.tag)]
    return [Added(cmd.tag)]


def _status(state: Tags) -> Status:
    return "running"


def registry() -> WorkflowRegistry:
    """The one-workflow registry: ``tagged`` v1."""
    reg = WorkflowRegistry()
    reg.register(
        Workflow(
            name="tagged",
            version=1,
            state_type=Tags,
            initial=Tags,
            decide=_decide,
            evolve=_evolve,
            status=_status,
        )
    )
    return reg


# ------------------------------------------------------------------- fixtures

kafka = kafka_conftest.kafka
"""A Tansu broker (the Kafka tests' fixture)."""


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    parts = urlsplit(pg_url)
    p = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    p.start()
    yield p
    p.close()


@pytest.fixture
def direct(pg_url: str) -> Iterator[EventStore]:
    """The same store, straight to the server: what was really stored."""
    s = open_store(pg_url)
    yield s
    s.close()


def through(proxy: Proxy, pg_url: str) -> PostgresStore:
    """The store whose connections go through ``proxy``."""
    return PostgresStore(proxy.url(pg_url), pool_size=2, pool_timeout=5)


def mark(kind: str, i: int) -> str:
    """A tag unique to one injection."""
    return f"lost-{kind}-{i:04d}"


async def dropped(proxy: Proxy) -> None:
    """The reply was really dropped (the injection happened).

    Waited for: a direct read may see the commit before the proxy has read
    the server's reply.
    """
    hit = await asyncio.to_thread(proxy.dropped.wait, 10)
    assert hit, "the marked append never reached the proxy"


def count_tag(store: EventStore, iid: str, tag: str) -> int:
    """Events of ``iid`` (not ``Started``, whose input holds it too) holding ``tag``."""
    return sum(
        r.type != "nonstop.Started" and tag.encode() in bytes(r.data)
        for r in store.read_stream(iid)
    )


def global_contiguous(store: EventStore) -> None:
    """Global positions have no holes made by a rolled-back duplicate."""
    rows = store.read_all(limit=100_000)
    stream_counts: dict[str, int] = {}
    for r in rows:
        stream_counts[r.stream_id] = stream_counts.get(r.stream_id, 0) + 1
        assert r.position == stream_counts[r.stream_id], r


# ------------------------------------------------------------- engine entries


@pytest.mark.parametrize("command_id", [False, True], ids=["no-id", "with-id"])
async def test_start_with_a_lost_reply_is_applied_once_and_told_so(
    pg_url: str, proxy: Proxy, direct: EventStore, command_id: bool
) -> None:
    async with asyncio.timeout(240), Engine(through(proxy, pg_url), registry()) as e:
        await e.start("tagged", Open("warm"), instance_id="warm")
        for i in range(TRIALS):
            tag = mark("start", i)
            iid = f"start-{i}"
            cid = f"cmd-{tag}" if command_id else None
            proxy.drop_reply_to(tag.encode())
            info = await e.start("tagged", Open(tag), instance_id=iid, command_id=cid)
            await dropped(proxy)
            assert (info.applied, info.position) == (True, 2)
            assert info.state.tags == (tag,)
            assert len(direct.read_stream(iid)) == 2
            assert count_tag(direct, iid, tag) == 1
            if cid is not None:  # the repeat is answered, not applied
                again = await e.start(
                    "tagged", Open(tag), instance_id=iid, command_id=cid
                )
                assert (again.applied, again.position) == (False, 2)
    assert len(direct.read_all(limit=100_000)) == 2 * (TRIALS + 1)
    global_contiguous(direct)


@pytest.mark.parametrize("command_id", [False, True], ids=["no-id", "with-id"])
async def test_send_with_a_lost_reply_is_applied_once_and_told_so(
    pg_url: str, proxy: Proxy, direct: EventStore, command_id: bool
) -> None:
    async with asyncio.timeout(240), Engine(through(proxy, pg_url), registry()) as e:
        await e.start("tagged", Open("first"), instance_id="s")
        for i in range(TRIALS):
            tag = mark("send", i)
            cid = f"cmd-{tag}" if command_id else None
            proxy.drop_reply_to(tag.encode())
            info = await e.send("s", Add(tag), command_id=cid)
            await dropped(proxy)
            assert (info.applied, info.position) == (True, 3 + i)
            assert info.state.tags[-1] == tag
            assert count_tag(direct, "s", tag) == 1
            if cid is not None:
                again = await e.send("s", Add(tag), command_id=cid)
                assert (again.applied, again.position) == (False, 3 + i)
    stored = direct.read_stream("s")
    assert [r.position for r in stored] == list(range(1, TRIALS + 3))
    async with Engine(pg_url, registry()) as fresh:  # a fold of the stored log
        assert (await fresh.get("s")).state.tags == (
            "first",
            *(mark("send", i) for i in range(TRIALS)),
        )
    global_contiguous(direct)


async def test_handle_batch_with_tracking_and_a_lost_reply_is_applied_once(
    pg_url: str, proxy: Proxy, direct: EventStore
) -> None:
    async with asyncio.timeout(240), Engine(through(proxy, pg_url), registry()) as e:
        await e.start("tagged", Open("first"), instance_id="b")
        for i in range(TRIALS):
            tag = mark("batch", i)
            # Odd trials lose the reply to this batch's COMMIT (committed);
            # even ones the reply to its insert (rolled back, then retried).
            if i % 2:
                proxy.drop_reply_to(b"COMMIT", after=tag.encode())
            else:
                proxy.drop_reply_to(tag.encode())
            results = await e.handle_batch(
                [
                    Start("tagged", Open(tag), instance_id=f"b-{i}"),
                    Send("b", Add(tag)),
                    Send(f"b-{i}", Add(tag + "-2"), command_id=f"cmd-{tag}"),
                ],
                tracking=Tracking("partition-0", i + 1),
            )
            await dropped(proxy)
            assert all(isinstance(r, InstanceInfo) and r.applied for r in results)
            positions = [r.position for r in results]  # type: ignore[union-attr]
            assert positions == [2, 2 + i + 1, 3]
            assert direct.tracking_position("partition-0") == i + 1
            assert count_tag(direct, "b", tag) == 1
            assert len(direct.read_stream(f"b-{i}")) == 3
    assert [r.position for r in direct.read_stream("b")] == list(range(1, TRIALS + 3))
    global_contiguous(direct)


async def test_a_group_of_concurrent_callers_with_a_lost_reply_is_applied_once(
    pg_url: str, proxy: Proxy, direct: EventStore
) -> None:
    ids = [f"g{k}" for k in range(8)]
    async with asyncio.timeout(240), Engine(through(proxy, pg_url), registry()) as e:
        await asyncio.gather(
            *(e.start("tagged", Open("0"), instance_id=k) for k in ids)
        )
        grouped = 0
        for i in range(TRIALS):
            tag = mark("group", i)
            # The last caller's records travel in a group commit (the first
            # caller's write is in flight when the others queue).
            proxy.drop_reply_to(tag.encode())
            before = e.commits
            infos = await asyncio.gather(
                *(
                    e.send(k, Add(tag if n == len(ids) - 1 else f"{i}-{k}"))
                    for n, k in enumerate(ids)
                )
            )
            await dropped(proxy)
            grouped += e.commits - before < len(ids)
            for info in infos:
                assert (info.applied, info.position) == (True, 3 + i)
            # A group of starts: nobody hears InstanceExists for its own.
            proxy.drop_reply_to(tag.encode() + b"-start")
            before = e.commits
            started = await asyncio.gather(
                *(
                    e.start(
                        "tagged",
                        Open(f"{tag}-start" if n == len(ids) - 1 else f"{i}-{k}"),
                        instance_id=f"{k}-{i}",
                    )
                    for n, k in enumerate(ids)
                )
            )
            await dropped(proxy)
            grouped += e.commits - before < len(ids)
            for info in started:
                assert (info.applied, info.position) == (True, 2)
        assert grouped == 2 * TRIALS  # the group writer carried the lost replies
    for k in ids:
        assert [r.position for r in direct.read_stream(k)] == list(range(1, TRIALS + 3))
    assert count_tag(direct, ids[-1], "lost-group-") == TRIALS
    for i in range(TRIALS):
        for k in ids:
            assert [r.position for r in direct.read_stream(f"{k}-{i}")] == [1, 2]
    global_contiguous(direct)


# ------------------------------------------------------------ the Kafka worker


def tag_mapping(msg: Message) -> Start | Send | None:
    """``open:TAG`` starts instance ``KEY``; any other value ``TAG`` is added."""
    key = (msg.key or b"").decode()
    value = (msg.value or b"").decode()
    if value.startswith("open:"):
        return Start("tagged", Open(value[5:]), instance_id=key)
    return Send(key, Add(value))


@pytest.mark.kafka
async def test_the_kafka_worker_with_lost_commit_replies_applies_each_message_once(
    kafka: str, pg_url: str, proxy: Proxy, direct: EventStore
) -> None:
    topic = await create_topic(kafka, partitions=1)
    produced = Produced(partitions=1)
    await produce(kafka, topic, [(b"w", b"open:first")], produced)
    async with asyncio.timeout(240), Engine(through(proxy, pg_url), registry()) as e:
        worker = Worker(
            e,
            bootstrap=kafka,
            topics=[topic],
            group="g",
            mapping=tag_mapping,
            consumer_options=FAST_GROUP,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))

        async def tracked_all() -> bool:
            if task.done():
                task.result()  # surface a crash
            now = await asyncio.to_thread(tracked, direct, "g", topic, 1)
            return now == produced.ends

        try:
            await wait_until(tracked_all, 60, "the open message")
            for i in range(TRIALS):
                tag = mark("worker", i)
                # Odd trials: the batch commits, the reply to its COMMIT is
                # lost. Even ones: the reply to its insert (rolled back, retried).
                if i % 2:
                    proxy.drop_reply_to(b"COMMIT", after=tag.encode())
                else:
                    proxy.drop_reply_to(tag.encode())
                await produce(kafka, topic, [(b"w", tag.encode())], produced)
                await wait_until(tracked_all, 60, f"message {tag}")
                await dropped(proxy)
                assert count_tag(direct, "w", tag) == 1
        finally:
            stop.set()
            await task
    assert worker.stats.applied == TRIALS + 1
    assert worker.stats.dead == 0
    assert tracked(direct, "g", topic, 1) == {0: TRIALS + 1}
    stored = direct.read_stream("w")
    assert [r.position for r in stored] == list(range(1, TRIALS + 3))
    async with Engine(pg_url, registry()) as fresh:
        history = await fresh.history("w")
        ids = [ev.command_id for ev in history][1:]
        assert len(ids) == len(set(ids)) == TRIALS + 1  # each message once
    global_contiguous(direct)


# ------------------------------------------------------- the projection runner


def seen_projection() -> Projection:
    """One row per applied ``Added`` event (no key: a second apply shows)."""
    p = Projection("indoubt", version=1, tables=["seen"])

    @p.setup
    def create(tx: Tx) -> None:
        tx.execute(
            f"CREATE TABLE {tx.table('seen')} (tag TEXT NOT NULL, gp BIGINT NOT NULL)"
        )

    @p.on("tests.indoubt.Added")
    def added(tx: Tx, e: Any) -> None:
        tx.execute(
            f"INSERT INTO {tx.table('seen')} (tag, gp) VALUES (?, ?)",
            (e.event.tag, e.global_position),
        )

    return p


async def test_the_projection_runner_with_lost_commit_replies_applies_each_event_once(
    pg_url: str, proxy: Proxy, direct: EventStore
) -> None:
    runner = Runner(direct, [seen_projection()], db=proxy.url(pg_url), batch_size=1)
    stop = asyncio.Event()
    try:
        async with asyncio.timeout(240), Engine(pg_url, registry()) as e:
            await e.start("tagged", Open("first"), instance_id="p")
            task = asyncio.create_task(runner.run(stop))
            try:
                for i in range(TRIALS):
                    tag = mark("projection", i)
                    # Odd trials: the batch (position and row) commits, the
                    # reply to its COMMIT is lost. Even ones: the reply to the
                    # row's insert (rolled back, applied again).
                    if i % 2:
                        proxy.drop_reply_to(b"COMMIT", after=tag.encode())
                    else:
                        proxy.drop_reply_to(tag.encode())
                    await e.send("p", Add(tag))
                    gp = direct.last_global_position()
                    await runner.wait_for("indoubt", gp, timeout=60)
                    await dropped(proxy)
            finally:
                stop.set()
                await task
        with open_database(pg_url) as db:
            rows = db.query("SELECT tag, gp FROM indoubt_seen ORDER BY gp")
        assert [r[0] for r in rows] == [mark("projection", i) for i in range(TRIALS)]
        assert len({r[1] for r in rows}) == TRIALS
    finally:
        runner.close()


# -------------------------------------------------------------- the publisher


async def _published_ids(kafka: str, topic: str, expected: set[str]) -> list[str]:
    """Every ``nonstop-event-id`` on ``topic`` (read until ``expected`` are seen)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest"
    )
    await consumer.start()
    ids: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not expected <= set(ids):
                batches = await consumer.getmany(timeout_ms=500)
                for recs in batches.values():
                    for rec in recs:
                        ids.extend(v.decode() for k, v in rec.headers if k == EVENT_ID)
    finally:
        await consumer.stop()
    return ids


@pytest.mark.kafka
async def test_the_publisher_with_lost_tracking_replies_never_skips_an_event(
    kafka: str, pg_url: str, proxy: Proxy, direct: EventStore
) -> None:
    topic = await create_topic(kafka, partitions=1)
    store = through(proxy, pg_url)
    try:
        async with asyncio.timeout(240), Engine(pg_url, registry()) as e:
            publisher = Publisher(
                store, e.codec, kafka, topic, page=5, poll_interval=0.02
            )
            stop = asyncio.Event()
            task = asyncio.create_task(publisher.run(stop))

            async def tracked_head() -> bool:
                if task.done():
                    task.result()
                head = await asyncio.to_thread(direct.last_global_position)
                at = await asyncio.to_thread(direct.tracking_position, publisher.name)
                return at == head

            try:
                for i in range(TRIALS):
                    tag = mark("publisher", i)
                    # The tracking write after the page commits; its reply is lost.
                    proxy.drop_reply_to(b"COMMIT", after=publisher.name.encode())
                    await e.start("tagged", Open(tag), instance_id=f"pub-{i}")
                    await wait_until(tracked_head, 60, f"events of {tag}")
                    await dropped(proxy)
            finally:
                stop.set()
                await task
    finally:
        store.close()
    rows = direct.read_all(limit=100_000)
    expected = {f"{r.stream_id}:{r.position}" for r in rows}
    assert len(expected) == 2 * TRIALS
    ids = await _published_ids(kafka, topic, expected)
    # At least once: every event is published; a lost reply may repeat a page.
    assert expected <= set(ids)
    assert direct.tracking_position(publisher.name) == rows[-1].global_position
