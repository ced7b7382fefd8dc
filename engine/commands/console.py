"""``nonstop console``: serve the operations console (HTTP API and pages).

It binds 127.0.0.1 by default. With ``--tokens-file`` (or
``$NONSTOP_CONSOLE_TOKENS``), ``--token`` (or ``$NONSTOP_CONSOLE_TOKEN``)
every request needs ``Authorization: Bearer TOKEN`` (browsers log in once at
``/login``); a viewer's token cannot act; ``--read-only`` refuses every
action. Needs ``nonstop[console]``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from rich.text import Text

from engine.commands import CliContext
from engine.core.extras import require
from engine.health.counters import DEFAULT_BUCKET_SECONDS

__all__ = ["TOKENS_ENV", "TOKEN_ENV", "register"]

TOKEN_ENV = "NONSTOP_CONSOLE_TOKEN"
"""The environment variable holding the token when ``--token`` is not given."""

TOKENS_ENV = "NONSTOP_CONSOLE_TOKENS"
"""The environment variable of people's tokens (``TOKEN=NAME:ROLE,...``)."""

_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_ANY = ("0.0.0.0", "::", "")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``console`` to ``sub``."""
    p = sub.add_parser(
        "console",
        help="serve the operations console: versions, rollouts, instances, "
        "audit, flags, dead letters, projections",
    )
    p.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    p.add_argument(
        "--token",
        metavar="TOKEN",
        help="a single operator token, acting as --operator (default: "
        f"${TOKEN_ENV}); for several people with roles use --tokens-file",
    )
    p.add_argument(
        "--tokens-file",
        metavar="FILE",
        help="tokens of people: one 'TOKEN NAME ROLE' per line, ROLE viewer or "
        f"operator (default: ${TOKENS_ENV}, as TOKEN=NAME:ROLE,...)",
    )
    p.add_argument(
        "--allow-host",
        metavar="NAME",
        action="append",
        default=[],
        help="a host name the console may be reached by besides --host (a "
        "proxy's name; repeat); requests for other names are refused",
    )
    p.add_argument("--read-only", action="store_true", help="refuse every action")
    p.add_argument(
        "--operator",
        metavar="NAME",
        help="who acts when a request has no X-Nonstop-Operator header "
        "(default: $USER)",
    )
    p.add_argument(
        "--kafka", metavar="HOST:PORT", help="broker that dead letters replay to"
    )
    p.add_argument(
        "--bucket-seconds",
        type=int,
        default=DEFAULT_BUCKET_SECONDS,
        help="width of the engines' health buckets, as given to `nonstop rollout "
        f"run` (default {DEFAULT_BUCKET_SECONDS})",
    )
    p.set_defaults(run=_serve)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return int(text)


def _hosts(bound: str, allowed: list[str]) -> tuple[str, ...]:
    """The host names requests may name: ``bound`` and ``allowed``.

    A loopback ``bound`` brings its aliases; bound to every address with no
    name allowed, any name is accepted.
    """
    names = [h.lower() for h in allowed]
    if bound in _ANY:
        return tuple(names)
    names.append(f"[{bound}]" if ":" in bound else bound.lower())
    if bound in _LOOPBACK:
        names += ["127.0.0.1", "localhost", "[::1]"]
    return tuple(dict.fromkeys(names))


def _serve(ctx: CliContext, args: argparse.Namespace) -> int:
    require("starlette", "console", "nonstop console")
    require("uvicorn", "console", "nonstop console")
    import uvicorn

    from engine.console import Settings, create_app
    from engine.deploy import default_user
    from engine.store import redact, require_store

    require_store(ctx.store_url)  # StoreNotFound: exit 2, nothing created
    from engine.console.auth import parse_tokens_env, read_tokens_file

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.tokens_file:
        tokens = read_tokens_file(args.tokens_file)  # ConsoleTokensError: exit 2
    elif os.environ.get(TOKENS_ENV, "").strip():
        tokens = parse_tokens_env(os.environ[TOKENS_ENV])
    else:
        tokens = {}
    settings = Settings(
        store_url=ctx.store_url,
        load_app=lambda: ctx.load_app(ctx.app),
        operator=args.operator or default_user(),
        read_only=args.read_only,
        token=token,
        tokens=tokens,
        kafka=args.kafka,
        bucket_seconds=args.bucket_seconds,
        hosts=_hosts(args.host, args.allow_host),
    )
    if args.host not in _LOOPBACK and token is None and not tokens:
        ctx.out.print(
            Text(
                f"warning: serving {args.host} without a token: anyone who reaches "
                f"it can act (set --token or ${TOKEN_ENV})"
            )
        )
    mode = "read-only, " if args.read_only else ""
    people = len(tokens) + (token is not None)
    auth = f"{people} token(s)" if people else "no token"
    ctx.out.print(
        Text(
            f"console for {redact(ctx.store_url)} on http://{args.host}:{args.port}/ "
            f"({mode}{auth}); Ctrl-C stops it"
        )
    )
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level="warning"
    )
    return 0
