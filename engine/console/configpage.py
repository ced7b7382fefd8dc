"""The console's config page: each workflow's document, engines and history."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from engine.console import configs
from engine.console.api import settings_of
from engine.console.layout import e, form, page, table

__all__ = ["routes"]


def _document(doc: dict[str, Any]) -> str:
    if not doc:
        return "<p class=muted>the config type's defaults (no document)</p>"
    return f"<pre>{e(json.dumps(doc, indent=1, sort_keys=True))}</pre>"


def _section(request: Request, w: dict[str, Any]) -> str:
    name = w["workflow"]
    q = quote(name, safe="")
    back = "/config"
    act = ""
    if w["rollback_to"] is not None:
        act = form(
            request,
            f"/api/config/{q}/rollback",
            f"roll config back to v{w['rollback_to']}",
            back,
        )
    canary = ""
    if w["canary_document"] is not None:
        canary = f"<h3>canary v{w['canary']}</h3>{_document(w['canary_document'])}"
    engines = (
        table(
            ("engine", "runs", "refused", "reported at (UTC)"),
            [
                [
                    e(x["worker"]),
                    f"v{x['applied']}",
                    e(f"v{x['refused']}: {x['error']}" if x["refused"] else ""),
                    e(x["at"]),
                ]
                for x in w["engines"]
            ],
        )
        if w["engines"]
        else "<p class=muted>no engine has reported yet</p>"
    )
    history = (
        table(
            ("when (UTC)", "by", "reason", "change", "diff"),
            [
                [
                    e(h["at"]),
                    e(h["by"]),
                    e(h["reason"]),
                    e(h["summary"]),
                    "<br>".join(e(d) for d in h["diff"]) or "-",
                ]
                for h in reversed(w["history"])
            ],
        )
        if w["history"]
        else "<p class=muted>no config change yet</p>"
    )
    return (
        f"<h2 id=cfg-{e(name)}>{e(name)}</h2><p>instances read <b class=config>"
        f"{e(w['routing'])}</b> {act}</p><h3>current v{w['current']}</h3>"
        f"{_document(w['document'])}{canary}<h3>engines</h3>{engines}"
        f"<h3>history (newest first)</h3>{history}"
    )


def _config(request: Request) -> HTMLResponse:
    found = configs.config(settings_of(request))
    body = "".join(_section(request, w) for w in found) or (
        "<p class=muted>no workflow yet</p>"
    )
    return page(request, "Config", body)


def routes() -> list[Route]:
    """The config page's route."""
    return [Route("/config", _config, methods=["GET"])]
