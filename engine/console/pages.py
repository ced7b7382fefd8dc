"""The console's server-rendered pages (HTML, SVG charts, one line of script).

Each page reads what it shows through :mod:`engine.console.data` (the same
calls as the JSON API) and escapes every value it prints. Actions are small
forms posting to the API with the CSRF token and a reason; a console started
``--read-only`` shows no form. The overview and rollout pages reload
themselves every few seconds (a line of script that waits while a reason
is being typed).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from engine.console import data
from engine.console.api import csrf_token, settings_of
from engine.console.charts import Series, line_chart
from engine.console.data import STATUSES, Settings
from engine.store import redact

__all__ = ["REFRESH_SECONDS", "routes"]

REFRESH_SECONDS = 5
"""How often the overview and rollout pages reload themselves."""

_STYLE = """
body{font:14px system-ui,sans-serif;margin:0 1.5em 2em;color:#222}
nav{padding:.6em 0;border-bottom:1px solid #ccc;margin-bottom:1em}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:.5em 0 1.2em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
td.n{text-align:right}
.error{color:#b00}.ok{color:#080}.muted{color:#888}
form.act{display:inline-block;margin:.1em .3em .1em 0}
form.act input[name=reason]{width:9em}
.bar{display:inline-block;height:.7em;background:#1f77b4;vertical-align:middle}
pre{margin:0;white-space:pre-wrap;max-width:60em}
"""


# Reload the page, unless the operator is typing a reason for an action.
_RELOAD = (
    "<script>setInterval(function(){var a=document.activeElement;"
    "var typed=[].some.call(document.querySelectorAll('input[name=reason]'),"
    "function(i){return i.value;});"
    "if(!typed&&!(a&&a.tagName==='INPUT'))location.reload();},MS);</script>"
)


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _page(
    request: Request, title: str, body: str, *, refresh: bool = False
) -> HTMLResponse:
    s = settings_of(request)
    head = _RELOAD.replace("MS", str(REFRESH_SECONDS * 1000)) if refresh else ""
    mode = " (read-only)" if s.read_only else ""
    nav = "".join(
        f'<a href="{href}">{name}</a>'
        for href, name in (
            ("/", "overview"),
            ("/instances", "instances"),
            ("/audit", "audit"),
            ("/flags", "flags"),
            ("/deadletters", "dead letters"),
            ("/projections", "projections"),
            ("/api/openapi.json", "API"),
        )
    )
    html = (
        f"<!doctype html><html><head><meta charset=utf-8>{head}"
        f"<title>{_e(title)} - nonstop console</title><style>{_STYLE}</style>"
        f"</head><body><nav><b>nonstop</b> {_e(redact(s.store_url))}{mode} "
        f"&nbsp; {nav}</nav><h1>{_e(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table; cells are HTML already (escape values with :func:`_e`)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _form(
    s: Settings,
    action: str,
    label: str,
    back: str,
    fields: dict[str, str] | None = None,
) -> str:
    """A form posting to the API ``action``, with a reason; empty when read-only."""
    if s.read_only:
        return ""
    hidden = {"csrf": csrf_token(s), "next": back, **(fields or {})}
    inputs = "".join(
        f'<input type=hidden name="{_e(k)}" value="{_e(v)}">' for k, v in hidden.items()
    )
    return (
        f'<form class=act method=post action="{_e(action)}">{inputs}'
        '<input name=reason required placeholder="reason"> '
        f"<button>{_e(label)}</button></form>"
    )


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _pct(x: float) -> str:
    return f"{x:.2%}"


# ----------------------------------------------------------------- overview


def _overview(request: Request) -> HTMLResponse:
    s = settings_of(request)
    found = data.workflows(s)
    parts = [] if found else ["<p class=muted>no workflow has instances yet</p>"]
    for w in found:
        name = w["workflow"]
        q = quote(name, safe="")
        r = w["rollout"]
        rollout = "no rollout"
        if r is not None:
            rollout = (
                f'<a href="/rollouts/{q}">rollout #{r["number"]}</a>: '
                f"{_e(r['status'])}, step {r['step'] + 1}/{len(r['steps'])}, "
                f"candidate share {r['share']:g} %"
            )
        rows = []
        for v in w["versions"]:
            share = v["share_percent"]
            bar = f'<span class=bar style="width:{share:g}px"></span> {share:g} %'
            drain = "-"
            if v["drain"] is not None:
                drain = (
                    f'<progress value="{v["drain"]:.3f}"></progress> '
                    f"{v['drain']:.0%} finished, {v['running']} to go"
                )
            rows.append(
                [
                    f"v{v['version']}",
                    _e(v["state"]),
                    bar,
                    str(v["running"]),
                    str(v["completed"]),
                    str(v["failed"]),
                    str(v["cancelled"]),
                    drain,
                    _form(
                        s,
                        f"/api/workflows/{q}/promote",
                        f"promote v{v['version']}",
                        "/",
                        {"version": str(v["version"])},
                    )
                    if share < 100 and v["state"] == "active"
                    else "",
                ]
            )
        parts.append(
            f"<h2 id=wf-{_e(name)}>{_e(name)}</h2><p>routing "
            f"<b>{_e(w['routing'] or 'none')}</b>; {rollout} "
            f"{_form(s, f'/api/workflows/{q}/rollback', 'roll back', '/')}</p>"
            + _table(
                (
                    "version",
                    "state",
                    "share of new",
                    "running",
                    "completed",
                    "failed",
                    "cancelled",
                    "drain",
                    "",
                ),
                rows,
            )
        )
    return _page(request, "Overview", "".join(parts), refresh=True)


# ------------------------------------------------------------------ rollout


def _rollout(request: Request) -> HTMLResponse:
    s = settings_of(request)
    w = request.path_params["workflow"]
    r = data.rollout(s, w)
    q, back = quote(w, safe=""), f"/rollouts/{quote(w, safe='')}"
    what = (
        f"flag {r['flag']} on {w}"
        if r["flag"]
        else f"{w}@{r['version']} against v{r['baseline']}"
    )
    plan = r["plan"]
    ds = r["decisions"]
    actions = "".join(
        _form(s, f"/api/rollouts/{q}/{a}", a, back)
        for a, ok in (
            ("pause", r["status"] == "running"),
            ("resume", r["status"] == "paused"),
            ("abort", r["status"] in ("running", "paused")),
        )
        if ok
    )
    shares = [
        (r["started_at"], r["steps"][0]),
        *((d["window_end"], d["share"]) for d in ds),
    ]
    charts = [
        line_chart(
            "candidate share (%)",
            [Series("share", shares)],
            y_label=lambda y: f"{y:g} %",
        ),
        line_chart(
            "error rate",
            [
                Series("candidate", [(d["window_end"], d["error_rate"]) for d in ds]),
                Series(
                    "baseline",
                    [(d["window_end"], d["baseline_error_rate"]) for d in ds],
                ),
            ],
            y_label=_pct,
        ),
        line_chart(
            "mean latency (ms)",
            [
                Series(
                    "candidate",
                    [
                        (d["window_end"], d["latency_ms"])
                        for d in ds
                        if d["latency_ms"] is not None
                    ],
                ),
                Series(
                    "baseline",
                    [
                        (d["window_end"], d["baseline_latency_ms"])
                        for d in ds
                        if d["baseline_latency_ms"] is not None
                    ],
                ),
            ],
            y_label=lambda y: f"{y:.2f}",
        ),
    ]
    rows = [
        [
            _e(_when(d["window_end"])),
            str(d["step"] + 1),
            f"{d['share']:g} %",
            f"{d['samples']} / {d['baseline_samples']}",
            f"{_pct(d['error_rate'])} / {_pct(d['baseline_error_rate'])}",
            "-" if d["latency_ratio"] is None else f"{d['latency_ratio']:.2f}",
            _e(d["verdict"]),
            _e(d["action"]),
            str(d["failures"]),
            _e(d["reason"]),
        ]
        for d in ds
    ]
    body = (
        f"<p>rollout #{r['number']} of {_e(what)}: <b class=status>"
        f"{_e(r['status'])}</b>, step {r['step'] + 1} of {len(r['steps'])} "
        f"({', '.join(f'{x:g} %' for x in r['steps'])}), candidate share "
        f"<b>{r['share']:g} %</b>; started {_e(_when(r['started_at']))} UTC by "
        f"{_e(r['by'])}</p><p class=muted>windows of {plan['interval']:g} s, min "
        f"sample {plan['min_sample']}, max error rate "
        f"{_pct(plan['max_error_rate'])}, max latency ratio "
        f"{plan['max_latency_ratio']:g}, failure limit {plan['failure_limit']}</p>"
        f"<p>{actions}</p>{''.join(charts)}<h2>Guard decisions</h2>"
        + _table(
            (
                "window end (UTC)",
                "step",
                "share",
                "samples cand / base",
                "error rate cand / base",
                "latency ratio",
                "verdict",
                "action",
                "failures",
                "reason",
            ),
            rows,
        )
    )
    return _page(request, f"Rollout of {w}", body, refresh=True)


# ---------------------------------------------------------------- instances


def _instances(request: Request) -> HTMLResponse:
    s = settings_of(request)
    q = request.query_params
    status, workflow = q.get("status") or None, q.get("workflow") or None
    page = data.instances(
        s,
        status=status,
        workflow=workflow,
        cursor=q.get("cursor"),
        limit=q.get("limit"),
    )
    options = "".join(
        f"<option{' selected' if st == status else ''}>{st}</option>"
        for st in ("", *STATUSES)
    )
    search = (
        "<form method=get action=/instances>status <select name=status>"
        f"{options}</select> workflow <input name=workflow value="
        f'"{_e(workflow or "")}"> <button>search</button></form>'
    )
    rows = [
        [
            f'<a href="/instances/{quote(i["instance_id"], safe="")}">'
            f"{_e(i['instance_id'])}</a>",
            _e(f"{i['workflow']}@{i['version']}"),
            _e(i["status"]),
            str(i["position"]),
        ]
        for i in page["instances"]
    ]
    more = ""
    if page["next"] is not None:
        args = {k: v for k, v in q.items() if k != "cursor"}
        args["cursor"] = page["next"]
        more = f'<p><a rel=next href="/instances?{urlencode(args)}">next page</a></p>'
    body = search + _table(("instance", "version", "status", "position"), rows) + more
    return _page(request, "Instances", body)


def _instance(request: Request) -> HTMLResponse:
    s = settings_of(request)
    iid = request.path_params["instance_id"]
    i = data.instance(s, iid)
    head = _table(
        ("field", "value"),
        [
            ["workflow", _e(f"{i['workflow']}@{i['version']}")],
            ["status", _e(i["status"])],
            ["position", str(i["position"])],
            ["state", f"<pre>{_e(_json(i['state']))}</pre>"],
            ["error", _e(i.get("error") or "-")],
        ],
    )
    flags = (
        _table(("flag", "value"), [[_e(k), _e(v)] for k, v in i["flags_read"].items()])
        if i["flags_read"]
        else "<p class=muted>no flag read</p>"
    )
    history = _table(
        ("pos", "global", "recorded at", "type", "schema", "workflow", "payload"),
        [
            [
                str(e["position"]),
                str(e["global_position"]),
                _e(e["recorded_at"]),
                _e(e["type"]),
                _e(e["schema"])
                if e["stored_schema"] == e["schema"]
                else f"{e['stored_schema']} &rarr; {e['schema']} (upcast)",
                _e(e["workflow"]),
                f"<pre>{_e(_json(e['event']))}</pre>",
            ]
            for e in i["history"]
        ],
    )
    body = f"{head}<h2>Flags read</h2>{flags}<h2>History</h2>{history}"
    return _page(request, f"Instance {iid}", body)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=1, sort_keys=True, default=str)


# ------------------------------------------------------ audit, flags, ...


def _audit(request: Request) -> HTMLResponse:
    subject = request.query_params.get("subject") or None
    rows = [
        [
            _e(a["at"]),
            _e(a["subject"]),
            _e(a["action"]),
            _e(a["detail"]),
            _e(a["by"]),
            _e(a["reason"]),
        ]
        for a in reversed(data.audit(settings_of(request), subject))
    ]
    body = "<p class=muted>newest first</p>" + _table(
        ("when (UTC)", "subject", "action", "detail", "by", "reason"), rows
    )
    return _page(request, "Audit", body)


def _flags(request: Request) -> HTMLResponse:
    s = settings_of(request)
    rows = []
    for f in data.flags(s):
        q = quote(f["flag"], safe="")
        act = "revive" if f["killed"] else "kill"
        rows.append(
            [
                _e(f["flag"]),
                _e(f["kind"]),
                _e(f["value"]),
                "<b class=error>killed</b>" if f["killed"] else "no",
                _form(s, f"/api/flags/{q}/{act}", act, "/flags"),
            ]
        )
    body = (
        _table(("flag", "kind", "value", "killed", ""), rows)
        if rows
        else ("<p class=muted>no flag is defined</p>")
    )
    return _page(request, "Flags", body)


def _deadletters(request: Request) -> HTMLResponse:
    s = settings_of(request)
    rows = [
        [
            str(x["id"]),
            _e(x["group"]),
            _e(f"{x['topic']}/{x['partition']}/{x['offset']}"),
            _e(x["reason"]),
            _e(x["key"]),
            _e(x["value"]),
            _e(x["replayed_to"])
            if x["replayed_to"]
            else _form(
                s, f"/api/deadletters/{x['id']}/replay", "replay", "/deadletters"
            ),
        ]
        for x in data.deadletters(s)
    ]
    body = (
        _table(("id", "group", "from", "reason", "key", "value", "replayed to"), rows)
        if rows
        else "<p class=muted>no dead letter</p>"
    )
    if s.kafka is None:
        body += "<p class=muted>replay needs a broker: start with --kafka</p>"
    return _page(request, "Dead letters", body)


def _projections(request: Request) -> HTMLResponse:
    rows = [
        [
            _e(p["name"]),
            str(p["version"]),
            _e(p["build"]),
            _e(p["state"]) + (" (serving)" if p["serving"] else ""),
            str(p["position"]),
            str(p["lag_events"]),
            f"{p['lag_seconds']:.1f}",
            _e((p["failure"] or {}).get("error", "")),
        ]
        for p in data.projections(settings_of(request))
    ]
    body = _table(
        (
            "name",
            "version",
            "build",
            "state",
            "position",
            "lag (events)",
            "lag (s)",
            "failed at",
        ),
        rows,
    )
    return _page(request, "Projections", body)


def routes() -> list[Route]:
    """The pages' routes."""
    return [
        Route("/", _overview, methods=["GET"]),
        Route("/rollouts/{workflow}", _rollout, methods=["GET"]),
        Route("/instances", _instances, methods=["GET"]),
        Route("/instances/{instance_id:path}", _instance, methods=["GET"]),
        Route("/audit", _audit, methods=["GET"]),
        Route("/flags", _flags, methods=["GET"]),
        Route("/deadletters", _deadletters, methods=["GET"]),
        Route("/projections", _projections, methods=["GET"]),
    ]
