"""``nonstop worker``, ``nonstop publish`` and ``nonstop deadletters``: Kafka.

``worker`` applies messages as commands with exactly-once effect until SIGTERM
or SIGINT, then finishes its batch in flight and leaves the group; it counts
per-version health and runs the rollout controller beside it (one worker at a
time acts, by a lease). ``publish``
relays committed events to a topic; ``publish skip POS`` passes over an event it
cannot read (with a recorded reason) and ``publish skips`` lists those.
``deadletters list`` shows the messages a
worker gave up on; ``deadletters replay ID...`` produces them again to their
topic.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from engine.commands import CliContext
from engine.commands.guard import add_guard_args, start_guard
from engine.core.extras import require
from engine.store.deadletters import StoredDeadLetter

__all__ = ["letter_json", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to sub."""
    p = sub.add_parser(
        "worker",
        help="apply Kafka messages as workflow commands (exactly-once effect)",
    )
    _kafka(p)
    p.add_argument(
        "--topic", action="append", required=True, metavar="T", help="topic (repeat)"
    )
    p.add_argument("--group", required=True, metavar="G", help="consumer group id")
    p.add_argument(
        "--mapping",
        required=True,
        metavar="MOD:ATTR",
        help="function message -> engine.Start | engine.Send | None",
    )
    p.add_argument(
        "--dead-letter-topic",
        metavar="T",
        help="where dead letters are produced (default: <topic>.deadletters)",
    )
    p.add_argument(
        "--max-batch",
        type=_positive,
        default=5_000,
        metavar="N",
        help="most messages applied per round (default: 5000)",
    )
    p.add_argument(
        "--session-timeout-ms",
        type=_positive,
        default=10_000,
        metavar="MS",
        help="consumer group session timeout (default: 10000)",
    )
    add_guard_args(p)
    p.add_argument(
        "--no-effects",
        action="store_true",
        help="do not run the app's effect handlers and timers beside the worker",
    )
    p.set_defaults(run=_worker)

    p = sub.add_parser(
        "publish",
        help="relay committed events to a Kafka topic",
        description="Relay committed events to a Kafka topic (needs --kafka and "
        "--topic); `publish skip` and `publish skips` manage events it cannot read.",
    )
    p.add_argument("--kafka", metavar="HOST:PORT", help="Kafka bootstrap server")
    p.add_argument("--topic", metavar="T", help="topic to produce to")
    p.add_argument(
        "--once",
        action="store_true",
        help="publish what is committed now, then exit (default: run until SIGTERM)",
    )
    p.set_defaults(run=_publish)
    acts = p.add_subparsers(dest="action", metavar="[ACTION]")
    q = acts.add_parser(
        "skip", help="pass over an event the publisher cannot read, with a reason"
    )
    q.add_argument("position", type=_positive, metavar="POS", help="global position")
    q.add_argument("--topic", required=True, metavar="T", help="the publisher's topic")
    q.add_argument("--reason", required=True, help="why it is skipped (recorded)")
    q.add_argument("--by", metavar="WHO", help="who skips it (default: $USER)")
    q.set_defaults(run=_skip)
    q = acts.add_parser("skips", help="the events skipped by a publisher")
    q.add_argument("--topic", required=True, metavar="T", help="the publisher's topic")
    q.set_defaults(run=_skips)

    p = sub.add_parser("deadletters", help="list or replay Kafka dead letters")
    dl = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = dl.add_parser("list", help="dead letters not replayed yet")
    q.add_argument("--group", metavar="G", help="only this consumer group's")
    q.add_argument("--all", action="store_true", help="include replayed ones")
    q.add_argument("--json", action="store_true", help="print JSON for scripts")
    q.set_defaults(run=_list)
    q = dl.add_parser("replay", help="produce dead letters again to their topic")
    _kafka(q)
    q.add_argument("ids", nargs="+", type=int, metavar="ID", help="dead letter ids")
    q.set_defaults(run=_replay)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _kafka(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kafka", required=True, metavar="HOST:PORT", help="Kafka bootstrap server"
    )


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _worker(ctx: CliContext, args: Any) -> int:
    require("aiokafka", "kafka", f"nonstop {args.command}")
    from engine.kafka.worker import Worker, load_mapping
    from engine.runtime import Engine

    mapping = load_mapping(args.mapping)
    registry = ctx.registry()

    async def run() -> int:
        engine = Engine(
            ctx.store_url, registry, health=args.health, effects=not args.no_effects
        )
        guard = start_guard(engine, args)
        try:
            worker = Worker(
                engine,
                bootstrap=args.kafka,
                topics=args.topic,
                group=args.group,
                mapping=mapping,
                dead_letter_topic=args.dead_letter_topic,
                max_batch=args.max_batch,
                consumer_options={
                    "session_timeout_ms": args.session_timeout_ms,
                    "heartbeat_interval_ms": max(100, args.session_timeout_ms // 5),
                },
            )
            ctx.out.print(
                f"worker: group {args.group}, topics {', '.join(args.topic)} on "
                f"{args.kafka}; SIGTERM or Ctrl-C stops it after the batch in flight"
            )
            stats = await worker.run(_stop_on_signals())
        finally:
            if guard is not None:
                await asyncio.to_thread(guard.stop)
            await engine.close()
        ctx.out.print(
            f"worker stopped: {stats.applied} applied, {stats.skipped} skipped, "
            f"{stats.dead} dead-lettered in {stats.batches} batches "
            f"({stats.retries} retries)"
        )
        return 0

    return asyncio.run(run())


def _publish(ctx: CliContext, args: Any) -> int:
    require("aiokafka", "kafka", f"nonstop {args.command}")
    from engine.kafka.publisher import Publisher
    from engine.runtime import Engine

    missing = [o for o in ("kafka", "topic") if not getattr(args, o)]
    if missing:
        from engine.core.errors import PublishUsageError

        raise PublishUsageError(" and ".join(f"--{o}" for o in missing))
    registry = ctx.registry()

    async def run() -> int:
        engine = Engine(ctx.store_url, registry)
        try:
            pub = Publisher(engine.store, engine.codec, args.kafka, args.topic)
            if args.once:
                n = await pub.publish_pending()
            else:
                ctx.out.print(
                    f"publishing to {args.topic} on {args.kafka}; SIGTERM or "
                    "Ctrl-C stops it"
                )
                n = await pub.run(_stop_on_signals())
        finally:
            await engine.close()
        ctx.out.print(f"published {n} events to {args.topic}")
        return 0

    return asyncio.run(run())


def _skip(ctx: CliContext, args: Any) -> int:
    from engine.core.codec import EventCodec
    from engine.deploy.registry import default_user
    from engine.kafka.publisher import Publisher
    from engine.store import open_store

    store = open_store(ctx.store_url)
    try:
        pub = Publisher(store, EventCodec(), "", args.topic)
        rec = pub.skip(args.position, args.reason, by=args.by or default_user())
    finally:
        store.close()
    ctx.out.print(
        Text(
            f"{pub.name} will pass over global position {args.position} "
            f"(stream {rec.stream_id!r} position {rec.position}, {rec.type}): "
            f"{args.reason}"
        )
    )
    return 0


def _skips(ctx: CliContext, args: Any) -> int:
    from engine.core.codec import EventCodec
    from engine.kafka.publisher import Publisher
    from engine.store import open_store

    store = open_store(ctx.store_url)
    try:
        skips = Publisher(store, EventCodec(), "", args.topic).skips()
    finally:
        store.close()
    table = Table(title=f"Skips of publisher:{args.topic}")
    for col in ("global position", "event", "skipped at (UTC)", "by", "reason"):
        table.add_column(col, no_wrap=col != "reason")
    for r in skips:
        e = r.event
        stamp = datetime.fromtimestamp(r.recorded_at / 1e6, tz=UTC)
        table.add_row(
            str(e.global_position),
            Text(f"{e.stream_id}:{e.position} {e.type}"),
            stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
            Text(e.by),
            Text(e.reason),
        )
    if skips:
        ctx.out.print(table)
    ctx.out.print(f"{len(skips)} skipped" if skips else "no skips")
    return 0


def _list(ctx: CliContext, args: Any) -> int:
    from engine.store import open_store

    store = open_store(ctx.store_url)
    try:
        letters = store.dead_letters(consumer=args.group, include_replayed=args.all)
    finally:
        store.close()
    if args.json:
        from engine.commands.instances import print_json

        print_json([letter_json(x) for x in letters])
        return 0
    table = Table(title="Dead letters")
    for col in ("id", "group", "from", "stored at", "reason", "key", "value"):
        table.add_column(col, no_wrap=col not in ("reason", "value"))
    if args.all:
        table.add_column("replayed to")
    for x in letters:
        m = x.letter
        stamp = datetime.fromtimestamp(x.recorded_at / 1e6, tz=UTC)
        row: list[Text | str] = [
            str(x.id),
            Text(m.consumer),
            Text(f"{m.topic}/{m.partition}/{m.offset}"),
            stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
            Text(m.reason),
            Text(_show(m.key)),
            Text(_show(m.value)),
        ]
        if args.all:
            row.append(Text(x.replayed_to or ""))
        table.add_row(*row)
    if letters:
        ctx.out.print(table)
    noun = "dead letter" if len(letters) == 1 else "dead letters"
    ctx.out.print(f"{len(letters)} {noun}")
    return 0


def letter_json(x: StoredDeadLetter) -> dict[str, Any]:
    """A stored dead letter as plain JSON-able values (bytes shown as text or hex)."""
    return {
        "id": x.id,
        "group": x.letter.consumer,
        "topic": x.letter.topic,
        "partition": x.letter.partition,
        "offset": x.letter.offset,
        "recorded_at": x.recorded_at,
        "reason": x.letter.reason,
        "key": _show(x.letter.key, limit=1 << 30),
        "value": _show(x.letter.value, limit=1 << 30),
        "replayed_to": x.replayed_to,
    }


def _replay(ctx: CliContext, args: Any) -> int:
    require("aiokafka", "kafka", "nonstop deadletters replay")
    from engine.kafka.deadletters import replay
    from engine.store import open_store

    store = open_store(ctx.store_url)
    try:
        done = asyncio.run(replay(store, args.kafka, args.ids))
    finally:
        store.close()
    for x in done:
        ctx.out.print(
            Text(f"replayed {x.id} to {x.letter.topic} ({x.letter.reason[:60]})")
        )
    return 0


def _show(data: bytes | None, limit: int = 60) -> str:
    if data is None:
        return "-"
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = "0x" + data.hex()
    return text if len(text) <= limit else text[: limit - 3] + "..."
