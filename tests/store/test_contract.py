"""The private ``eventsourcing`` hooks the adapters rely on still look as expected.

``eventsourcing`` is pinned to ``~=9.5``; these tests fail first when a release
in that series (or a new pin) renames a hook or changes its parameters, rather
than an append misbehaving at run time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError
from eventsourcing.popo import POPOAggregateRecorder, POPOProcessRecorder
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresDatastore,
    PostgresProcessRecorder,
)
from eventsourcing.sqlite import SQLiteProcessRecorder

from engine.store import NewRecord, Tracking, open_store
from engine.store.recorders import MemoryRecorder

pytestmark = pytest.mark.timeout(60)


def _params(fn: Callable[..., Any]) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


POS = inspect.Parameter.POSITIONAL_OR_KEYWORD
VAR_KW = inspect.Parameter.VAR_KEYWORD


@pytest.mark.parametrize(
    "hook",
    [
        PostgresProcessRecorder._insert_events,
        SQLiteProcessRecorder._insert_events,
    ],
)
def test_insert_events_hook(hook: Callable[..., Any]) -> None:
    # Called with (cursor, stored events, **kwargs): the kwargs carry
    # ``tracking`` and our ``dead_letters``.
    names = _params(hook)
    assert [k for _, k in names] == [POS, POS, POS, VAR_KW]


def test_popo_hooks() -> None:
    for hook in (
        POPOProcessRecorder._assert_uniqueness,
        POPOProcessRecorder._update_table,
        POPOAggregateRecorder._update_table,
    ):
        assert [k for _, k in _params(hook)] == [POS, POS, VAR_KW]
    recorder = POPOAggregateRecorder()
    # The in-memory snapshots reorder this index and replace in this list.
    assert isinstance(recorder._stored_events_index, dict)
    assert isinstance(recorder._stored_events, list)
    assert hasattr(recorder._database_lock, "__enter__")


def test_memory_recorder_passes_dead_letters_through_its_hooks() -> None:
    from engine.store import DeadLetter

    recorder = MemoryRecorder()
    letter = DeadLetter("g", "t", 0, 1, "bad", None, None)
    recorder.insert_events([], dead_letters=[letter])
    assert [x.letter for x in recorder.select_dead_letters(None, False)] == [letter]
    with pytest.raises(IntegrityError):
        recorder.insert_events([], dead_letters=[letter])


def test_postgres_datastore_options_and_pool() -> None:
    params = inspect.signature(PostgresDatastore).parameters
    for name in ("schema", "originator_id_type", "lock_timeout"):
        assert name in params
    # The store replaces the (never opened) pool and reuses this configure
    # function: autocommit plus the idle-in-transaction timeout.
    assert callable(PostgresDatastore.after_connect_func)
    from eventsourcing.postgres import PostgresApplicationRecorder

    # The recorder's NOTIFY channel, also written into our append function.
    assert "self.channel_name =" in inspect.getsource(
        PostgresApplicationRecorder.__init__
    )
    datastore = PostgresDatastore(
        "db", "127.0.0.1", 1, "u", "", schema="s", originator_id_type="text"
    )
    assert hasattr(datastore, "pool")
    assert datastore.lock_timeout == 0
    assert callable(PostgresAggregateRecorder.create_table)


@pytest.mark.postgres
def test_postgres_tracking_hook_refuses_a_tracking_that_does_not_advance(
    pg_url: str,
) -> None:
    # The store maps the hook's IntegrityError to ConcurrencyConflict.
    from engine.core.errors import ConcurrencyConflict

    with open_store(pg_url) as store:
        store.append([NewRecord("s", 1, "t", b"")], tracking=Tracking("c", 5))
        with pytest.raises(ConcurrencyConflict):
            store.append([NewRecord("s", 2, "t", b"")], tracking=Tracking("c", 5))
        assert store.stream_position("s") == 1
