"""Bulk-loaded streams replay to the same state in nonstop and eventsourcing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bulk import es_application, es_ids, fill_es, fill_nonstop, insert_es
from bench.counter import registry
from bench.harness import pg_schema, store_url
from engine import Engine, open_store


@pytest.mark.postgres
def test_filled_streams_rebuild_in_both_formats() -> None:
    with pg_schema("nonstop_test_bench") as schema:
        store = open_store(store_url(schema))
        app = es_application(schema=schema)
        try:
            ids = [f"s{n}" for n in range(5)]
            assert fill_nonstop(schema, ids, 7) == 35
            assert fill_nonstop(schema, ["one"], 1) == 1
            engine = Engine(store, registry())
            for sid in ids:
                inst = engine.loader.load_sync(sid)
                assert (inst.position, inst.state.value) == (7, 6)
            assert engine.loader.load_sync("one").state.value == 0
            oids = es_ids(5, seed=3)
            assert len(set(oids) | set(es_ids(5))) == 10  # seeds do not collide
            assert fill_es(app, schema, oids, 7) == 35
            for oid in oids:
                counter = app.repository.get(oid)
                assert (counter.version, counter.value) == (7, 6)
        finally:
            app.close()
            store.close()


def test_insert_es_writes_through_the_recorder(tmp_path: Path) -> None:
    app = es_application(sqlite=str(tmp_path / "es.db"))
    try:
        oids = es_ids(3)
        assert insert_es(app, [(oid, 4) for oid in oids]) == 12
        assert [app.repository.get(o).value for o in oids] == [3, 3, 3]
    finally:
        app.close()


def test_es_application_needs_a_place() -> None:
    with pytest.raises(ValueError, match="schema= or sqlite="):
        es_application()
