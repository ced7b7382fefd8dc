"""Pages of the instances read model: the whole listing, in order, by index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import load_app
from projections.instances import InstancesReadModel
from tests.console.conftest import APP, seed


@pytest.fixture(scope="module")
def seeded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('paging') / 'events.db'}"
    seed(url)
    return url


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    limit=st.integers(1, 15),
    status=st.sampled_from([None, "running", "completed", "failed", "cancelled"]),
    workflow=st.sampled_from([None, "tills", "other"]),
)
def test_walking_the_pages_gives_the_listing(
    seeded_sqlite: str, limit: int, status: str | None, workflow: str | None
) -> None:
    with InstancesReadModel(seeded_sqlite, load_app(APP)) as model:
        whole = model.instances(workflow=workflow, status=status)  # type: ignore[arg-type]
        walked, cursor, pages = [], 0, 0
        while True:
            got = model.page(
                workflow=workflow,
                status=status,  # type: ignore[arg-type]
                after=cursor,
                limit=limit + 1,
            )
            page = [info for info, _ in got[:limit]]
            nxt = got[limit - 1][1] if len(got) > limit else None
            assert len(page) <= limit
            walked += page
            pages += 1
            if nxt is None:
                break
            assert len(page) == limit
            cursor = nxt
    assert walked == whole
    assert pages == max(1, -(-len(whole) // limit))


@pytest.mark.parametrize(
    "where",
    [
        "status = 'running'",
        "workflow = 'tills'",
        "workflow = 'tills' AND status = 'failed'",
        "1 = 1",
    ],
)
def test_a_page_is_an_index_range_without_a_sort(
    seeded_sqlite: str, where: str
) -> None:
    with InstancesReadModel(seeded_sqlite, load_app(APP)) as model:
        model.page(limit=1)  # creates the page indexes of older builds
    path = Path(seeded_sqlite.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT started_global, instance_id FROM "
            f"nonstop_instances_by_id WHERE {where} AND started_global > 5 "
            "ORDER BY started_global LIMIT 11"
        ).fetchall()
    text = " ".join(str(row[3]) for row in plan)
    assert "USING" in text and "INDEX" in text and "started_global>?" in text, text
    assert "TEMP B-TREE" not in text, text
