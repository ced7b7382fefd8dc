"""Server-side SVG line charts for the console's pages (no script, no build step).

A chart is a list of named series of ``(x, y)`` points drawn on shared axes;
x is usually a time (epoch seconds) and is labelled as UTC clock time. Series
with no point are listed in the legend and draw nothing; a chart with no point
at all says so in its body.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["COLOURS", "Series", "line_chart"]

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")
"""Series colours, in order (candidate first, baseline second)."""

_W, _H = 560, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 24, 28


@dataclass(frozen=True)
class Series:
    """One line of a chart."""

    name: str
    """Its legend."""
    points: Sequence[tuple[float, float]]
    """``(x, y)`` points in x order."""


def _x(text: str) -> str:
    """``text`` escaped for SVG, without the characters XML cannot hold."""
    kept = "".join(
        c
        for c in text
        if c in "\t\n\r"
        or "\x20" <= c <= "\ud7ff"
        or "\ue000" <= c <= "\ufffd"
        or c >= "\U00010000"
    )
    return escape(kept)


def _clock(x: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(x))


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    y_label: Callable[[float], str] = lambda y: f"{y:g}",
    x_label: Callable[[float], str] = _clock,
    y_min: float | None = 0.0,
) -> str:
    """An inline ``<svg>`` drawing ``series`` on shared axes.

    Args:
        title: Shown above the plot and as the SVG's accessible title.
        series: The lines, drawn in :data:`COLOURS` order.
        y_label: Formats a y value for the axis labels.
        x_label: Formats an x value for the axis labels (UTC clock time).
        y_min: Lowest y of the axis (None: the lowest point).
    """
    pts = [p for s in series for p in s.points]
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_W} {_H}" '
        f'width="{_W}" height="{_H}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_x(title)}</title>",
        f'<text x="{_LEFT}" y="14" font-size="12" font-weight="bold">'
        f"{_x(title)}</text>",
    ]
    legend_x = _LEFT + 8 + 7 * len(title)
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        parts.append(
            f'<text x="{legend_x}" y="14" font-size="11" fill="{colour}">'
            f"&#9632; {_x(s.name)}</text>"
        )
        legend_x += 16 + 7 * len(s.name)
    if not pts:
        parts.append(
            f'<text x="{_W / 2}" y="{_H / 2}" font-size="12" text-anchor="middle" '
            'fill="#888">no data yet</text></svg>'
        )
        return "".join(parts)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    lo = min(p[1] for p in pts) if y_min is None else min(y_min, *(p[1] for p in pts))
    hi = max(p[1] for p in pts)
    if hi <= lo:
        hi = lo + 1.0
    if x1 <= x0:
        x1 = x0 + 1.0

    def sx(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * (_W - _LEFT - _RIGHT)

    def sy(y: float) -> float:
        return _H - _BOTTOM - (y - lo) / (hi - lo) * (_H - _TOP - _BOTTOM)

    bottom, right = _H - _BOTTOM, _W - _RIGHT
    parts.append(
        f'<path d="M{_LEFT} {_TOP}V{bottom}H{right}" fill="none" stroke="#999"/>'
    )
    for y in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<text x="{_LEFT - 4}" y="{sy(y) + 4:.1f}" font-size="10" '
            f'text-anchor="end">{_x(y_label(y))}</text>'
        )
    for x, anchor in ((x0, "start"), (x1, "end")):
        parts.append(
            f'<text x="{sx(x):.1f}" y="{_H - 8}" font-size="10" '
            f'text-anchor="{anchor}">{_x(x_label(x))}</text>'
        )
    for i, s in enumerate(series):
        if not s.points:
            continue
        colour = COLOURS[i % len(COLOURS)]
        d = " ".join(
            f"{'M' if j == 0 else 'L'}{sx(x):.1f} {sy(y):.1f}"
            for j, (x, y) in enumerate(s.points)
        )
        parts.append(
            f'<path class="series" data-series="{_x(s.name)}" d="{d}" '
            f'fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for x, y in s.points:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}">'
                f"<title>{_x(s.name)} {_x(x_label(x))}: "
                f"{_x(y_label(y))}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)
