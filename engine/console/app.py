"""The console's ASGI app: routes, the request guard and error answers.

The guard runs before every route:

* **host** (``--host``, ``--allow-host``): a request addressed to another
  host name is refused, so a page of another site cannot reach a loopback
  console by rebinding its own name to 127.0.0.1;
* **token** (``--tokens-file``, ``$NONSTOP_CONSOLE_TOKENS``, ``--token``):
  every request carries ``Authorization: Bearer TOKEN`` or the cookie
  ``/login`` sets; else 401. The token's principal (name and role, see
  :mod:`engine.console.auth`) is kept in ``request.state.principal``;
* **role**: a viewer's POST is refused with 403;
* **read-only** (``--read-only``): every POST is refused with 403;
* **CSRF**: a POST whose ``Origin`` (or, without one, ``Referer``) is not the
  console's own origin is refused, and every POST carries the token of
  ``GET /api/csrf`` (header ``X-CSRF-Token`` or form field ``csrf``), an HMAC
  keyed by a secret of this process that a page of another origin cannot read.

Errors become ``{"error": MESSAGE}`` on ``/api`` and a short page elsewhere,
with 4xx codes: bad input 400, unknown things 404, refused state changes 409.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.console import api, pages
from engine.console.api import csrf_token
from engine.console.auth import Principal
from engine.console.data import Settings
from engine.core.errors import (
    AlreadyReplayed,
    ConfigError,
    ConsoleError,
    DeadLetterNotFound,
    DeployError,
    FlagError,
    NonstopError,
    ProjectionStateError,
    RolloutError,
    StoreUnavailable,
    UnknownInstance,
    UnknownProjection,
    UnknownWorkflow,
)
from engine.store import redact

__all__ = ["COOKIE", "create_app"]

COOKIE = "nonstop_console_token"
"""The cookie ``/login`` sets so that a browser carries the token."""

_NOT_FOUND = (UnknownWorkflow, UnknownInstance, DeadLetterNotFound, UnknownProjection)
_CONFLICT = (
    ConfigError,
    RolloutError,
    DeployError,
    FlagError,
    AlreadyReplayed,
    ProjectionStateError,
)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Guard:
    """ASGI middleware: token, read-only mode and CSRF checks (see the module)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        refused = self._refusal(conn, scope["method"])
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, conn: HTTPConnection, method: str) -> Response | None:
        s = self.settings
        path = conn.url.path
        host = conn.headers.get("host", "")
        if s.hosts and _host_name(host) not in s.hosts:
            return _error(
                conn,
                ConsoleError(
                    403,
                    f"request for host {host!r} refused: this console answers to "
                    f"{', '.join(s.hosts)}; start it with --allow-host NAME to "
                    "add the name it is reached by",
                ),
            )
        principals = s.principals()
        who = _anonymous(s) if not principals else self._principal(conn, principals)
        if who is None and path != "/login":
            return _error(
                conn,
                ConsoleError(
                    401,
                    "this console needs its token: send Authorization: Bearer "
                    "TOKEN, or open /login in a browser",
                ),
                {"WWW-Authenticate": 'Bearer realm="nonstop console"'},
            )
        conn.scope.setdefault("state", {})["principal"] = who
        if method != "POST" or path == "/login":
            return None
        if who is not None and not who.can_act:
            return _error(
                conn,
                ConsoleError(
                    403,
                    f"{who.name} is a {who.role}: viewers cannot act; ask for an "
                    "operator token to promote, roll back, pause or kill",
                ),
            )
        if s.read_only:
            return _error(
                conn,
                ConsoleError(
                    403,
                    "this console runs --read-only: actions are refused; use the "
                    "command line or a console started without --read-only",
                ),
            )
        origin = conn.headers.get("origin") or conn.headers.get("referer")
        if origin is not None:
            here = f"{conn.url.scheme}://{conn.url.netloc}"
            parts = urlsplit(origin)
            if f"{parts.scheme}://{parts.netloc}" != here:
                return _error(
                    conn,
                    ConsoleError(
                        403,
                        f"cross-origin action refused: the request comes from "
                        f"{origin!r}, not from this console ({here})",
                    ),
                )
        return None

    def _principal(
        self, conn: HTTPConnection, principals: dict[str, Principal]
    ) -> Principal | None:
        """Whose token the request carries (header, else cookie); None: none."""
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        given = value.strip() if scheme.lower() == "bearer" else None
        if given is None:
            given = conn.cookies.get(COOKIE)
        return None if given is None else _lookup(principals, given)


def _lookup(principals: dict[str, Principal], given: str) -> Principal | None:
    """The principal of token ``given``, compared in constant time."""
    found = None
    for token, who in principals.items():
        if _same(given, token):
            found = who
    return found


def _anonymous(settings: Settings) -> Principal:
    return Principal(settings.operator, "operator", personal=False)


def _host_name(host: str) -> str:
    """``host`` of a Host header without its port (``[::1]:80`` -> ``[::1]``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _bad_csrf() -> ConsoleError:
    return ConsoleError(
        403,
        "missing or wrong CSRF token: send the 'csrf' of GET /api/csrf as the "
        "X-CSRF-Token header (or the csrf form field of the console's pages)",
    )


async def _csrf_checked(request: Request) -> None:
    """Refuse a POST that carries no valid CSRF token in its header or body."""
    settings = api.settings_of(request)
    given = request.headers.get("x-csrf-token")
    if given is None:
        given = (await api.body(request)).get("csrf")
    if given is None or not _same(given, csrf_token(settings)):
        raise _bad_csrf()


def _error(
    conn: HTTPConnection, exc: NonstopError, headers: dict[str, str] | None = None
) -> Response:
    status = _status(exc)
    settings: Settings | None = getattr(conn.app.state, "settings", None)
    message = " ".join(str(exc).split())
    if settings is not None:
        message = message.replace(settings.store_url, redact(settings.store_url))
    if conn.url.path.startswith("/api/"):
        return api.json_response({"error": message}, status, headers)
    page = (
        f"<!doctype html><title>nonstop console: {status}</title>"
        f"<h1>{status}</h1><p class=error>{escape(message)}</p>"
        '<p><a href="/">overview</a></p>'
    )
    return HTMLResponse(page, status, headers=headers)


def _status(exc: NonstopError) -> int:
    if isinstance(exc, ConsoleError):
        return exc.status
    if isinstance(exc, _NOT_FOUND):
        return 404
    if isinstance(exc, _CONFLICT):
        return 409
    if isinstance(exc, StoreUnavailable):
        return 503
    return 400


async def _on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NonstopError)
    return _error(request, exc)


def _login(request: Request) -> Response:
    settings = api.settings_of(request)
    token = request.query_params.get("token")
    principals = settings.principals()
    if not principals:
        return RedirectResponse("/", 303)
    if token is not None and _lookup(principals, token) is not None:
        response = RedirectResponse("/", 303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response
    status = 200 if token is None else 401
    wrong = "" if token is None else "<p class=error>wrong token</p>"
    return HTMLResponse(
        "<!doctype html><title>nonstop console: log in</title><h1>Log in</h1>"
        f"{wrong}<form method=get action=/login><label>token "
        "<input type=password name=token></label> <button>log in</button></form>",
        status,
    )


def create_app(settings: Settings) -> Starlette:
    """The console app serving ``settings.store_url``."""
    routes = [Route("/login", _login, methods=["GET"])]
    for route in [*api.routes(), *pages.routes()]:
        if "POST" in (route.methods or ()):
            route = _with_csrf(route)
        routes.append(route)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            settings.close()

    app = Starlette(
        routes=routes,
        exception_handlers={NonstopError: _on_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(Guard, settings=settings)
    return app


def _with_csrf(route: Route) -> Route:
    """``route`` refusing a request without this process's CSRF token."""
    endpoint = route.endpoint

    async def checked(request: Request) -> Response:
        await _csrf_checked(request)
        response: Response = await endpoint(request)
        return response

    return Route(route.path, checked, methods=["POST"], name=route.name)
