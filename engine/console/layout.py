"""The frame, tables and action forms every page of the console shares.

Values are escaped with :func:`e`; :func:`table` takes cells that are HTML
already. :func:`form` posts to an API action with the CSRF token and a
reason, and is empty in a read-only console.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from engine.console.api import csrf_token, principal, settings_of
from engine.store import redact

__all__ = [
    "FRAGMENT_HEADER",
    "LIVE_MS",
    "e",
    "form",
    "page",
    "pct",
    "table",
    "when",
]

LIVE_MS = 1000
"""How often (ms) the overview and rollout pages fetch their content again."""
FRAGMENT_HEADER = "x-nonstop-fragment"
"""A request with this header gets the page's content only (the live part)."""

_STYLE = """
body{font:14px system-ui,sans-serif;margin:0 1.5em 2em;color:#222}
nav{padding:.6em 0;border-bottom:1px solid #ccc;margin-bottom:1em}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:.5em 0 1.2em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
.error{color:#b00}.ok{color:#080}.muted{color:#888}
form.act{display:inline-block;margin:.1em .3em .1em 0}
form.act input[name=reason]{width:9em}
.bar{display:inline-block;height:.7em;background:#1f77b4;vertical-align:middle}
pre{margin:0;white-space:pre-wrap;max-width:60em}
"""


# Fetch the page's content again and swap it in place (no reload), unless the
# operator is typing a reason for an action. ``data-live`` counts the swaps.
_LIVE = (
    "<script>(function(){var m=document.getElementById('live');"
    "var busy=false,last=null;"
    "setInterval(function(){var a=document.activeElement;"
    "var typed=[].some.call(m.querySelectorAll('input[name=reason]'),"
    "function(i){return i.value;});"
    "if(busy||typed||(a&&a.tagName==='INPUT'))return;busy=true;"
    "fetch(location.href,{headers:{'X-Nonstop-Fragment':'1'},"
    "credentials:'same-origin',cache:'no-store'}).then(function(r){"
    "return r.ok?r.text():null;}).then(function(t){"
    "if(t!==null&&t!==last){last=t;m.innerHTML=t;"
    "m.dataset.live=String(+(m.dataset.live||0)+1);}})"
    ".catch(function(){}).then(function(){busy=false;});},MS);})();</script>"
)


def e(value: Any) -> str:
    """``value`` as escaped text (None as nothing)."""
    return escape("" if value is None else str(value))


def page(
    request: Request, title: str, body: str, *, refresh: bool = False
) -> HTMLResponse:
    """A whole page: the store, the navigation, ``title`` and ``body``.

    With ``refresh``, the body is live: a script fetches it again every
    :data:`LIVE_MS` ms with the :data:`FRAGMENT_HEADER` header, which gets
    ``body`` alone, and swaps it in when it changed.
    """
    s = settings_of(request)
    if refresh and request.headers.get(FRAGMENT_HEADER):
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})
    live = _LIVE.replace("MS", str(LIVE_MS)) if refresh else ""
    mode = " (read-only)" if s.read_only else ""
    who = principal(request)
    user = (
        f" &nbsp; <span class=who>{e(who.name)} ({e(who.role)})</span>"
        if who.personal
        else ""
    )
    nav = "".join(
        f'<a href="{href}">{name}</a>'
        for href, name in (
            ("/", "overview"),
            ("/instances", "instances"),
            ("/audit", "audit"),
            ("/flags", "flags"),
            ("/config", "config"),
            ("/deadletters", "dead letters"),
            ("/projections", "projections"),
            ("/api/openapi.json", "API"),
        )
    )
    html = (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{e(title)} - nonstop console</title><style>{_STYLE}</style>"
        f"</head><body><nav><b>nonstop</b> {e(redact(s.store_url))}{mode} "
        f"&nbsp; {nav}{user}</nav><h1>{e(title)}</h1><main id=live>{body}</main>"
        f"{live}</body></html>"
    )
    return HTMLResponse(html)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table; cells are HTML already (escape values with :func:`e`)."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def form(
    request: Request,
    action: str,
    label: str,
    back: str,
    fields: dict[str, str] | None = None,
) -> str:
    """A form posting to the API ``action``, with a reason.

    Empty when the console is read-only or the request's principal is a
    viewer: a page offers no action its reader cannot take.
    """
    s = settings_of(request)
    if s.read_only or not principal(request).can_act:
        return ""
    hidden = {"csrf": csrf_token(s), "next": back, **(fields or {})}
    inputs = "".join(
        f'<input type=hidden name="{e(k)}" value="{e(v)}">' for k, v in hidden.items()
    )
    return (
        f'<form class=act method=post action="{e(action)}">{inputs}'
        '<input name=reason required placeholder="reason"> '
        f"<button>{e(label)}</button></form>"
    )


def when(seconds: float) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals."""
    return f"{x:.2%}"
