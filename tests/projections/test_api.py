"""Declaring projections: precise errors; one SQL dialect for handlers."""

from __future__ import annotations

import pytest

from projections import ALL, Projection, ProjectionDefinitionError, Tx


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad-Name", "tables": ["t"]}, "projection name 'Bad-Name'"),
        ({"name": "x" * 31, "tables": ["t"]}, "at most 30 characters"),
        ({"name": "ok", "version": 0, "tables": ["t"]}, "version 0 must be an int"),
        ({"name": "ok", "version": True, "tables": ["t"]}, "version True"),
        ({"name": "ok", "tables": []}, "at least one"),
        ({"name": "ok", "tables": ["a", "a"]}, "must be distinct"),
        ({"name": "ok", "tables": ["A b"]}, r"tables \['A b'\]"),
        ({"name": "ok", "tables": ["v2_x"]}, "not starting with v and a digit"),
    ],
)
def test_bad_declarations_are_refused(kwargs, message):
    with pytest.raises(ProjectionDefinitionError, match=message):
        Projection(**kwargs)


def test_handlers_are_checked():
    p = Projection("p", tables=["t"])
    with pytest.raises(ProjectionDefinitionError, match="no setup function"):
        p.check()
    p.setup(lambda tx: None)
    with pytest.raises(ProjectionDefinitionError, match="no handlers"):
        p.check()
    p.on("A")(lambda tx, e: None)
    p.check()
    with pytest.raises(ProjectionDefinitionError, match="'A' already has a handler"):
        p.on("A")(lambda tx, e: None)
    with pytest.raises(ProjectionDefinitionError, match="must be its only one"):
        p.on_batch()(lambda tx, es: None)
    with pytest.raises(ProjectionDefinitionError, match="at least one type"):
        p.on()
    assert p.types == ("A",) and p.per_event


def test_types_read_from_the_store():
    every = Projection("e", tables=["t"])
    every.on(ALL)(lambda tx, e: None)
    assert every.types == ()  # all of them
    batch = Projection("b", tables=["t"])
    batch.on_batch("Y", "X")(lambda tx, es: None)
    assert batch.types == ("X", "Y") and not batch.per_event
    with pytest.raises(ProjectionDefinitionError, match="has a batch handler"):
        batch.on("Z")(lambda tx, e: None)


def test_tables_resolve_only_inside_a_build(db):
    with db.transaction() as tx:
        with pytest.raises(ValueError, match="only available inside"):
            tx.table("t")
        assert tx.bound("p_v3").table("t") == "p_v3_t"


def test_question_marks_and_percent_signs_work_on_both_backends(db):
    with db.transaction() as tx:
        tx.execute("CREATE TABLE pct (a TEXT, b TEXT)")
        tx.executemany(
            "INSERT INTO pct (a, b) VALUES (?, ?)", [("50%", "x"), ("y", "z")]
        )
        rows = tx.query(
            "SELECT a FROM pct WHERE a LIKE '%\\%' ESCAPE '\\' OR b = ?", ("z",)
        )
        assert sorted(r[0] for r in rows) == ["50%", "y"]
        assert tx.query_one("SELECT count(*) FROM pct WHERE a = ?", ("nope",)) == (0,)
        assert isinstance(tx, Tx) and tx.dialect == db.dialect
