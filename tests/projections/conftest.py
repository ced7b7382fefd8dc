"""Projections over real databases: a tally of test events per stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from engine import event
from engine.core.codec import EventCodec
from engine.core.events import Metadata, Started, now_micros
from engine.store import EventStore, NewRecord, open_store
from projections import Database, Projection, Tx, open_database
from tests.conftest import _fresh_pg


@event("test.proj.Added")
class Added(msgspec.Struct, frozen=True):
    by: int


@event("test.proj.Noted")
class Noted(msgspec.Struct, frozen=True):
    text: str


_codec = EventCodec()


def records(stream: str, first: int, amounts: list[int]) -> list[NewRecord]:
    """Records ``first, first+1, ...`` of ``stream``: Started at 1, then Added."""
    out: list[NewRecord] = []
    meta = Metadata("tally@1")
    for i, by in enumerate(amounts):
        pos = first + i
        obj: msgspec.Struct = (
            Started("tally", 1, "None", msgspec.msgpack.encode(None))
            if pos == 1
            else Added(by)
        )
        name, data = _codec.encode(obj, meta, recorded_at=now_micros())
        out.append(NewRecord(stream, pos, name, data))
    return out


class Log:
    """Appends tally events and remembers the expected fold."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.lengths: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def add(self, stream: str, *amounts: int) -> int:
        """Append events (Started first for a new stream); returns the last gp."""
        first = self.lengths.get(stream, 0) + 1
        recs = records(stream, first, list(amounts))
        gps = self.store.append(recs)
        self.lengths[stream] = first + len(recs) - 1
        for r, by in zip(recs, amounts, strict=True):
            if r.type == "test.proj.Added":
                self.totals[stream] = self.totals.get(stream, 0) + by
                self.counts[stream] = self.counts.get(stream, 0) + 1
        return gps[-1]

    def note(self, stream: str, text: str) -> int:
        """Append a Noted event to an existing stream."""
        pos = self.lengths[stream] + 1
        name, data = _codec.encode(Noted(text), Metadata("tally@1"), recorded_at=1)
        (gp,) = self.store.append([NewRecord(stream, pos, name, data)])
        self.lengths[stream] = pos
        return gp

    def expected(self) -> dict[str, tuple[int, int]]:
        return {s: (self.totals[s], self.counts[s]) for s in self.totals}


def tally(version: int = 1, *, factor: int = 1, keep: bool = False) -> Projection:
    """Per stream: total of Added.by (times ``factor``) and the number of events."""
    p = Projection("tally", version=version, tables=["totals"], keep=keep)

    @p.setup
    def create(tx: Tx) -> None:
        tx.execute(
            f"CREATE TABLE {tx.table('totals')} (stream TEXT PRIMARY KEY, "
            "total BIGINT NOT NULL, n BIGINT NOT NULL)"
        )

    @p.on("test.proj.Added")
    def added(tx: Tx, e: object) -> None:
        t = tx.table("totals")
        tx.execute(
            f"INSERT INTO {t} (stream, total, n) VALUES (?, ?, 1) ON CONFLICT (stream) "
            f"DO UPDATE SET total = {t}.total + excluded.total, n = {t}.n + 1",
            (e.stream_id, e.event.by * factor),  # type: ignore[attr-defined]
        )

    return p


def read_totals(db: Database, view: str = "tally_totals") -> dict[str, tuple[int, int]]:
    return {s: (int(t), int(n)) for s, t, n in db.query(f"SELECT * FROM {view}")}


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(event store URL, read-model URL): the same database, SQLite or PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
        yield url, url
    else:
        for url in _fresh_pg():
            yield url, url


@pytest.fixture
def store(urls: tuple[str, str]) -> Iterator[EventStore]:
    s = open_store(urls[0])
    yield s
    s.close()


@pytest.fixture
def db(urls: tuple[str, str]) -> Iterator[Database]:
    d = open_database(urls[1])
    yield d
    d.close()


@pytest.fixture
def log(store: EventStore) -> Log:
    return Log(store)
