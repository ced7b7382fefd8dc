"""The console's JSON API: read endpoints and actions (see ``/api/openapi.json``).

Every read endpoint answers with JSON from :mod:`engine.console.data`; every
action is a POST (JSON or form body) checked by :mod:`engine.console.app`
(token, read-only mode, same origin, CSRF token) before it runs, and answers
with the state after it. Errors are ``{"error": MESSAGE}`` with a 4xx status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from engine.console import configs, data, operate
from engine.console.auth import Principal
from engine.console.data import Settings
from engine.console.openapi import openapi
from engine.core.errors import ConsoleError

__all__ = [
    "OPERATOR_HEADER",
    "body",
    "csrf_token",
    "json_response",
    "operator",
    "principal",
    "routes",
    "settings_of",
]

OPERATOR_HEADER = "x-nonstop-operator"
"""The request header naming who acts (else the console's ``--operator``)."""

_encoder = msgspec.json.Encoder()


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """``value`` as a JSON response."""
    return Response(
        _encoder.encode(value), status, headers, media_type="application/json"
    )


def csrf_token(settings: Settings) -> str:
    """The CSRF token of this console process (an HMAC keyed by its secret)."""
    mac = hmac.new(settings.secret, b"nonstop-console-csrf", hashlib.sha256)
    return mac.hexdigest()


def settings_of(request: Request) -> Settings:
    """The console's settings, kept on the app."""
    found: Settings = request.app.state.settings
    return found


def principal(request: Request) -> Principal:
    """Whose token the request carries (the console's operator without tokens)."""
    who: Principal | None = getattr(request.state, "principal", None)
    if who is None:
        return Principal(settings_of(request).operator, "viewer", personal=False)
    return who


def operator(request: Request) -> str:
    """Who acts: the name of the request's token.

    Without a personal token (no tokens, or the single ``--token``): the
    operator header, else the console's default operator.
    """
    who = principal(request)
    if who.personal:
        return who.name
    return request.headers.get(OPERATOR_HEADER) or who.name


async def body(request: Request) -> dict[str, str]:
    """The fields of a JSON object or form-encoded body (empty when none).

    Raises:
        ConsoleError: 400, a body that is neither.
    """
    raw = await request.body()
    if not raw:
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind == "application/x-www-form-urlencoded":
        fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[-1] for k, v in fields.items()}
    try:
        found = json.loads(raw)
    except ValueError as exc:
        raise ConsoleError(400, f"the request body is not JSON: {exc}") from None
    if not isinstance(found, dict):
        raise ConsoleError(400, "the request body must be a JSON object of fields")
    return {str(k): "" if v is None else str(v) for k, v in found.items()}


def _form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith("application/x-www-form-urlencoded")


def _answer(request: Request, fields: dict[str, str], result: Any) -> Response:
    """JSON for scripts; back to the page (``next``) for a form of the pages."""
    if _form(request):
        target = fields.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        return RedirectResponse(target, status_code=303)
    return json_response(result)


# -------------------------------------------------------------------- reads


def _workflows(request: Request) -> Response:
    return json_response(data.workflows(settings_of(request)))


def _versions(request: Request) -> Response:
    w = request.path_params["workflow"]
    return json_response(data.versions(settings_of(request), w))


def _rollouts(request: Request) -> Response:
    return json_response(data.rollouts(settings_of(request)))


def _rollout(request: Request) -> Response:
    w = request.path_params["workflow"]
    return json_response(data.rollout(settings_of(request), w))


def _instances(request: Request) -> Response:
    q = request.query_params
    unknown = sorted(set(q) - {"status", "workflow", "cursor", "limit"})
    if unknown:
        raise ConsoleError(
            400,
            f"unknown query parameter(s) {', '.join(unknown)}; known: status, "
            "workflow, cursor, limit",
        )
    page = data.instances(
        settings_of(request),
        status=q.get("status") or None,
        workflow=q.get("workflow") or None,
        cursor=q.get("cursor"),
        limit=q.get("limit"),
    )
    return json_response(page)


def _instance(request: Request) -> Response:
    iid = request.path_params["instance_id"]
    return json_response(data.instance(settings_of(request), iid))


def _audit(request: Request) -> Response:
    subject = request.query_params.get("subject") or None
    return json_response(data.audit(settings_of(request), subject))


def _flags(request: Request) -> Response:
    return json_response(data.flags(settings_of(request)))


def _config(request: Request) -> Response:
    settings = settings_of(request)
    source = settings.config or configs.config
    return json_response(source(settings))


def _deadletters(request: Request) -> Response:
    return json_response(data.deadletters(settings_of(request)))


def _projections(request: Request) -> Response:
    return json_response(data.projections(settings_of(request)))


def _csrf(request: Request) -> Response:
    return json_response({"csrf": csrf_token(settings_of(request))})


def _openapi(request: Request) -> Response:
    return json_response(openapi())


# ------------------------------------------------------------------ actions


async def _act(request: Request, run: Any) -> Response:
    from starlette.concurrency import run_in_threadpool

    fields = await body(request)
    by = operator(request)
    reason = fields.get("reason", "")
    result = await run_in_threadpool(run, settings_of(request), fields, by, reason)
    return _answer(request, fields, result)


async def _rollout_action(request: Request) -> Response:
    p = request.path_params

    def run(s: Settings, f: dict[str, str], by: str, why: str) -> Any:
        return operate.rollout(s, p["workflow"], p["action"], by=by, reason=why)

    return await _act(request, run)


async def _promote(request: Request) -> Response:
    w = request.path_params["workflow"]

    def run(s: Settings, f: dict[str, str], by: str, why: str) -> Any:
        return operate.promote(
            s, w, f.get("version", ""), f.get("percent", ""), by=by, reason=why
        )

    return await _act(request, run)


async def _rollback(request: Request) -> Response:
    w = request.path_params["workflow"]

    def run(s: Settings, f: dict[str, str], by: str, why: str) -> Any:
        return operate.rollback(s, w, by=by, reason=why)

    return await _act(request, run)


async def _flag(request: Request) -> Response:
    p = request.path_params
    if p["action"] not in ("kill", "revive"):
        raise ConsoleError(
            404, f"flag action {p['action']!r} does not exist; use kill or revive"
        )

    def run(s: Settings, f: dict[str, str], by: str, why: str) -> Any:
        revive = p["action"] == "revive"
        return operate.flag(s, p["name"], revive=revive, by=by, reason=why)

    return await _act(request, run)


async def _config_rollback(request: Request) -> Response:
    w = request.path_params["workflow"]

    def run(s: Settings, f: dict[str, str], by: str, why: str) -> Any:
        return configs.rollback(s, w, f.get("to", ""), by=by, reason=why)

    return await _act(request, run)


async def _replay(request: Request) -> Response:
    letter = request.path_params["letter"]

    def run(s: Settings, f: dict[str, str], by: str, why: str) -> Any:
        return operate.replay(s, letter, by=by, reason=why)

    return await _act(request, run)


def routes() -> list[Route]:
    """The API's routes, under ``/api``."""
    get, post = ["GET"], ["POST"]
    return [
        Route("/api/openapi.json", _openapi, methods=get),
        Route("/api/csrf", _csrf, methods=get),
        Route("/api/workflows", _workflows, methods=get),
        Route("/api/workflows/{workflow}/versions", _versions, methods=get),
        Route("/api/workflows/{workflow}/promote", _promote, methods=post),
        Route("/api/workflows/{workflow}/rollback", _rollback, methods=post),
        Route("/api/rollouts", _rollouts, methods=get),
        Route("/api/rollouts/{workflow}", _rollout, methods=get),
        Route("/api/rollouts/{workflow}/{action}", _rollout_action, methods=post),
        Route("/api/instances", _instances, methods=get),
        Route("/api/instances/{instance_id:path}", _instance, methods=get),
        Route("/api/audit", _audit, methods=get),
        Route("/api/flags", _flags, methods=get),
        Route("/api/flags/{name}/{action}", _flag, methods=post),
        Route("/api/config", _config, methods=get),
        Route("/api/config/{workflow}/rollback", _config_rollback, methods=post),
        Route("/api/deadletters", _deadletters, methods=get),
        Route("/api/deadletters/{letter}/replay", _replay, methods=post),
        Route("/api/projections", _projections, methods=get),
    ]
