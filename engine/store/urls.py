"""Store URLs: one parser, one redaction.

``postgresql://`` URLs are read by libpq's own rules (``psycopg.conninfo``), so
everything libpq accepts (percent-encoding, ``?host=``, ``?password=``,
``?connect_timeout=``, ``?keepalives_idle=``, ...) works; the options that are
nonstop's own (``schema``, ``pool_size``, ``pool_timeout``,
``statement_timeout``) are taken out of the query first. :func:`redact` is the
one place a URL is made printable: use it wherever a URL is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from engine.core.errors import StoreUnavailable

__all__ = [
    "APPENDS",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_KEEPALIVES",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_STATEMENT_TIMEOUT",
    "PostgresURL",
    "parse_postgres_url",
    "passwords_in",
    "redact",
    "scheme_of",
    "sqlite_path",
    "validate_identifier",
]

DEFAULT_CONNECT_TIMEOUT = 3
"""Seconds to open one connection (libpq ``connect_timeout``)."""
DEFAULT_STATEMENT_TIMEOUT = 5.0
"""Seconds a statement may run on the server before it is cancelled."""
DEFAULT_POOL_TIMEOUT = 5.0
"""Seconds a caller waits for a pooled connection before ``StoreUnavailable``."""
DEFAULT_KEEPALIVES: dict[str, str] = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "2",
    # Unacknowledged bytes older than this drop the connection (Linux).
    "tcp_user_timeout": "9000",
}
"""TCP keepalive settings: a silent peer is detected within about 9 s."""

_OWN_OPTIONS = (
    "schema",
    "pool_size",
    "pool_timeout",
    "statement_timeout",
    "appends",
    "writers",
)
APPENDS = ("serial", "concurrent")
"""The append modes of a PostgreSQL store (see :mod:`engine.store.pg_append`)."""
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# userinfo "user:password@": the password runs to the LAST "@" (an unencoded
# "@" in a password is common; masking too much is safer than too little).
_URL_PASSWORD = re.compile(r"(://[^:/@?#]*:)(.*)(@)", re.DOTALL)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(
    r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s']\S*)", re.IGNORECASE | re.DOTALL
)


def redact(url: str) -> str:
    """``url`` with every password replaced by ``***``.

    Handles ``scheme://user:password@host``, an empty user
    (``postgresql://:password@host``), a password holding ``@``, the query form
    ``?password=...`` and libpq's keyword form ``password=... host=...``.
    """
    if "://" in url:
        url = _URL_PASSWORD.sub(r"\1***\3", url, count=1)
        return _QUERY_PASSWORD.sub(r"\1***", url)
    return _KEYWORD_PASSWORD.sub(r"\1***", url)


def passwords_in(url: str) -> list[str]:
    """Every password ``url`` holds, as written and decoded (longest first).

    For scrubbing messages that may echo one (a driver's error text).
    """
    found: list[str] = []
    if "://" in url:
        m = _URL_PASSWORD.search(url)
        if m:
            found.append(m.group(2))
        found += [v for v in re.findall(r"[?&]password=([^&#]*)", url, re.I)]
    else:
        for raw in (m.group(2) for m in _KEYWORD_PASSWORD.finditer(url)):
            if raw.startswith("'"):
                raw = re.sub(r"\\(.)", r"\1", raw.strip("'"))
            found.append(raw)
    found += [unquote(x) for x in found]
    return sorted({x for x in found if x}, key=len, reverse=True)


def scheme_of(url: str) -> str:
    """The scheme of ``url`` in lower case (``""`` when there is none)."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


def validate_identifier(name: str, url: str) -> str:
    """``name`` if it is a plain SQL identifier; else a precise error.

    Raises:
        StoreUnavailable: ``name`` holds a character other than letters, digits
            and ``_``, starts with a digit or is longer than 63 characters.
    """
    if _IDENTIFIER.fullmatch(name) is None:
        raise StoreUnavailable(
            redact(url),
            f"schema name {name!r} is not a plain identifier; use letters, "
            "digits and '_' (not first a digit, at most 63 characters)",
        )
    return name


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///path.db`` URL.

    Raises:
        StoreUnavailable: no path, or its directory does not exist.
    """
    path = url.partition("://")[2].removeprefix("/").partition("?")[0]
    if not path:
        raise StoreUnavailable(url, "no file path (use sqlite:///path/to/file.db)")
    parent = Path(path).parent
    if not parent.is_dir():
        raise StoreUnavailable(url, f"directory {str(parent)!r} does not exist")
    return path


@dataclass(frozen=True)
class PostgresURL:
    """A parsed ``postgresql://`` store URL."""

    conninfo: dict[str, Any]
    """libpq connection keywords (``host``, ``port``, ``dbname``, ``user``, ...)."""
    schema: str = "public"
    """The schema holding the tables (validated as an identifier)."""
    pool_size: int = 4
    """Connections kept open."""
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    """Seconds to wait for a pooled connection."""
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    """Seconds a statement may run (0: no limit)."""
    appends: str | None = None
    """The append mode asked for (``serial`` or ``concurrent``); None follows
    the mode the store records (``serial`` for a new store)."""
    writers: int = 4
    """In the concurrent mode, the most appends one engine has in flight."""
    options: dict[str, str] = field(default_factory=dict)
    """nonstop's own query options as given."""


def parse_postgres_url(url: str, **overrides: Any) -> PostgresURL:
    """Parse a ``postgresql://`` URL into connection keywords and nonstop options.

    Defaults: host ``127.0.0.1``, port 5432, user and database ``postgres``,
    ``connect_timeout`` :data:`DEFAULT_CONNECT_TIMEOUT` and the TCP keepalives
    of :data:`DEFAULT_KEEPALIVES` (each overridable in the query).

    Args:
        url: ``postgresql://user[:password]@host[:port]/dbname[?options]``.
        **overrides: ``schema``, ``pool_size``, ``pool_timeout``,
            ``statement_timeout``, ``appends``, ``writers``,
            ``connect_timeout``: values that win over the URL's (None: keep
            the URL's or the default); ``libpq``: a mapping of more libpq
            keywords (``keepalives_idle``, ``sslmode``, ...), winning too.

    Raises:
        StoreUnavailable: the URL is malformed, an option is not a number, or
            the schema is not a plain identifier; nothing was contacted.
    """
    shown = redact(url)
    parts = urlsplit(url)
    own: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OWN_OPTIONS:
            own[key] = value
        else:
            rest.append((key, value))
    for key in _OWN_OPTIONS:
        if overrides.get(key) is not None:
            own[key] = str(overrides[key])
    libpq_url = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest)))
    from psycopg import conninfo as _conninfo

    try:
        info: dict[str, Any] = _conninfo.conninfo_to_dict(libpq_url)
    except Exception as exc:  # psycopg.ProgrammingError: libpq's own message
        raise StoreUnavailable(shown, f"malformed URL: {exc}") from None
    info.setdefault("host", "127.0.0.1")
    info.setdefault("port", 5432)
    info.setdefault("user", "postgres")
    info.setdefault("dbname", "postgres")
    if overrides.get("connect_timeout") is not None:
        info["connect_timeout"] = str(overrides["connect_timeout"])
    for key, value in (overrides.get("libpq") or {}).items():
        info[key] = str(value)
    info.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
    for key, value in DEFAULT_KEEPALIVES.items():
        info.setdefault(key, value)
    schema = validate_identifier(own.get("schema", "public"), url)
    appends = own.get("appends")
    if appends is not None and appends not in APPENDS:
        raise StoreUnavailable(
            shown, f"option appends={appends!r} is not 'serial' or 'concurrent'"
        )
    return PostgresURL(
        conninfo=info,
        schema=schema,
        pool_size=int(_number(own, "pool_size", 4, shown)),
        pool_timeout=_number(own, "pool_timeout", DEFAULT_POOL_TIMEOUT, shown),
        statement_timeout=_number(
            own, "statement_timeout", DEFAULT_STATEMENT_TIMEOUT, shown
        ),
        appends=appends,
        writers=int(_number(own, "writers", 4, shown)),
        options=own,
    )


def _number(own: dict[str, str], key: str, default: float, shown: str) -> float:
    raw = own.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    counts = {"pool_size": "connections", "writers": "appends in flight"}
    if value < 0 or (key in counts and (value < 1 or value != int(value))):
        raise StoreUnavailable(
            shown,
            f"option {key}={raw!r} is not a valid number of "
            f"{counts.get(key, 'seconds')}",
        )
    return value
