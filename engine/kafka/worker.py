"""The Kafka worker: messages become commands, applied with exactly-once effect.

The worker consumes topics in a consumer group. A user mapping turns each
message into a :class:`~engine.Start`, a :class:`~engine.Send` or ``None``
(skip). The messages of one partition are applied in a batch with
:meth:`Engine.handle_batch <engine.runtime.Engine.handle_batch>`: the events of
every command, the dead letters of the messages that failed, and the
partition's tracking record (its next offset) commit in one transaction. The
database, not Kafka, holds the offsets that count:

- on assignment the worker seeks each partition to the offset stored with the
  events (Kafka's committed offsets are written too, for monitoring only);
- on revocation it finishes the batch in flight before giving the partition up;
- a crash between the commit and anything after it replays nothing that was
  stored, and a crash before the commit stored nothing.

Commands get a default command id (``kafka:<topic>:<partition>:<offset>``), so
even a worker that kept running after losing its partition (a stalled process
a rebalance left behind) cannot apply a message twice: the instance answers
the repeat instead of applying it.

It is a little over 500 lines: the consumer loop, the partition overlap
and the dead-letter path share the batch state of one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.abc import ConsumerRebalanceListener  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from engine.core.errors import (
    BrokerUnavailable,
    ConcurrencyConflict,
    ConflictRetriesExhausted,
    MappingError,
    MappingLoadError,
    NonstopError,
    StoreUnavailable,
)
from engine.kafka.deadletters import REPLAY_OF, message_id
from engine.loading import import_object
from engine.runtime import Engine, InstanceInfo, Send, Start
from engine.store import DeadLetter, Tracking
from engine.store.retry import Backoff, until_stopped

__all__ = [
    "TRANSIENT",
    "Mapping",
    "Message",
    "Worker",
    "WorkerStats",
    "load_mapping",
    "tracking_name",
]

log = logging.getLogger("nonstop.kafka")
T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    ConcurrencyConflict,
    ConflictRetriesExhausted,
    ConnectionError,
    OSError,
)
"""Failures retried with backoff, never dead-lettered."""
_IDS = uuid.UUID("6b1f3c58-1f0e-4c44-9a57-2a4a0f6e7d31")


class Message(msgspec.Struct, frozen=True):
    """One Kafka message, as the mapping sees it."""

    topic: str
    """Topic."""
    partition: int
    """Partition."""
    offset: int
    """Offset in the partition."""
    key: bytes | None
    """Key bytes."""
    value: bytes | None
    """Value bytes."""
    headers: tuple[tuple[str, bytes], ...] = ()
    """Headers."""
    timestamp: int = 0
    """Kafka timestamp, milliseconds since the epoch."""

    @property
    def id(self) -> str:
        """The default command id: ``kafka:<topic>:<partition>:<offset>``.

        A replayed dead letter keeps the id of the message it replays (its
        ``nonstop-replay-of`` header), so a replay applies at most once.
        """
        if self.headers:
            for name, value in self.headers:
                if name == REPLAY_OF:
                    return value.decode(errors="replace")
        return message_id(self.topic, self.partition, self.offset)

    @classmethod
    def of(cls, rec: ConsumerRecord[Any, Any]) -> Message:
        """The message of an aiokafka record."""
        headers = rec.headers
        return cls(
            rec.topic,
            rec.partition,
            rec.offset,
            rec.key,
            rec.value,
            tuple((k, bytes(v)) for k, v in headers) if headers else (),
            rec.timestamp,
        )


Mapping = Callable[[Message], Start | Send | None]
"""Turns a message into a command, or ``None`` to skip it; raising dead-letters it."""


def load_mapping(spec: str) -> Mapping:
    """Import ``MODULE:ATTRIBUTE`` naming a mapping function.

    Raises:
        MappingLoadError: the module or attribute is missing or not callable.
    """
    target = import_object(spec, MappingLoadError)
    attr = spec.partition(":")[2]
    if not callable(target):
        raise MappingLoadError(spec, f"{attr} is a {type(target).__name__}")
    mapping: Mapping = target
    return mapping


def tracking_name(group: str, topic: str, partition: int) -> str:
    """The tracking record name of one partition for one consumer group."""
    return f"kafka:{group}:{topic}:{partition}"


@dataclass
class WorkerStats:
    """What a worker has done so far."""

    applied: int = 0
    """Messages whose command committed (including answered repeats)."""
    skipped: int = 0
    """Messages the mapping skipped (returned ``None``)."""
    dead: int = 0
    """Messages dead-lettered."""
    batches: int = 0
    """Partition batches committed."""
    retries: int = 0
    """Transient failures retried."""


class Worker:
    """Consumes topics in a group and applies each message's command.

    Args:
        engine: The engine whose store receives events and offsets.
        bootstrap: Kafka ``HOST:PORT`` (comma-separated for several).
        topics: Topics to consume.
        group: Consumer group id (part of the tracking record names).
        mapping: ``message -> Start | Send | None``.
        dead_letter_topic: Where dead letters are produced too (after the
            commit); ``<topic>.deadletters`` of each message's topic when omitted.
        max_batch: Most messages fetched and applied per round.
        backoff: First and longest wait between retries of a transient failure.
        consumer_options: More keyword arguments for ``AIOKafkaConsumer``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        bootstrap: str,
        topics: Sequence[str],
        group: str,
        mapping: Mapping,
        dead_letter_topic: str | None = None,
        max_batch: int = 5_000,
        backoff: tuple[float, float] = (0.05, 2.0),
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        if not topics:
            raise ValueError("a worker needs at least one topic")
        self.engine = engine
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.group = group
        self.mapping = mapping
        self.dead_letter_topic = dead_letter_topic
        self.max_batch = max_batch
        self.backoff = backoff
        self.consumer_options = consumer_options or {}
        self.stats = WorkerStats()
        self._owned: set[TopicPartition] = set()
        self._next: dict[TopicPartition, int] = {}
        """Per owned partition, the next offset to apply (what the store holds)."""
        self._inflight: dict[TopicPartition, asyncio.Task[None]] = {}
        """Per partition, the batch being applied (one at a time, in order)."""
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._committed: dict[TopicPartition, int] = {}
        self.assigned = asyncio.Event()
        """Set once the worker owns at least one partition (for tests, demos)."""
        self.committed = asyncio.Event()
        """Set after each partition batch commits; clear it to await the next."""

    @property
    def partitions(self) -> list[tuple[str, int]]:
        """The ``(topic, partition)`` pairs this worker owns now."""
        return sorted((tp.topic, tp.partition) for tp in self._owned)

    @property
    def offsets(self) -> dict[tuple[str, int], int]:
        """Per owned ``(topic, partition)``, the next offset to apply.

        It is the offset stored with the events: it moves only once a batch
        has committed.
        """
        return {(tp.topic, tp.partition): n for tp, n in self._next.items()}

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event | None = None) -> WorkerStats:
        """Consume until ``stop`` is set, then finish the batch in flight.

        Raises:
            BrokerUnavailable: the broker cannot be reached at start.
        """
        stop = stop if stop is not None else asyncio.Event()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_batch,
            **self.consumer_options,
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        consumer.subscribe(self.topics, listener=_Listener(self, consumer))
        try:
            await producer.start()
            await consumer.start()
        except KafkaError as exc:
            await _quietly(consumer.stop())
            await _quietly(producer.stop())
            raise BrokerUnavailable(self.bootstrap, str(exc)) from None
        self._consumer, self._producer = consumer, producer
        try:
            while not stop.is_set():
                # Dispatch and fetch on: other partitions' batches are decided
                # while this one commits (one batch in flight per partition).
                await self._dispatch(await self._fetch(consumer))
                await self._commit_kafka(consumer)
        finally:
            try:
                await self._drain(list(self._inflight))  # finish what is in flight
            finally:
                self._owned.clear()
                self._next.clear()
                await _quietly(consumer.stop())
                await _quietly(producer.stop())
                self._consumer = self._producer = None
        return self.stats

    # ----------------------------------------------------------- assignment

    async def _assigned(
        self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
    ) -> None:
        """Seek each new partition to the offset stored in the event store."""
        for tp in partitions:
            name = tracking_name(self.group, tp.topic, tp.partition)
            stored = await self._retrying(
                functools.partial(
                    asyncio.to_thread, self.engine.store.tracking_position, name
                ),
                f"reading the offset of {tp.topic}/{tp.partition}",
            )
            if stored is None:
                await consumer.seek_to_beginning(tp)
                self._next[tp] = 0
            else:
                consumer.seek(tp, stored)
                self._next[tp] = stored
            self._owned.add(tp)
            log.info("assigned %s/%s from offset %s", tp.topic, tp.partition, stored)
        if self._owned:
            self.assigned.set()

    async def _revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Give partitions up once their batch in flight has committed."""
        self._owned.difference_update(partitions)  # nothing new starts for them
        await self._drain(partitions)
        for tp in partitions:
            self._next.pop(tp, None)

    # -------------------------------------------------------------- batches

    async def _fetch(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """Records of the partitions with no batch in flight.

        aiokafka hands out one partition's prefetched records before the next
        one's, so fetching from every partition would keep returning the busy
        one and leave the others waiting behind its commit. When every owned
        partition is busy this waits for a batch to finish instead.
        """
        for tp, task in list(self._inflight.items()):
            if task.done():
                del self._inflight[tp]
                task.result()  # a bug (not a transient failure) stops the worker
        busy = list(self._inflight.values())
        idle = [tp for tp in self._owned if tp not in self._inflight]
        if not idle and busy:
            await asyncio.wait(busy, timeout=0.2, return_when=FIRST_COMPLETED)
            return {}
        found: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
        if not busy:
            found = await consumer.getmany(
                *idle, timeout_ms=200, max_records=self.max_batch
            )
            return found
        # What idle partitions have buffered, else a short wait for a busy one
        # to finish (its prefetched records are waiting). getmany is not
        # cancelled instead: aiokafka's fetch bookkeeping does not survive it.
        found = await consumer.getmany(*idle, timeout_ms=0, max_records=self.max_batch)
        if not found:
            await asyncio.wait(busy, timeout=0.01, return_when=FIRST_COMPLETED)
        return found

    async def _dispatch(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> None:
        """Start applying each partition's records after its previous batch."""
        for tp, recs in batch.items():
            if tp not in self._owned:
                continue  # revoked while it was being fetched
            await self._drain([tp])
            task = asyncio.create_task(self._partition(tp, recs))
            self._inflight[tp] = task

    async def _drain(self, partitions: Sequence[TopicPartition]) -> None:
        """Wait for the batches in flight of ``partitions``; re-raise a failure."""
        tasks = [t for tp in partitions if (t := self._inflight.pop(tp, None))]
        for t in tasks:
            await asyncio.wait([t])
        for t in tasks:
            t.result()  # a bug (not a transient failure) stops the worker

    async def _process(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        """Apply a fetched batch completely (dispatch, then wait for it)."""
        await self._dispatch(batch)
        await self._drain(list(batch))
        await self._commit_kafka(consumer)

    async def _commit_kafka(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the applied offsets to Kafka too, for monitoring (lag) only."""
        for tp, task in list(self._inflight.items()):
            if task.done():
                await self._drain([tp])
        offsets = {tp: self._next[tp] for tp in self._owned if tp in self._next}
        if offsets and offsets != self._committed:
            try:
                await consumer.commit(offsets)
                self._committed = offsets
            except KafkaError as exc:
                log.debug("Kafka offset commit failed (ignored): %s", exc)

    async def _partition(
        self, tp: TopicPartition, recs: list[ConsumerRecord[Any, Any]]
    ) -> None:
        """Apply one partition's records, retrying transient failures."""
        start = self._next.get(tp)
        if tp not in self._owned or start is None:
            return  # revoked before its turn came
        recs = [r for r in recs if r.offset >= start]
        if not recs:
            return
        name = tracking_name(self.group, tp.topic, tp.partition)
        first = True

        async def attempt() -> list[DeadLetter] | None:
            nonlocal first, recs
            if not first:
                # The store is the truth: skip what a commit we could not
                # confirm (or another worker) already stored.
                stored = await asyncio.to_thread(
                    self.engine.store.tracking_position, name
                )
                if stored is not None:
                    recs = [r for r in recs if r.offset >= stored]
                    if not recs:
                        self._next[tp] = max(self._next.get(tp, 0), stored)
                        return None
            first = False
            return await self._apply(name, recs)

        letters = await self._retrying(attempt, f"{tp.topic}/{tp.partition}")
        if letters is None:
            return
        self._next[tp] = recs[-1].offset + 1
        self.stats.batches += 1
        self.committed.set()
        if letters:
            await self._produce_letters(letters)

    async def _apply(
        self, name: str, recs: list[ConsumerRecord[Any, Any]]
    ) -> list[DeadLetter]:
        """One transaction: the commands, the dead letters, the next offset."""
        items: list[Start | Send] = []
        origins: list[Message] = []
        failed: list[DeadLetter] = []
        skipped = 0
        mapping, group, of = self.mapping, self.group, Message.of
        for rec in recs:
            msg = of(rec)
            try:
                cmd = mapping(msg)
                if cmd is None:
                    skipped += 1
                    continue
                if type(cmd) is not Send or cmd.command_id is None:
                    cmd = _with_defaults(cmd, msg, group)
            except Exception as exc:  # the mapping is user code
                failed.append(self._letter(msg, f"mapping failed: {exc!r}"))
                continue
            items.append(cmd)
            origins.append(msg)
        letters: list[DeadLetter] = []

        def dead(results: list[InstanceInfo | NonstopError]) -> list[DeadLetter]:
            letters[:] = failed
            for msg, res in zip(origins, results, strict=True):
                if isinstance(res, NonstopError):
                    letters.append(self._letter(msg, f"{type(res).__name__}: {res}"))
            return letters

        tracking = Tracking(name, recs[-1].offset + 1)
        await self.engine.handle_batch(items, tracking=tracking, dead_letters=dead)
        self.stats.applied += len(items) - (len(letters) - len(failed))
        self.stats.skipped += skipped
        self.stats.dead += len(letters)
        return letters

    def _letter(self, msg: Message, reason: str) -> DeadLetter:
        log.info("dead letter %s: %s", msg.id, reason)
        return DeadLetter(
            self.group,
            msg.topic,
            msg.partition,
            msg.offset,
            reason,
            msg.key,
            msg.value,
            msg.headers,
            msg.timestamp,
        )

    async def _produce_letters(self, letters: list[DeadLetter]) -> None:
        """Produce dead letters to the dead-letter topic (after their commit)."""
        producer = self._producer
        if producer is None:
            return
        try:
            futures = []
            for x in letters:
                topic = self.dead_letter_topic or f"{x.topic}.deadletters"
                headers = [
                    *x.headers,
                    ("nonstop-reason", x.reason.encode()),
                    ("nonstop-origin", f"{x.topic}/{x.partition}/{x.offset}".encode()),
                ]
                futures.append(
                    await producer.send(topic, x.value, key=x.key, headers=headers)
                )
            await asyncio.gather(*futures)
        except KafkaError as exc:
            # The letters are stored; the topic is a notification of them.
            log.error("producing %d dead letters failed: %s", len(letters), exc)

    async def _retrying(self, job: Callable[[], Awaitable[T]], what: str) -> T | None:
        """``job()`` until it succeeds, through the store's retry layer."""
        return await until_stopped(
            job,
            transient=TRANSIENT,
            what=what,
            backoff=Backoff(*self.backoff),
            on_retry=self._count_retry,
        )

    def _count_retry(self, exc: BaseException) -> None:
        self.stats.retries += 1


def _with_defaults(cmd: object, msg: Message, group: str) -> Start | Send:
    """The command with a command id (and instance id) derived from the message."""
    if isinstance(cmd, Send):
        if cmd.command_id is not None:
            return cmd
        return msgspec.structs.replace(cmd, command_id=msg.id)
    if isinstance(cmd, Start):
        iid = cmd.instance_id or uuid.uuid5(_IDS, f"{group}/{msg.id}").hex
        return msgspec.structs.replace(
            cmd, instance_id=iid, command_id=cmd.command_id or msg.id
        )
    raise MappingError(cmd)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker, consumer: AIOKafkaConsumer) -> None:
        self._worker = worker
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._worker._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self._worker._assigned(self._consumer, list(assigned))


async def _quietly(job: Any) -> None:
    with contextlib.suppress(Exception):
        await job
