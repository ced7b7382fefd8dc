"""``?`` placeholders on PostgreSQL: only real placeholders become ``%s``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import open_database
from projections._db import to_pg


@pytest.mark.parametrize(
    ("sql", "pg"),
    [
        ("SELECT ?", "SELECT %s"),
        ("SELECT 'why?', ?", "SELECT 'why?', %s"),
        ("SELECT 'it''s ?' || ?", "SELECT 'it''s ?' || %s"),
        ("SELECT E'it\\'s ?', ?", "SELECT E'it\\'s ?', %s"),
        ('SELECT "odd?col" FROM t WHERE a = ?', 'SELECT "odd?col" FROM t WHERE a = %s'),
        ("SELECT $$ ? $$, $f$?$f$, ?", "SELECT $$ ? $$, $f$?$f$, %s"),
        ("SELECT ? -- why?\n, ?", "SELECT %s -- why?\n, %s"),
        ("SELECT /* ? */ ?", "SELECT /* ? */ %s"),
        ("SELECT doc ?? ? FROM t", "SELECT doc ? %s FROM t"),
        ("SELECT doc ??| ?, doc ??& ?", "SELECT doc ?| %s, doc ?& %s"),
        ("SELECT '100%' LIKE ?, 5 % 2", "SELECT '100%%' LIKE %s, 5 %% 2"),
        ("SELECT date'2020-01-01', ?", "SELECT date'2020-01-01', %s"),
    ],
)
def test_only_placeholders_are_translated(sql: str, pg: str) -> None:
    assert to_pg(sql) == pg


# A statement is a run of segments; each translates on its own.
_text = st.text(alphabet="ab ?%'\\\"$-*/\n", max_size=12)
_segments = st.one_of(
    st.just(("?", "%s")),
    st.just(("??", "?")),
    st.just(("%", "%%")),
    st.sampled_from(["SELECT", "x", "=", ",", "(", ")"]).map(lambda w: (w, w)),
    _text.map(lambda t: "'" + t.replace("'", "''") + "'").map(
        lambda q: (q, q.replace("%", "%%"))
    ),
    _text.map(lambda t: '"' + t.replace('"', '""') + '"').map(
        lambda q: (q, q.replace("%", "%%"))
    ),
    _text.filter(lambda t: "$q$" not in t and not t.endswith("$q")).map(
        lambda t: (f"$q${t}$q$", f"$q${t}$q$".replace("%", "%%"))
    ),
    _text.filter(lambda t: "*/" not in t and not t.endswith("*")).map(
        lambda t: (f"/*{t}*/", f"/*{t}*/".replace("%", "%%"))
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_segments, max_size=12))
def test_translation_is_segment_by_segment(segments: list[tuple[str, str]]) -> None:
    sql = " ".join(s for s, _ in segments)
    assert to_pg(sql) == " ".join(p for _, p in segments)


@pytest.mark.postgres
def test_literals_and_the_jsonb_operator_on_postgres(pg_url: str) -> None:
    with open_database(pg_url) as db, db.transaction() as tx:
        tx.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, doc JSONB, note TEXT)")
        tx.execute(
            "INSERT INTO docs VALUES (?, ?::jsonb, 'why? 100%'), "
            "(?, ?::jsonb, 'it''s ?')",
            ("a", '{"colour": 1}', "b", '{"size": 2}'),
        )
        assert tx.query("SELECT id FROM docs WHERE doc ?? ? ORDER BY id", ("colour",))
        rows = tx.query("SELECT id, note FROM docs WHERE doc ?? ?", ("size",))
        assert rows == [("b", "it's ?")]
        rows = tx.query(
            "SELECT id FROM docs WHERE doc ??| ? ORDER BY id", (["size", "colour"],)
        )
        assert rows == [("a",), ("b",)]
        assert tx.query_one("SELECT note FROM docs WHERE id = ?", ("a",)) == (
            "why? 100%",
        )


def test_literals_on_sqlite(tmp_path) -> None:
    with open_database(f"sqlite:///{tmp_path / 'rm.db'}") as db, db.read() as tx:
        assert tx.query_one("SELECT 'why? 100%', ?", (7,)) == ("why? 100%", 7)
