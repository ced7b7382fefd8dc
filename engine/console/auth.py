"""Who may use the console: bearer tokens, each naming a person and a role.

Tokens come from ``$NONSTOP_CONSOLE_TOKENS`` (``TOKEN=NAME:ROLE`` entries
separated by commas) or a tokens file (``--tokens-file``: one ``TOKEN NAME
ROLE`` per line, ``#`` starts a comment). A role is ``viewer`` (reads only)
or ``operator`` (reads and acts); the name is who the audit says acted.

A malformed entry raises :class:`~engine.core.errors.ConsoleTokensError`
naming the file (or variable), the line (or entry) and what is wrong; the
token itself is never repeated in an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from engine.core.errors import ConsoleTokensError

__all__ = [
    "ROLES",
    "TOKENS_ENV",
    "Principal",
    "Role",
    "parse_tokens_env",
    "parse_tokens_file",
    "read_tokens_file",
]

Role = Literal["viewer", "operator"]
"""What a token may do: read (viewer) or read and act (operator)."""
ROLES: tuple[str, ...] = get_args(Role)
"""Every role, least first."""
TOKENS_ENV = "NONSTOP_CONSOLE_TOKENS"
"""The environment variable holding ``TOKEN=NAME:ROLE,...``."""


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to."""

    name: str
    """The person (or robot) the audit names."""
    role: Role
    """``viewer`` or ``operator``."""
    personal: bool = True
    """A token of this person; False for the console's single ``--token``
    and for a console without tokens, where the ``X-Nonstop-Operator``
    header (else ``--operator``) names who acts."""

    @property
    def can_act(self) -> bool:
        """Whether this principal may act (promote, roll back, ...)."""
        return self.role == "operator"


def _entry(
    source: str, line: int, token: str, name: str, role: str
) -> tuple[str, Principal]:
    if not token:
        raise ConsoleTokensError(source, line, "the token is empty")
    if not name:
        raise ConsoleTokensError(source, line, "the name is empty")
    if role not in ROLES:
        raise ConsoleTokensError(
            source,
            line,
            f"role {role!r} of {name!r} is not one of {', '.join(ROLES)}",
        )
    return token, Principal(name, role)  # type: ignore[arg-type]  # checked


def _collect(
    source: str, entries: Iterable[tuple[int, str, str, str]]
) -> dict[str, Principal]:
    out: dict[str, Principal] = {}
    first: dict[str, int] = {}
    for line, token, name, role in entries:
        token, who = _entry(source, line, token, name, role)
        if token in out:
            raise ConsoleTokensError(
                source,
                line,
                f"the token of {name!r} is already given to "
                f"{out[token].name!r} (line {first[token]}); each token names one "
                "person",
            )
        out[token], first[token] = who, line
    return out


def parse_tokens_env(text: str, source: str = f"${TOKENS_ENV}") -> dict[str, Principal]:
    """Tokens of ``TOKEN=NAME:ROLE`` entries separated by commas.

    Raises:
        ConsoleTokensError: an entry without ``=`` or ``:``, an empty part,
            an unknown role, a token given twice.
    """
    entries = []
    for n, raw in enumerate(text.split(","), 1):
        item = raw.strip()
        if not item:
            raise ConsoleTokensError(
                source, n, "the entry is empty (a stray comma?); use TOKEN=NAME:ROLE"
            )
        token, eq, who = item.partition("=")
        name, colon, role = who.partition(":")
        if not eq or not colon:
            raise ConsoleTokensError(
                source, n, "expected TOKEN=NAME:ROLE (e.g. s3cret=ann:operator)"
            )
        entries.append((n, token.strip(), name.strip(), role.strip()))
    return _collect(source, entries)


def parse_tokens_file(text: str, source: str) -> dict[str, Principal]:
    """Tokens of a file of ``TOKEN NAME ROLE`` lines (``#`` comments).

    Raises:
        ConsoleTokensError: a line without three fields, an unknown role, a
            token given twice, a file that names no token.
    """
    entries = []
    for n, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 3:
            raise ConsoleTokensError(
                source,
                n,
                f"expected 3 fields TOKEN NAME ROLE separated by spaces, got "
                f"{len(fields)}",
            )
        token, name, role = fields
        entries.append((n, token, name, role))
    if not entries:
        raise ConsoleTokensError(
            source, 1, "the file names no token; add lines TOKEN NAME ROLE"
        )
    return _collect(source, entries)


def read_tokens_file(path: str) -> dict[str, Principal]:
    """Read and parse a tokens file.

    Raises:
        ConsoleTokensError: an unreadable or malformed file.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConsoleTokensError(path, 0, f"cannot read it ({why})") from None
    return parse_tokens_file(text, path)
