"""Store URLs: one parser (libpq's rules), one redaction that never leaks."""

from __future__ import annotations

from urllib.parse import quote

import psycopg
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.core.errors import StoreUnavailable
from engine.store import open_store, redact
from engine.store.urls import parse_postgres_url

pytestmark = pytest.mark.timeout(60)

passwords = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://:s3cret@db", "postgresql://:***@db"),
        ("postgresql://app:s3cr@t@db/x", "postgresql://app:***@db/x"),
        ("postgresql://u@h/db?password=zz&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("host=h password=abc user=x", "host=h password=*** user=x"),
        ("host=h password='a b\\' c' user=x", "host=h password=*** user=x"),
    ],
)
def test_every_password_form_is_masked(url: str, shown: str) -> None:
    assert redact(url) == shown


@given(passwords)
def test_a_url_password_never_shows(pw: str) -> None:
    template = "postgresql://app:{}@db.example:5432/prod?schema=s"
    assume(pw not in template.format("***"))  # the mask itself may hold it
    assert pw not in redact(template.format(pw))
    assert pw not in redact(template.format(quote(pw, safe="")))


@given(passwords)
def test_a_query_password_never_shows(pw: str) -> None:
    template = "postgresql://app@db.example/prod?sslmode=disable&password={}&x=1"
    assume(pw not in template.format("***"))
    assert pw not in redact(template.format(quote(pw, safe="")))


@given(passwords)
def test_a_keyword_password_never_shows(pw: str) -> None:
    quoted = "'" + pw.replace("\\", "\\\\").replace("'", "\\'") + "'"
    template = "host=db.example user=app password={} dbname=prod"
    assume(pw not in template.format("***"))
    assert pw not in redact(template.format(quoted))


@given(passwords)
def test_the_parser_reads_what_libpq_reads(pw: str) -> None:
    url = f"postgresql://app:{quote(pw, safe='')}@db.example:6543/prod?schema=s_1"
    parsed = parse_postgres_url(url)
    assert parsed.conninfo["password"] == pw
    assert parsed.conninfo["host"] == "db.example"
    assert str(parsed.conninfo["port"]) == "6543"
    assert parsed.schema == "s_1"
    # The connection keywords round-trip through libpq's own formatter.
    again = psycopg.conninfo.conninfo_to_dict(
        psycopg.conninfo.make_conninfo(**parsed.conninfo)
    )
    assert again["password"] == pw


def test_defaults_and_options() -> None:
    parsed = parse_postgres_url(
        "postgresql://db/x?pool_size=2&pool_timeout=1.5&statement_timeout=0"
        "&connect_timeout=7&sslmode=disable"
    )
    assert parsed.conninfo["user"] == "postgres"
    assert parsed.conninfo["connect_timeout"] == "7"
    assert parsed.conninfo["sslmode"] == "disable"
    assert parsed.conninfo["keepalives"] == "1"
    assert (parsed.pool_size, parsed.pool_timeout, parsed.statement_timeout) == (
        2,
        1.5,
        0.0,
    )
    assert "pool_size" not in parsed.conninfo


@pytest.mark.parametrize("bad", ["pool_size=0", "pool_timeout=soon", "schema="])
def test_bad_options_are_named(bad: str) -> None:
    with pytest.raises(StoreUnavailable) as info:
        parse_postgres_url(f"postgresql://u:pw@db/x?{bad}")
    assert repr(bad.partition("=")[2]) in str(info.value)
    assert "pw" not in str(info.value).replace("postgresql", "")


@pytest.mark.parametrize("schema", ['a"b', "x;drop", "1abc", "a b", "a" * 64])
def test_a_schema_that_is_not_an_identifier_is_refused(schema: str) -> None:
    with pytest.raises(StoreUnavailable) as info:
        parse_postgres_url(f"postgresql://db/x?schema={quote(schema)}")
    assert repr(schema) in str(info.value)


@pytest.mark.postgres
def test_a_bad_schema_is_refused_before_any_ddl(pg_url: str) -> None:
    url = pg_url.rpartition("?")[0] + "?schema=" + quote('evil";drop')
    with pytest.raises(StoreUnavailable, match="not a plain identifier"):
        open_store(url)
    with psycopg.connect(pg_url.rpartition("?")[0]) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'evil%'"
        ).fetchone()
    assert found == (0,)


@pytest.mark.postgres
def test_options_reach_the_connections(pg_url: str) -> None:
    from engine.store.postgres import PostgresStore

    store = PostgresStore(
        pg_url + "&keepalives_idle=7",
        statement_timeout=1.5,
        pool_size=1,
        libpq={"keepalives_count": 3},
    )
    try:
        with store._connection() as conn:
            row = conn.execute("SHOW statement_timeout").fetchone()
            assert row is not None and list(row.values()) == ["1500ms"]
            params = conn.info.get_parameters()
            assert params["keepalives_idle"] == "7"
            assert params["keepalives_count"] == "3"
            assert params["connect_timeout"] == "3"
    finally:
        store.close()
