"""The registry's first read costs the size of the registry, not of the log.

A store that counts every row its reads examine: ``read_all`` filters the
types itself, as a server without an index on the type does, so a scan of the
global order counts every row it passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.deploy import DeployError, Deployments
from engine.deploy.events import FLAGS_STREAM, INDEX_STREAM, deploy_stream
from engine.store import NewRecord, Record, open_store
from engine.store.memory import MemoryStore

SRC = "tests.deploy.flows"


class CountingStore(MemoryStore):
    """A memory store that counts the rows its reads examine.

    Its ``iter_streams`` and ``iter_all`` are the port's, built on
    ``read_stream`` and ``read_all``: counting those two counts every read.
    """

    def __init__(self) -> None:
        super().__init__()
        self.examined = 0

    def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Sequence[str] = ()
    ) -> list[Record]:
        wanted = set(types)
        out: list[Record] = []
        while len(out) < limit:
            rows = super().read_all(after=after, limit=limit)
            self.examined += len(rows)
            out += [r for r in rows if not wanted or r.type in wanted][
                : limit - len(out)
            ]
            if len(rows) < limit:
                break
            after = rows[-1].global_position
        return out

    def read_stream(
        self, stream_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        rows = super().read_stream(stream_id, after=after, limit=limit)
        self.examined += len(rows)
        return rows


def _instances(store: MemoryStore, prefix: str, streams: int, events: int) -> None:
    """``streams * events`` instance events (never decoded by the registry)."""
    for s in range(streams):
        store.append(
            [
                NewRecord(f"{prefix}-{s}", p, "app.Happened", b"x")
                for p in range(1, events + 1)
            ]
        )


def _registry_rows(store: MemoryStore) -> int:
    streams = [INDEX_STREAM, FLAGS_STREAM, deploy_stream("jobs"), deploy_stream("b")]
    return sum(len(store.read_stream(s)) for s in streams)


@pytest.mark.parametrize("instance_events", [1_000, 20_000])
def test_a_cold_read_examines_only_the_registry(instance_events: int) -> None:
    store = CountingStore()
    with Deployments(store) as ops:
        ops.deploy("jobs", 1, f"{SRC}:v1")
        _instances(store, "a", instance_events // 100, 50)
        ops.deploy("jobs", 4, f"{SRC}:v4", canary=10)
        ops.set_flag("fast", "boolean", enabled=True)
        ops.deploy("b", 1, f"{SRC}:v1", check=False)
        _instances(store, "b", instance_events // 100, 50)
    size = _registry_rows(store)
    assert size == 9  # index 2, jobs 4, b 2, flags 1
    store.examined = 0
    cold = Deployments(store)
    view = cold.refresh()
    assert store.examined == size  # not the instance events
    routing = view.workflow("jobs").routing
    assert routing is not None and routing.describe() == "v1: 90 %, v4: 10 %"
    assert view.flags["fast"].enabled and "b" in view.workflows
    assert [(a.subject, a.action) for a in view.audit][-3:] == [
        ("flag:fast", "set"),
        ("b", "deploy"),
        ("b", "deploy"),
    ]  # in global order
    # Nothing new: a refresh reads no row at all.
    store.examined = 0
    cold.refresh()
    assert store.examined == 0


def test_a_change_after_the_cold_read_is_read_once() -> None:
    store = CountingStore()
    ops, other = Deployments(store), Deployments(store)
    ops.deploy("jobs", 1, f"{SRC}:v1")
    other.refresh()
    ops.deploy("jobs", 4, f"{SRC}:v4", canary=10)
    view = other.refresh()
    routing = view.workflow("jobs").routing
    assert routing is not None and routing.describe() == "v1: 90 %, v4: 10 %"
    assert len(view.audit) == 4  # each event folded once


def test_reindex_lists_streams_written_before_the_index() -> None:
    store = CountingStore()
    ops = Deployments(store)
    ops.deploy("jobs", 1, f"{SRC}:v1")
    # A registry written before the index existed: the same events, no index.
    legacy = MemoryStore()
    legacy.append(
        [
            NewRecord(r.stream_id, r.position, r.type, r.data)
            for r in store.read_stream(deploy_stream("jobs"))
        ]
    )
    assert Deployments(legacy).refresh().workflows == {}
    assert Deployments(legacy).reindex() == [deploy_stream("jobs")]
    assert Deployments(legacy).refresh().route("jobs", "k") == 1
    assert Deployments(legacy).reindex() == []


_ops = st.lists(
    st.tuples(
        st.sampled_from(["deploy", "canary", "promote", "rollback", "flag", "other"]),
        st.sampled_from([1, 2, 4, 6]),
        st.integers(min_value=0, max_value=100),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None)
@given(ops=_ops)
def test_a_cold_read_folds_what_a_follower_folded(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    """Law: reading the registry by stream gives the view folded event by event.

    On SQLite, whose stream reads carry the global position (the memory
    store's do not, and orders a cold read's audit by recording time).
    """
    path = tmp_path_factory.mktemp("law") / "events.db"
    store = open_store(f"sqlite:///{path}")
    writer, follower = Deployments(store), Deployments(store)
    for n, (op, version, share) in enumerate(ops):
        try:
            if op == "deploy":
                writer.deploy("jobs", version, f"{SRC}:v{version}")
            elif op == "canary":
                writer.deploy(
                    "jobs", version, f"{SRC}:v{version}", canary=share, replace=True
                )
            elif op == "promote":
                writer.promote("jobs", version, percent=share, replace=True)
            elif op == "rollback":
                writer.rollback("jobs")
            elif op == "flag":
                writer.set_flag(f"f{version}", "percentage", percent=share)
            else:
                writer.deploy(f"w{version}", 1, f"{SRC}:v1", check=False)
        except DeployError:
            pass  # refused: nothing written
        store.append([NewRecord(f"i-{n}", 1, "app.Happened", b"x")])
        follower.refresh()
    cold = Deployments(store).refresh()
    followed = follower.refresh()
    assert cold.workflows == followed.workflows
    assert cold.flags == followed.flags
    assert cold.positions == followed.positions
    assert [(a.subject, a.action, a.detail) for a in cold.audit] == [
        (a.subject, a.action, a.detail) for a in followed.audit
    ]
    store.close()


def test_nonstop_init_indexes_a_store_written_before_the_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    fresh = MemoryStore()
    Deployments(fresh).deploy("jobs", 1, f"{SRC}:v1")
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    with open_store(url) as legacy:  # the same events, no index
        legacy.append(
            [
                NewRecord(r.stream_id, r.position, r.type, r.data)
                for r in fresh.read_stream(deploy_stream("jobs"))
            ]
        )
    assert main(["--store", url, "init"]) == 0
    assert "indexed the deployments of 1 workflow(s)" in capsys.readouterr().out
    assert Deployments(url).refresh().route("jobs", "k") == 1
    assert main(["--store", url, "init"]) == 0
    assert "nothing changed" in capsys.readouterr().out
