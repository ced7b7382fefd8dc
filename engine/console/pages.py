"""The console's server-rendered pages (HTML, SVG charts, one line of script).

Each page reads what it shows through :mod:`engine.console.data` (the same
calls as the JSON API) and escapes every value it prints. Actions are small
forms posting to the API with the CSRF token and a reason; a console started
``--read-only`` (or to a viewer) shows no form. The overview and rollout
pages are live: a few lines of script fetch their content again every
second and swap it in without a reload (not while a reason is being typed).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from engine.console import configpage, data
from engine.console.api import settings_of
from engine.console.charts import Series, line_chart
from engine.console.data import STATUSES
from engine.console.layout import e, form, page, pct, table, when

__all__ = ["routes"]


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
                f"{e(r['status'])}, step {r['step'] + 1}/{len(r['steps'])}, "
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
                    e(v["state"]),
                    bar,
                    str(v["running"]),
                    str(v["completed"]),
                    str(v["failed"]),
                    str(v["cancelled"]),
                    drain,
                    form(
                        request,
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
            f"<h2 id=wf-{e(name)}>{e(name)}</h2><p>routing "
            f"<b>{e(w['routing'] or 'none')}</b>; {rollout} "
            f"{form(request, f'/api/workflows/{q}/rollback', 'roll back', '/')}</p>"
            + table(
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
    return page(request, "Overview", "".join(parts), refresh=True)


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
        form(request, f"/api/rollouts/{q}/{a}", a, back)
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
            y_label=pct,
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
            e(when(d["window_end"])),
            str(d["step"] + 1),
            f"{d['share']:g} %",
            f"{d['samples']} / {d['baseline_samples']}",
            f"{pct(d['error_rate'])} / {pct(d['baseline_error_rate'])}",
            "-" if d["latency_ratio"] is None else f"{d['latency_ratio']:.2f}",
            e(d["verdict"]),
            e(d["action"]),
            str(d["failures"]),
            e(d["reason"]),
        ]
        for d in ds
    ]
    body = (
        f"<p>rollout #{r['number']} of {e(what)}: <b class=status>"
        f"{e(r['status'])}</b>, step {r['step'] + 1} of {len(r['steps'])} "
        f"({', '.join(f'{x:g} %' for x in r['steps'])}), candidate share "
        f"<b>{r['share']:g} %</b>; started {e(when(r['started_at']))} UTC by "
        f"{e(r['by'])}</p><p class=muted>windows of {plan['interval']:g} s, min "
        f"sample {plan['min_sample']}, max error rate "
        f"{pct(plan['max_error_rate'])}, max latency ratio "
        f"{plan['max_latency_ratio']:g}, failure limit {plan['failure_limit']}</p>"
        f"<p>{actions}</p>{''.join(charts)}<h2>Guard decisions</h2>"
        + table(
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
    return page(request, f"Rollout of {w}", body, refresh=True)


# ---------------------------------------------------------------- instances


def _instances(request: Request) -> HTMLResponse:
    s = settings_of(request)
    q = request.query_params
    status, workflow = q.get("status") or None, q.get("workflow") or None
    listed = data.instances(
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
        f'"{e(workflow or "")}"> <button>search</button></form>'
    )
    rows = [
        [
            f'<a href="/instances/{quote(i["instance_id"], safe="")}">'
            f"{e(i['instance_id'])}</a>",
            e(f"{i['workflow']}@{i['version']}"),
            e(i["status"]),
            str(i["position"]),
        ]
        for i in listed["instances"]
    ]
    more = ""
    if listed["next"] is not None:
        args = {k: v for k, v in q.items() if k != "cursor"}
        args["cursor"] = listed["next"]
        more = f'<p><a rel=next href="/instances?{urlencode(args)}">next page</a></p>'
    body = search + table(("instance", "version", "status", "position"), rows) + more
    return page(request, "Instances", body)


def _instance(request: Request) -> HTMLResponse:
    s = settings_of(request)
    iid = request.path_params["instance_id"]
    i = data.instance(s, iid)
    head = table(
        ("field", "value"),
        [
            ["workflow", e(f"{i['workflow']}@{i['version']}")],
            ["status", e(i["status"])],
            ["position", str(i["position"])],
            ["state", f"<pre>{e(_json(i['state']))}</pre>"],
            ["error", e(i.get("error") or "-")],
        ],
    )
    flags = (
        table(("flag", "value"), [[e(k), e(v)] for k, v in i["flags_read"].items()])
        if i["flags_read"]
        else "<p class=muted>no flag read</p>"
    )
    history = table(
        ("pos", "global", "recorded at", "type", "schema", "workflow", "payload"),
        [
            [
                str(ev["position"]),
                str(ev["global_position"]),
                e(ev["recorded_at"]),
                e(ev["type"]),
                e(ev["schema"])
                if ev["stored_schema"] == ev["schema"]
                else f"{ev['stored_schema']} &rarr; {ev['schema']} (upcast)",
                e(ev["workflow"]),
                f"<pre>{e(_json(ev['event']))}</pre>",
            ]
            for ev in i["history"]
        ],
    )
    body = f"{head}<h2>Flags read</h2>{flags}<h2>History</h2>{history}"
    return page(request, f"Instance {iid}", body)


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str)


# ------------------------------------------------------ audit, flags, ...


def _audit(request: Request) -> HTMLResponse:
    subject = request.query_params.get("subject") or None
    rows = [
        [
            e(a["at"]),
            e(a["subject"]),
            e(a["action"]),
            e(a["detail"]),
            e(a["by"]),
            e(a["reason"]),
        ]
        for a in reversed(data.audit(settings_of(request), subject))
    ]
    body = "<p class=muted>newest first</p>" + table(
        ("when (UTC)", "subject", "action", "detail", "by", "reason"), rows
    )
    return page(request, "Audit", body)


def _flags(request: Request) -> HTMLResponse:
    s = settings_of(request)
    rows = []
    for f in data.flags(s):
        q = quote(f["flag"], safe="")
        act = "revive" if f["killed"] else "kill"
        rows.append(
            [
                e(f["flag"]),
                e(f["kind"]),
                e(f["value"]),
                "<b class=error>killed</b>" if f["killed"] else "no",
                form(request, f"/api/flags/{q}/{act}", act, "/flags"),
            ]
        )
    body = (
        table(("flag", "kind", "value", "killed", ""), rows)
        if rows
        else ("<p class=muted>no flag is defined</p>")
    )
    return page(request, "Flags", body)


def _deadletters(request: Request) -> HTMLResponse:
    s = settings_of(request)
    rows = [
        [
            str(x["id"]),
            e(x["group"]),
            e(f"{x['topic']}/{x['partition']}/{x['offset']}"),
            e(x["reason"]),
            e(x["key"]),
            e(x["value"]),
            e(x["replayed_to"])
            if x["replayed_to"]
            else form(
                request, f"/api/deadletters/{x['id']}/replay", "replay", "/deadletters"
            ),
        ]
        for x in data.deadletters(s)
    ]
    body = (
        table(("id", "group", "from", "reason", "key", "value", "replayed to"), rows)
        if rows
        else "<p class=muted>no dead letter</p>"
    )
    if s.kafka is None:
        body += "<p class=muted>replay needs a broker: start with --kafka</p>"
    return page(request, "Dead letters", body)


def _projections(request: Request) -> HTMLResponse:
    rows = [
        [
            e(p["name"]),
            str(p["version"]),
            e(p["build"]),
            e(p["state"]) + (" (serving)" if p["serving"] else ""),
            str(p["position"]),
            str(p["lag_events"]),
            f"{p['lag_seconds']:.1f}",
            e((p["failure"] or {}).get("error", "")),
        ]
        for p in data.projections(settings_of(request))
    ]
    body = table(
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
    return page(request, "Projections", body)


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
        *configpage.routes(),
    ]
