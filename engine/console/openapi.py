"""The OpenAPI 3.1 description of the console's API, at ``/api/openapi.json``.

Written by hand beside the routes of :mod:`engine.console.api`; a test checks
that every API route is described here and every path described is routed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi"]

_ERROR = {
    "description": "refused, with the reason",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}
_ANY_LIST = {"type": "array", "items": {"type": "object"}}
_OBJECT = {"type": "object"}


def _ok(schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {"description": what, "content": {"application/json": {"schema": schema}}}


def _get(
    summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": _ok(schema, summary), "4XX": _ERROR},
    }
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(summary: str, fields: dict[str, Any]) -> dict[str, Any]:
    props = {"reason": {"type": "string", "description": "why (kept in the audit)"}}
    props.update(fields)
    body = {"type": "object", "properties": props, "required": ["reason"]}
    return {
        "post": {
            "summary": summary,
            "description": "Needs the CSRF token (header X-CSRF-Token or field "
            "csrf, from GET /api/csrf), a same-origin Origin or Referer when "
            "the browser sends one, an operator's token (a viewer gets 403) and a "
            "console not started --read-only. The audit names the token's "
            "owner; without a personal token, the X-Nonstop-Operator header, "
            "else --operator.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": body},
                    "application/x-www-form-urlencoded": {"schema": body},
                },
            },
            "responses": {
                "200": _ok(_OBJECT, "the state after the action"),
                "303": {"description": "a form of the pages: back to its page"},
                "4XX": _ERROR,
            },
        }
    }


def _path(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": what,
        "schema": {"type": "string"},
    }


def _query(name: str, what: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": what, "schema": schema}


def openapi() -> dict[str, Any]:
    """The OpenAPI document of the console's API."""
    w = _path("workflow", "workflow name")
    statuses = ["running", "completed", "failed", "cancelled", "unreadable"]
    paths: dict[str, Any] = {
        "/api/openapi.json": _get("this document", _OBJECT),
        "/api/csrf": _get("the CSRF token actions need", _OBJECT),
        "/api/workflows": _get(
            "workflows: routing, versions with counts and drain, latest rollout",
            _ANY_LIST,
        ),
        "/api/workflows/{workflow}/versions": {
            "get": {**_get("versions of one workflow", _ANY_LIST)["get"]},
            "parameters": [w],
        },
        "/api/workflows/{workflow}/promote": {
            **_post(
                "give a deployed version a share of new instances",
                {
                    "version": {"type": "string", "description": "the version"},
                    "percent": {"type": "string", "description": "default 100"},
                },
            ),
            "parameters": [w],
        },
        "/api/workflows/{workflow}/rollback": {
            **_post("route new instances to the previous version", {}),
            "parameters": [w],
        },
        "/api/rollouts": _get("every rollout with its decisions", _ANY_LIST),
        "/api/rollouts/{workflow}": {
            **_get("the newest rollout of a workflow, with health", _OBJECT),
            "parameters": [w],
        },
        "/api/rollouts/{workflow}/{action}": {
            **_post("pause, resume or abort (roll back) a rollout", {}),
            "parameters": [w, _path("action", "pause, resume or abort")],
        },
        "/api/instances": _get(
            "one page of instances, in start order (from the instances read model)",
            {
                "type": "object",
                "properties": {
                    "instances": _ANY_LIST,
                    "next": {"type": ["string", "null"]},
                },
            },
            [
                _query("status", "only this status", {"enum": statuses}),
                _query("workflow", "only this workflow", {"type": "string"}),
                _query("cursor", "'next' of the previous page", {"type": "string"}),
                _query(
                    "limit",
                    "page size (default 100)",
                    {"type": "integer", "minimum": 1, "maximum": 1000},
                ),
            ],
        ),
        "/api/instances/{instance_id}": {
            **_get("an instance: state, history, flags read", _OBJECT),
            "parameters": [_path("instance_id", "the instance id")],
        },
        "/api/audit": _get(
            "who changed deployments, flags and rollouts, and acted here",
            _ANY_LIST,
            [_query("subject", "a workflow or flag:NAME", {"type": "string"})],
        ),
        "/api/flags": _get("every flag", _ANY_LIST),
        "/api/flags/{name}/{action}": {
            **_post("kill a flag (off for everyone) or revive it", {}),
            "parameters": [
                _path("name", "flag name"),
                _path("action", "kill or revive"),
            ],
        },
        "/api/config": _get(
            "each workflow's typed config: current and canary version, "
            "document, versions, history (who, when, why, diff) and the "
            "version each engine runs",
            _ANY_LIST,
        ),
        "/api/config/{workflow}/rollback": {
            **_post(
                "roll a workflow's config back (as nonstop config rollback)",
                {
                    "to": {
                        "type": "string",
                        "description": "the version to restore (default: off "
                        "the canary, else the previous one; 0: the defaults)",
                    }
                },
            ),
            "parameters": [w],
        },
        "/api/deadletters": _get("every dead letter", _ANY_LIST),
        "/api/deadletters/{letter}/replay": {
            **_post("produce a dead letter again to its topic", {}),
            "parameters": [_path("letter", "dead letter id")],
        },
        "/api/projections": _get("projection builds with position and lag", _ANY_LIST),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nonstop console",
            "version": "1",
            "description": "Versions, rollouts, instances, audit, flags, dead "
            "letters, projections and config of one nonstop store. With tokens "
            "(--tokens-file, NONSTOP_CONSOLE_TOKENS, --token), every request "
            "needs Authorization: Bearer TOKEN; viewers' tokens cannot act.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
