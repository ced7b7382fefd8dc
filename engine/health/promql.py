"""External metric checks: PromQL queries against a Prometheus server.

A rollout plan may name checks (:class:`~engine.health.events.MetricCheck`)
that the controller evaluates at the end of each window beside the store's
health counts, like Flagger's metric templates. A query is an instant query of
Prometheus's HTTP API (``GET /api/v1/query``) and must return one number: a
scalar, or a vector of one sample. A query that returns nothing, or a server
that does not answer, cannot be judged: the window is then inconclusive (the
rollout holds), never failed.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.parse
import urllib.request
from string import Template
from typing import Any

import msgspec

from engine.core.errors import RolloutError
from engine.health.analysis import Check
from engine.health.events import MetricCheck

__all__ = ["PromQL", "metric_checks", "render"]


class _Sample(msgspec.Struct):
    value: tuple[float, str]


class _Data(msgspec.Struct):
    resultType: str  # Prometheus's field names
    result: Any


class _Reply(msgspec.Struct):
    status: str
    data: _Data | None = None
    error: str = ""
    errorType: str = ""


_reply = msgspec.json.Decoder(_Reply)


def render(query: str, **values: object) -> str:
    """``query`` with ``$workflow``, ``$version``, ``$baseline``, ``$interval`` set.

    Unknown ``$names`` are left as they are (PromQL has none of its own).
    """
    return Template(query).safe_substitute({k: str(v) for k, v in values.items()})


class PromQL:
    """Instant queries against one Prometheus server.

    Args:
        url: Base URL of the server, e.g. ``http://127.0.0.1:9090``.
        timeout: Seconds a query may take.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def value(self, query: str) -> float | None:
        """The one number ``query`` returns now; None when it returns no sample.

        Raises:
            RolloutError: the server cannot be reached, refuses the query (its
                error is quoted), or returns more than one sample.
        """
        target = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(target, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        except (OSError, ValueError) as exc:
            raise RolloutError(
                f"Prometheus at {self.url} did not answer: {exc}"
            ) from None
        try:
            reply = _reply.decode(body)
        except msgspec.DecodeError:
            raise RolloutError(
                f"{self.url} did not answer as Prometheus's query API does"
            ) from None
        if reply.status != "success" or reply.data is None:
            raise RolloutError(
                f"Prometheus refused the query {query!r}: "
                f"{reply.errorType or 'error'}: {reply.error}"
            )
        return _number(reply.data, query)


def _number(data: _Data, query: str) -> float | None:
    if data.resultType == "scalar":
        return float(data.result[1])
    if data.resultType != "vector":
        raise RolloutError(
            f"the query {query!r} returns a {data.resultType}; it must return one "
            "number (a scalar or a one-sample vector, e.g. wrap it in sum())"
        )
    samples = msgspec.convert(data.result, list[_Sample])
    if not samples:
        return None
    if len(samples) > 1:
        raise RolloutError(
            f"the query {query!r} returns {len(samples)} series; it must return one "
            "number (aggregate it, e.g. with sum())"
        )
    return float(samples[0].value[1])


def metric_checks(
    checks: tuple[MetricCheck, ...] | list[MetricCheck],
    server: PromQL,
    values: dict[str, object],
) -> list[Check]:
    """Evaluate each check now, with the query variables in ``values``.

    Returns:
        One :class:`~engine.health.analysis.Check` per metric check: passed,
        failed (out of bounds, or NaN), or not judged (no sample, or the server
        failed; the detail says which).
    """
    out: list[Check] = []
    for m in checks:
        name = f"metric {m.name}"
        try:
            value = server.value(render(m.query, **values))
        except RolloutError as exc:
            out.append(Check(name, None, f"{name} not judged: {exc}"))
            continue
        if value is None:
            detail = f"{name} not judged: the query returned no sample"
            out.append(Check(name, None, detail))
            continue
        ok = not math.isnan(value)
        ok = ok and (m.max is None or value <= m.max)
        ok = ok and (m.min is None or value >= m.min)
        out.append(Check(name, ok, f"{name} {value:g} ({m.bounds})"))
    return out
